package actionconfig

import (
	"encoding/json"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/gitops"
)

// buildGitOps makes the GitOps gate from the catalog's gitops section. It
// is on even without the section, with its defaults (refuse): an action
// that another tool will revert should be a person's choice. Without a
// dynamic client (lint, which runs no action) the section is only checked.
func buildGitOps(_ config.Config, raw json.RawMessage, d Deps) (gate.Gate, error) {
	var s gitops.Section
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	settings, err := s.Resolve()
	if err != nil {
		return nil, err
	}
	if d.Dynamic == nil {
		return nil, nil
	}
	return gitops.New(gitops.Config{Settings: settings, Dynamic: d.Dynamic, Identity: d.Identity, Log: d.Log}), nil
}

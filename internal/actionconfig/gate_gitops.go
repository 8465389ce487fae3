package actionconfig

import (
	"encoding/json"
	"errors"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// buildGitOps is not built yet: a catalog that configures it is refused.
func buildGitOps(_ config.Config, raw json.RawMessage, _ Deps) (gate.Gate, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	return nil, errors.New("not supported yet")
}

package actionconfig

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/alerthold"
)

// alertHoldSection is the catalog's alertHold section.
type alertHoldSection struct {
	Prometheus     string          `json:"prometheus"`
	Alerts         []string        `json:"alerts"`
	Timeout        json.RawMessage `json:"timeout,omitempty"`
	Namespaces     []string        `json:"namespaces,omitempty"`
	MatchNamespace bool            `json:"matchNamespace,omitempty"`
}

// buildAlertHold makes the alert hold; no section (or a null one) is off.
func buildAlertHold(cfg config.Config, raw json.RawMessage, _ Deps) (gate.Gate, error) {
	var s alertHoldSection
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	c := alerthold.Config{Prometheus: s.Prometheus, Alerts: s.Alerts, Namespaces: s.Namespaces, MatchNamespace: s.MatchNamespace}
	if len(s.Timeout) > 0 {
		var d Duration
		if err := json.Unmarshal(s.Timeout, &d); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		c.Timeout = time.Duration(d)
	}
	// The query runs within the action's deadline.
	if c.Timeout > cfg.ActionTimeout {
		return nil, fmt.Errorf("timeout: %s is above ACTION_TIMEOUT (%s), which bounds every action", c.Timeout, cfg.ActionTimeout)
	}
	if c.Timeout == 0 {
		c.Timeout = min(alerthold.DefaultTimeout, cfg.ActionTimeout)
	}
	g, err := alerthold.New(c)
	if err != nil {
		return nil, err
	}
	return g, nil
}

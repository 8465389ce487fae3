package actionconfig

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/budget"
)

// buildBudget makes the cluster's remediation budget (package budget).
//
// An absent section leaves it off, as every gate: a provider that starts
// refusing remediations after an upgrade, in the middle of an incident, is
// worse than one without a breaker. A present section turns it on, with
// the defaults for what it leaves out ("budget: {}" is 10 actions per 10
// minutes, 3 per namespace); "enabled: false" turns it off explicitly.
func buildBudget(cfg config.Config, raw json.RawMessage, d Deps) (gate.Gate, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var s budget.Section
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	limits, on, err := s.Resolve()
	if err != nil || !on {
		return nil, err
	}
	if d.Client == nil {
		return nil, errors.New("the budget needs a Kubernetes client")
	}
	where := builtIn
	if cfg.ActionsConfig != "" {
		where = "ACTIONS_CONFIG " + cfg.ActionsConfig
	}
	g, err := budget.New(d.Client, budget.Config{
		Namespace: cfg.PodNamespace, Limits: limits,
		MaxSetting:          fmt.Sprintf("budget.max in %s", where),
		PerNamespaceSetting: fmt.Sprintf("budget.perNamespace in %s", where),
		Identity:            d.Identity, Metrics: d.Metrics, Log: d.Log,
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

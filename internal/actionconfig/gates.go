package actionconfig

import (
	"encoding/json"
	"fmt"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// Gates is the catalog's configuration of the gates (package gate), one
// top-level section each; an absent section leaves its gate off, except
// where its builder says otherwise.
type Gates struct {
	// Freeze lists the windows in which nothing may change.
	Freeze json.RawMessage `json:"freeze,omitempty"`
	// AlertHold holds every action while named Prometheus alerts fire.
	AlertHold json.RawMessage `json:"alertHold,omitempty"`
	// GitOps says what to do with a target Argo CD or Flux owns.
	GitOps json.RawMessage `json:"gitops,omitempty"`
	// Approval says which actions wait for a person's approval.
	Approval json.RawMessage `json:"approval,omitempty"`
	// Budget bounds the actions of the whole cluster in a sliding window.
	Budget json.RawMessage `json:"budget,omitempty"`
}

// The names of the gates, as the catalog and refusals spell them.
const (
	GateFreeze    = "freeze"
	GateAlertHold = "alertHold"
	GateGitOps    = "gitops"
	GateApproval  = "approval"
	GateBudget    = "budget"
)

// gateBuilder makes one gate from its section; nil means off.
type gateBuilder func(cfg config.Config, raw json.RawMessage, d Deps) (gate.Gate, error)

// buildGates makes the chain, in the order the gates run: the cheap,
// configuration-only checks first, then the wait for an approval, then
// the GitOps owner's suspension (after the wait, so that it does not run
// out before the action acts), and the budget last, so that an action
// another gate refuses spends none of it.
func buildGates(cfg config.Config, g Gates, d Deps) (gate.Chain, error) {
	var chain gate.Chain
	for _, b := range []struct {
		name  string
		raw   json.RawMessage
		build gateBuilder
	}{
		{GateFreeze, g.Freeze, buildFreeze},
		{GateAlertHold, g.AlertHold, buildAlertHold},
		{GateApproval, g.Approval, buildApproval},
		{GateGitOps, g.GitOps, buildGitOps},
		{GateBudget, g.Budget, buildBudget},
	} {
		gt, err := b.build(cfg, b.raw, d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		if gt != nil {
			chain = append(chain, gt)
		}
	}
	return chain, nil
}

// checkGateSettings checks an entry's own gate settings.
func checkGateSettings(g Guardrails) error {
	switch g.GitOps {
	case "", "refuse", "warn", "suspend":
	default:
		return fmt.Errorf("gitops: %q is not refuse, warn or suspend", g.GitOps)
	}
	switch g.Approval {
	case "", "required", "never":
	default:
		return fmt.Errorf("approval: %q is not required or never", g.Approval)
	}
	return nil
}

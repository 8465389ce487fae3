package actionconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/approval"
)

// approvalSection is the catalog's "approval":
//
//	approval:
//	  timeout: 4m                 # the longest wait for a person
//	  defaults: true              # scale to 0, delete-pods "all", rollback in production
//	  productionStages: [production, prod]
type approvalSection struct {
	Timeout          *Duration `json:"timeout,omitempty"`
	Defaults         *bool     `json:"defaults,omitempty"`
	ProductionStages []string  `json:"productionStages,omitempty"`
}

// approvalByDefault: the defaults apply to a catalog without an approval
// section too, not only to one that has it. Safe by default: an upgrade
// makes the riskiest runs wait for a person rather than act unasked.
const approvalByDefault = true

// buildApproval makes the approval gate. Unlike the other gates it is on
// without a section: the defaults ask a person before the riskiest runs
// (scale to 0, delete-pods with "all": true, rollback in a production
// stage), and an entry with guardrails.approval: required always asks. A
// catalog turns the defaults off with approval.defaults: false, an entry
// with guardrails.approval: never.
func buildApproval(cfg config.Config, raw json.RawMessage, d Deps) (gate.Gate, error) {
	var s approvalSection
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	longest := approval.Longest(cfg.ActionTimeout)
	c := approval.Config{
		Timeout:          min(approval.DefaultTimeout, longest),
		Defaults:         approvalByDefault || len(raw) > 0,
		ProductionStages: approval.DefaultProductionStages,
		ScaleToZero:      cfg.ScaleMinReplicas == 0,
		Namespace:        cfg.PodNamespace,
		Identity:         d.Identity,
	}
	if s.Defaults != nil {
		c.Defaults = *s.Defaults
	}
	if s.Timeout != nil {
		t := time.Duration(*s.Timeout)
		switch {
		case t <= 0:
			return nil, errors.New(`timeout: must be above 0, such as "4m"`)
		case t > longest:
			return nil, fmt.Errorf("timeout: %s leaves less than %s of ACTION_TIMEOUT (%s) to act once approved; at most %s", t, cfg.ActionTimeout-longest, cfg.ActionTimeout, longest)
		}
		c.Timeout = t
	}
	if s.ProductionStages != nil {
		for i, st := range s.ProductionStages {
			if strings.TrimSpace(st) == "" {
				return nil, fmt.Errorf("productionStages[%d]: a stage name is empty", i)
			}
		}
		c.ProductionStages = s.ProductionStages
	}
	return approval.New(d.Client, d.Dynamic, c, d.Log), nil
}

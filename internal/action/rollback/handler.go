package rollback

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Name is the action's name in a remediation.yaml.
const Name = "rollback"

// Handler is the rollback action: `kubectl rollout undo`, guarded,
// recorded and verified by the pipeline.
type Handler struct{ pipeline *pipeline.Pipeline }

var _ action.Handler = (*Handler)(nil)

// New returns the rollback action, acting through p.
func New(p *pipeline.Pipeline) *Handler { return &Handler{pipeline: p} }

// Run rolls back the workload the request targets.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	v, err := ParseValue(req.Value)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w; accepted forms: %s", req.Action, err, AcceptedForms)
	}
	return h.pipeline.Run(ctx, Name, req, v.Options, NewMutator(h.pipeline.Client, v.ToRevision).WithDynamic(h.pipeline.Dynamic))
}

// Validate checks a value as Run would, without a cluster.
func (h *Handler) Validate(value json.RawMessage) error {
	v, err := ParseValue(value)
	if err != nil {
		return fmt.Errorf("%w; accepted forms: %s", err, AcceptedForms)
	}
	if v.Kind != "" {
		_, err = workload.ParseKind(v.Kind)
	}
	return err
}

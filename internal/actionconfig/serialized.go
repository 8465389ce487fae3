package actionconfig

import (
	"context"
	"encoding/json"
	"errors"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// serialized gives the kinds that change no workload (webhook,
// toggle-feature) the stages of the workload pipeline that apply to them:
//
//   - the lock: one run of an entry at a time per Keptn service, across
//     replicas, so that a burst of problems does not call the same webhook
//     or flip the same flags concurrently;
//   - the cooldown, when the entry sets guardrails.cooldown: a remediation
//     loop cannot call it over and over;
//   - an audit record, as a log line: such an action changes no object in
//     the cluster that a Kubernetes Event could be attached to.
//
// The namespace allowlist, the opt-out annotation and the rollout check
// are about a workload, which these kinds do not have.
type serialized struct {
	handler  action.Handler
	name     string
	kind     string
	ledger   *ledger.Ledger
	cooldown ledger.Cooldown
	gates    gate.Chain
	settings map[string]string
	log      logrus.FieldLogger
}

// entryRef names what the lock and the cooldown of a run hold: the entry,
// for one Keptn service. Its Lease is target.action.<project>-<stage>.<entry>.<service>.
func entryRef(entry string, req action.Request) workload.Ref {
	return workload.Ref{Kind: "Action", Namespace: req.Project + "-" + req.Stage, Name: entry + "." + req.Service}
}

func (s serialized) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	ref := entryRef(s.name, req)
	admission, err := s.gates.Admit(ctx, gate.Subject{
		Entry: s.name, Kind: s.kind, Request: req, Namespace: req.Project + "-" + req.Stage,
		DryRun: req.DryRun, Settings: s.settings,
	})
	if err != nil {
		return action.Outcome{}, err
	}
	hold, err := s.ledger.Lock(ctx, ref, s.name, req.TriggeredID, s.cooldown, req.DryRun)
	if err != nil {
		admission.Finish(ctx, false)
		return action.Outcome{}, err
	}
	out, err := s.handler.Run(ctx, req)
	// A run that failed may still have changed something (a webhook that
	// timed out after the server acted): only a dry run, or one its
	// handler refused before acting, surely did not.
	var refusal *action.Refusal
	changed := !req.DryRun && !errors.As(err, &refusal)
	admission.Finish(ctx, changed)
	if err == nil && admission.Warning != "" {
		out.Message += "; " + admission.Warning
		if out.Result == "" || out.Result == keptnv2.ResultPass {
			out.Result = keptnv2.ResultWarning
		}
	}
	if rerr := hold.Release(ctx, changed); rerr != nil {
		s.log.WithError(rerr).WithField("triggeredid", req.TriggeredID).Warn("could not release the entry's lock; it expires by itself")
	}
	if !req.DryRun {
		result, message := out.Result, out.Message
		if result == "" {
			result = keptnv2.ResultPass
		}
		if err != nil {
			result, message = keptnv2.ResultFailed, err.Error()
		}
		s.log.WithFields(logrus.Fields{
			"audit": true, "action": s.name, "target": ref.String(), "result": result, "message": message,
			"shkeptncontext": req.KeptnContext, "triggeredid": req.TriggeredID, "problem": req.Problem.ProblemTitle,
		}).Info("audit: remediation ran")
	}
	return out, err
}

// Validate lets lint see through the stages.
func (s serialized) Validate(value json.RawMessage) error {
	if v, ok := s.handler.(action.Validator); ok {
		return v.Validate(value)
	}
	return nil
}

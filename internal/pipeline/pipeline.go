// Package pipeline runs the actions that change a Kubernetes workload
// (restart, rollback, scale, delete-pods), each through the same stages,
// in this order:
//
//	resolve → guard → gates → lock → mutate → audit → verify → release
//
// An action package supplies only the mutate stage, as a Mutator; the
// rest is here, once, so that every action refuses, records and checks its
// work the same way.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/rollout"
	"github.com/keptn-action-provider/action-provider/internal/tracing"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Pipeline holds what the stages need. Client and Policy are required;
// a nil Ledger skips the lock and the cooldown, a nil Audit the events
// (unit tests of one action use neither).
type Pipeline struct {
	Client kube.Interface
	// Dynamic reads and changes the kinds of other tools (an Argo Rollout);
	// nil where there is none.
	Dynamic dynamic.Interface
	Policy  guard.Policy
	Ledger  *ledger.Ledger
	Audit   *audit.Recorder
	// Cooldown is the least time between two changes of one target by one
	// action; zero, none.
	Cooldown ledger.Cooldown
	// VerifyTimeout bounds the wait for a rollout; the value's "timeout"
	// overrides it. 0 means rollout.DefaultTimeout.
	VerifyTimeout time.Duration
	// VerifyInterval is how long the wait, which watches, pauses before it
	// retries a failed read or watch; 0 means rollout.DefaultInterval.
	VerifyInterval time.Duration
	// Entry is the catalog entry that runs, and Gates decide whether it may
	// act now (package gate); GateSettings are the entry's own settings of
	// them. The zero values admit everything.
	Entry        string
	Gates        gate.Chain
	GateSettings map[string]string
	// Log receives what is worth knowing but not worth failing for, such
	// as an audit event that could not be written. Nil discards it.
	Log logrus.FieldLogger
}

// Run carries out the action named name (its canonical name, which keys
// the cooldown) on the workload req and opts select, changing it with m.
func (p *Pipeline) Run(ctx context.Context, name string, req action.Request, opts Options, m Mutator) (action.Outcome, error) {
	dryRun := req.DryRun || opts.DryRun

	// Resolve, refusing a forbidden namespace before reading anything in it.
	sctx, span := tracing.Child(ctx, "resolve")
	ns, ref, obj, err := p.resolve(sctx, name, req, opts)
	tracing.End(span, err)
	if err != nil {
		return action.Outcome{}, err
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(tracing.Target.String(ref.String()))
	}

	// Guard: the workload's owner may have opted it out.
	_, span = tracing.Child(ctx, "guard")
	err = guard.OptOut(ref, obj)
	tracing.End(span, err)
	if err != nil {
		return action.Outcome{}, err
	}

	// Gates: whether it may act now, whatever the value says.
	sctx, span = tracing.Child(ctx, "gates")
	admission, err := p.Gates.Admit(sctx, gate.Subject{
		Entry: p.Entry, Kind: name, Request: req, Namespace: ns, Target: ref, Object: obj,
		DryRun: dryRun, Settings: p.GateSettings,
	})
	tracing.End(span, err)
	if err != nil {
		return action.Outcome{}, err
	}
	changed := false
	defer func() { admission.Finish(ctx, changed) }()

	// Lock: one action at a time per target, and the cooldown.
	var hold *ledger.Hold
	if p.Ledger != nil {
		sctx, span := tracing.Child(ctx, "lock")
		hold, err = p.Ledger.Lock(sctx, ref, name, req.TriggeredID, p.Cooldown, dryRun)
		tracing.End(span, err)
		if err != nil {
			return action.Outcome{}, err
		}
	}
	defer func() {
		sctx, span := tracing.Child(ctx, "release")
		err := hold.Release(sctx, changed)
		tracing.End(span, err)
		if err != nil {
			p.log(req).WithError(err).Warn("could not release the target's lock; it expires by itself")
		}
	}()

	// Mutate.
	sctx, span = tracing.Child(ctx, "mutate")
	change, err := m.Mutate(sctx, ref, dryRun)
	tracing.End(span, err)
	changed = change.Changed
	if err != nil {
		return action.Outcome{}, err
	}
	message := change.Message
	if dryRun {
		message = "dry run: " + message
	}
	if admission.Warning != "" {
		// A gate admitted it with a caveat (GitOps will revert it): the
		// action did its part, but its effect may not last.
		message += "; " + admission.Warning
		if change.Result == "" || change.Result == keptnv2.ResultPass {
			change.Result = keptnv2.ResultWarning
		}
	}
	if !change.Changed {
		return outcome(change.Result, message), nil
	}
	audit.NoteFrom(ctx).Change(change.Before, change.After)

	// Audit. A change that happened must be reported even when its record
	// could not be written, so a failure here is logged, not returned.
	if p.Audit != nil {
		entry := audit.Entry{
			Reason: change.Reason, Action: name, Change: describe(change),
			Context: req.KeptnContext, Trigger: req.TriggeredID, Problem: req.Problem.ProblemTitle,
			Warning: change.Result == keptnv2.ResultWarning || change.Result == keptnv2.ResultFailed,
		}
		sctx, span := tracing.Child(ctx, "audit")
		err := p.Audit.Record(sctx, ref, obj, entry)
		tracing.End(span, err)
		if err != nil {
			p.log(req).WithError(err).Warn("audit event not recorded")
		}
	}

	// Verify.
	if !change.Rollout {
		return outcome(change.Result, message), nil
	}
	if opts.Wait != nil && !*opts.Wait {
		return outcome(change.Result, message+"; not waiting for the rollout (wait: false)"), nil
	}
	timeout := p.VerifyTimeout
	if opts.Timeout > 0 {
		timeout = time.Duration(opts.Timeout)
	}
	sctx, span = tracing.Child(ctx, "verify")
	report, err := rollout.Wait(sctx, p.Client, ref, rollout.Options{
		Timeout: timeout, Interval: p.VerifyInterval, Replicas: change.Replicas, Pods: change.Pods, Dynamic: p.Dynamic,
	})
	tracing.End(span, err)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("%s, but checking the rollout failed: %w", message, err)
	}
	if !report.Converged {
		return action.Fail(message + ", but the rollout did not converge: " + report.Summary), nil
	}
	return outcome(change.Result, message+"; "+report.Summary), nil
}

// resolve finds the workload, refusing a forbidden namespace before
// reading anything in it.
func (p *Pipeline) resolve(ctx context.Context, name string, req action.Request, opts Options) (string, workload.Ref, metav1.Object, error) {
	ns, err := workload.Namespace(req, opts.Selector)
	if err != nil {
		return "", workload.Ref{}, nil, err
	}
	if err := p.Policy.Namespace(ctx, ns); err != nil {
		return "", workload.Ref{}, nil, err
	}
	ref, obj, err := workload.ResolveObjectWith(ctx, p.Client, p.Dynamic, req, opts.Selector)
	if err != nil {
		return "", workload.Ref{}, nil, fmt.Errorf("find the workload to %s: %w", name, err)
	}
	audit.NoteFrom(ctx).Target(ref.String()) // the audit line's target, refused or not
	return ns, ref, obj, nil
}

// describe is the before → after of a change, for the audit record.
func describe(c Change) string {
	if c.Before == "" && c.After == "" {
		return c.Message
	}
	return c.Before + " → " + c.After
}

func outcome(result keptnv2.ResultType, message string) action.Outcome {
	if result == "" {
		result = keptnv2.ResultPass
	}
	return action.Outcome{Result: result, Message: message}
}

func (p *Pipeline) log(req action.Request) logrus.FieldLogger {
	if p.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		return l
	}
	return p.Log.WithFields(logrus.Fields{"shkeptncontext": req.KeptnContext, "triggeredid": req.TriggeredID})
}

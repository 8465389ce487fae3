// Package gate holds the checks that decide whether an action may act now,
// whatever its value says: another tool owns the target (GitOps), the
// cluster's remediation budget is spent, a freeze window is open, alerts
// fire, a person has not approved. Each kind of gate is a package below
// this one; the catalog builds them from its configuration, and the
// pipeline (workload actions) and the serialized stages (webhook,
// toggle-feature, job) run them in one place, after the target is resolved
// and guarded and before anything changes.
//
// A gate refuses with an *action.Refusal that names its rule and the
// setting that changes it. In a dry run a gate decides as it would, but
// spends, suspends and waits for nothing: the refusal is the report.
package gate

import (
	"context"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Subject is what a gate decides on: one run of one catalog entry.
type Subject struct {
	// Entry is the catalog entry's name; Kind its kind ("scale",
	// "webhook", ...).
	Entry, Kind string
	Request     action.Request
	// Namespace is where the action acts: the target's namespace, or for
	// the kinds without a target "<project>-<stage>".
	Namespace string
	// Target and Object are the workload as resolved and read, for the
	// workload kinds; the zero Ref and nil otherwise.
	Target workload.Ref
	Object metav1.Object
	// DryRun: decide and report, change nothing.
	DryRun bool
	// Settings are the entry's own gate settings (its guardrails), by gate
	// name; a gate reads its own.
	Settings map[string]string
}

// Gate decides whether an action may act now.
type Gate interface {
	// Admit refuses with an *action.Refusal, fails with another error when
	// it cannot decide (a refusal, then, is the caller's to make), or
	// admits the action.
	Admit(ctx context.Context, s Subject) (Admission, error)
}

// Admission is a gate's yes, with what it asks of the action's report.
type Admission struct {
	// Warning, when set, turns a pass into a warning, and is added to the
	// message: "argo cd application shop will revert this at its next sync".
	Warning string
	// Done, when set, is called once the action ended, with whether it
	// changed anything: a budget gives back a slot that was not used.
	Done func(ctx context.Context, changed bool)
}

// Chain runs gates in order. The zero Chain admits everything.
type Chain []Gate

// Admit runs every gate in order and stops at the first that refuses or
// fails; the gates that had admitted are then told nothing changed.
func (c Chain) Admit(ctx context.Context, s Subject) (Admission, error) {
	var done []func(context.Context, bool)
	var warnings []string
	release := func(ctx context.Context, changed bool) {
		for i := len(done) - 1; i >= 0; i-- {
			done[i](ctx, changed)
		}
	}
	for _, g := range c {
		a, err := g.Admit(ctx, s)
		if err != nil {
			release(context.WithoutCancel(ctx), false)
			return Admission{}, err
		}
		if a.Done != nil {
			done = append(done, a.Done)
		}
		if a.Warning != "" {
			warnings = append(warnings, a.Warning)
		}
	}
	out := Admission{Warning: strings.Join(warnings, "; ")}
	if len(done) > 0 {
		out.Done = release
	}
	return out, nil
}

// Finish calls a's Done, if any, with a context that outlives the
// action's: what a gate gives back must not be lost to the deadline that
// ended the action.
func (a Admission) Finish(ctx context.Context, changed bool) {
	if a.Done != nil {
		a.Done(context.WithoutCancel(ctx), changed)
	}
}

// Maintainer is a gate with work to do on its own, between actions: undo,
// when its bound ends, what it did for one (resume a suspended GitOps
// owner, unpause an autoscaler). Every replica calls Maintain every
// HEARTBEAT_PERIOD, so that the work is done even when the replica that
// started it died; Maintain must therefore keep its state on the cluster,
// and be safe to run on several replicas at once.
type Maintainer interface {
	Maintain(ctx context.Context)
}

package pipeline

import (
	"context"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Mutator is the part of an action that changes a workload: restart it,
// roll it back, scale it, evict its pods. It is all an action package has
// to write; the Pipeline resolves and guards the target before, and
// records, verifies and reports after.
type Mutator interface {
	// Mutate changes ref, or with dryRun works out and describes the change
	// without writing anything. A rule that forbids the change (a bound, a
	// PodDisruptionBudget) is returned as an *action.Refusal.
	Mutate(ctx context.Context, ref workload.Ref, dryRun bool) (Change, error)
}

// Change is what a Mutator did, or in a dry run would do.
type Change struct {
	// Message says it for a person, starting with a verb and naming the
	// target: "restarted deployment sockshop-production/carts", or in a dry
	// run "would restart deployment sockshop-production/carts".
	Message string
	// Reason is the reason of the Kubernetes Event recorded on the target,
	// in UpperCamelCase as Kubernetes' own: "Restarted", "RolledBack".
	Reason string
	// Before and After are the state the change moves the target between,
	// for the audit record: "1 replica" → "3 replicas", "image carts:0.13.2"
	// → "image carts:0.13.1". Empty when there is nothing useful to say.
	Before, After string
	// Changed is true when something was written (never in a dry run). A
	// change that was not needed, such as a scale to the current count,
	// leaves it false: nothing is recorded, verified or cooled down.
	Changed bool
	// Rollout is true when the change starts a rollout that verification
	// should wait for.
	Rollout bool
	// Pods is true when the change replaced pods without touching the
	// workload (evictions): verification then also counts the ready pods,
	// since the workload's status lags behind.
	Pods bool
	// Replicas, when set, is the desired replica count the workload must
	// reach before the rollout counts as converged: after raising an
	// autoscaler's minReplicas, the autoscaler, not we, sets spec.replicas.
	Replicas *int32
	// Result overrides pass, e.g. a warning when only part of the work could
	// be done (two of three pods evicted). Empty means pass.
	Result keptnv2.ResultType
}

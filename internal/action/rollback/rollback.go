// Package rollback implements the "rollback" remediation action: put a
// Deployment, StatefulSet or DaemonSet back on the pod template of an
// earlier revision, with the same patches `kubectl rollout undo` sends, so
// that the controller rolls it out under the workload's own strategy and
// `kubectl rollout history` reads the result as kubectl's own rollback.
// Unlike kubectl's, each patch also carries the resourceVersion of the read
// it was worked out from, so that it never lands on a workload that has
// changed since.
package rollback

import (
	"context"
	"fmt"
	"strings"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// reason is the reason of the Kubernetes Event recorded on a rolled back
// workload.
const reason = "RolledBack"

// Mutator rolls back one workload.
type Mutator struct {
	client     kube.Interface
	dynamic    dynamic.Interface // Argo Rollouts; nil where there is none
	toRevision int64
}

var _ pipeline.Mutator = (*Mutator)(nil)

// NewMutator returns a Mutator that rolls back through c to toRevision, or
// with 0 to the revision before the current one. toRevision comes from
// ParseValue, which refuses a negative one.
func NewMutator(c kube.Interface, toRevision int64) *Mutator {
	return &Mutator{client: c, toRevision: toRevision}
}

// plan is a rollback worked out from one read of the workload and its
// history.
type plan struct {
	// done, when set, ends the rollback without a patch: the workload
	// already runs the target template, or there is nothing to roll back to.
	done *pipeline.Change
	// from and to are the current and the target revision; before and after
	// the pod templates they stand for.
	from, to      int64
	before, after *corev1.PodTemplateSpec
	// patch restores the target revision, as kubectl's would, and carries
	// the resourceVersion of the read the plan was worked out from. The API
	// server takes a resourceVersion in a patched object as a precondition
	// of the update, so the patch fails with a Conflict, rather than apply a
	// stale plan, if the workload changed since.
	patch []byte
}

// rollbacker rolls back one kind of workload: deploymentRollbacker,
// statefulSetRollbacker, daemonSetRollbacker.
type rollbacker interface {
	// plan reads the workload and its revisions and works out the rollback
	// to toRevision, or with 0 to the revision before the current one.
	plan(ctx context.Context, toRevision int64) (plan, error)
	// patch sends p.patch; it fails with a Conflict when the workload
	// changed after the read p was worked out from.
	patch(ctx context.Context, p plan) error
}

// Mutate rolls ref back to the revision the Mutator was made with. With
// dryRun it works out and describes the rollback without writing.
//
// Nothing to roll back to (no previous revision, no such revision) is a
// Change with Result fail and a nil error: the action ran as designed and
// found no revision, which an operator fixes in the remediation, not here.
//
// The patch carries the resourceVersion of the read the rollback was worked
// out from, which the API server takes as a precondition: it refuses the
// patch with a Conflict if the workload changed since, with no window
// between a check and the write. A stale plan must not land: the target is
// picked relative to the current revision, and the Deployment patch
// replaces every annotation, as kubectl's does. On a Conflict the rollback
// is worked out again from a fresh read, as often as retry.DefaultRetry
// allows; after that the error wraps the last Conflict.
//
// An Argo Rollout keeps no revisions to patch back: its update is aborted
// instead (see abort).
func (m *Mutator) Mutate(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	if ref.Kind == workload.Rollout {
		return m.abort(ctx, ref, dryRun)
	}
	rb, err := m.rollbacker(ref)
	if err != nil {
		return pipeline.Change{}, err
	}
	var change pipeline.Change
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := rb.plan(ctx, m.toRevision)
		if err != nil {
			return err
		}
		if p.done != nil {
			change = *p.done
			return nil
		}
		if dryRun {
			change = describe(ref, p, true)
			return nil
		}
		if err := rb.patch(ctx, p); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("roll back %s from revision %d to revision %d: %w", ref, p.from, p.to, err)
		}
		change = describe(ref, p, false)
		return nil
	})
	if apierrors.IsConflict(err) {
		return pipeline.Change{}, fmt.Errorf("cannot roll back %s: it kept changing while the rollback was worked out: %w", ref, err)
	}
	if err != nil {
		return pipeline.Change{}, err
	}
	return change, nil
}

// rollbacker returns the rollbacker for ref's kind.
func (m *Mutator) rollbacker(ref workload.Ref) (rollbacker, error) {
	switch ref.Kind {
	case workload.Deployment:
		return deploymentRollbacker{client: m.client, ref: ref}, nil
	case workload.StatefulSet:
		return statefulSetRollbacker{client: m.client, ref: ref}, nil
	case workload.DaemonSet:
		return daemonSetRollbacker{client: m.client, ref: ref}, nil
	}
	return nil, fmt.Errorf("cannot roll back %s: only deployments, statefulsets and daemonsets keep revisions", ref)
}

// describe says what p does, or with dryRun would do.
func describe(ref workload.Ref, p plan, dryRun bool) pipeline.Change {
	verb := "rolled back"
	if dryRun {
		verb = "would roll back"
	}
	return pipeline.Change{
		Message: fmt.Sprintf("%s %s from revision %d to revision %d (%s)", verb, ref, p.from, p.to, imageChange(p.before, p.after)),
		Reason:  reason,
		Before:  fmt.Sprintf("revision %d (%s)", p.from, images(p.before)),
		After:   fmt.Sprintf("revision %d (%s)", p.to, images(p.after)),
		Changed: !dryRun,
		Rollout: !dryRun,
	}
}

// noChange is the Change of a workload that already runs the target.
func noChange(ref workload.Ref, revision int64) *pipeline.Change {
	return &pipeline.Change{
		Message: fmt.Sprintf("%s already runs the pod template of revision %d; nothing to do", ref, revision),
		Reason:  reason,
	}
}

// notFound is the Change of a rollback with no revision to go to. revisions
// are those the workload has, in ascending order; current is the one it is
// at.
func notFound(ref workload.Ref, toRevision, current int64, revisions []int64) *pipeline.Change {
	var msg string
	switch {
	case toRevision > 0 && len(revisions) == 0:
		msg = fmt.Sprintf("cannot roll back %s to revision %d: it has no revision history", ref, toRevision)
	case toRevision > 0:
		msg = fmt.Sprintf("cannot roll back %s to revision %d: there is no such revision (available: %s)", ref, toRevision, join(revisions))
	case current == 0:
		msg = fmt.Sprintf("cannot roll back %s: it has no revision history", ref)
	default:
		msg = fmt.Sprintf("cannot roll back %s: it has no previous revision (only revision %d)", ref, current)
	}
	return &pipeline.Change{Message: msg, Result: keptnv2.ResultFailed}
}

// join writes revisions as "1, 2, 3".
func join(revisions []int64) string {
	s := make([]string, len(revisions))
	for i, r := range revisions {
		s[i] = fmt.Sprint(r)
	}
	return strings.Join(s, ", ")
}

// images summarises the images of a pod template's containers, which is
// what usually tells two revisions apart: "image carts:0.13.1", or with
// several containers "images carts=carts:0.13.1, envoy=envoy:1.29".
func images(t *corev1.PodTemplateSpec) string {
	named := len(t.Spec.Containers) > 1
	return imageWord(named) + " " + imageList(t, named)
}

// imageChange says how the images change from before to after: "image
// carts:0.13.2 → carts:0.13.1". Containers are named when either template
// has several.
func imageChange(before, after *corev1.PodTemplateSpec) string {
	named := len(before.Spec.Containers) > 1 || len(after.Spec.Containers) > 1
	b, a := imageList(before, named), imageList(after, named)
	if b == a {
		return imageWord(named) + " " + b + " unchanged; other parts of the pod template differ"
	}
	return imageWord(named) + " " + b + " → " + a
}

func imageWord(named bool) string {
	if named {
		return "images"
	}
	return "image"
}

// imageList lists the images of t's containers, with named as
// "name=image".
func imageList(t *corev1.PodTemplateSpec, named bool) string {
	cs := t.Spec.Containers
	if len(cs) == 0 {
		return "(no containers)"
	}
	if !named {
		return cs[0].Image
	}
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.Name + "=" + c.Image
	}
	return strings.Join(s, ", ")
}

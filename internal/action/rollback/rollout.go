package rollback

import (
	"context"
	"encoding/json"
	"fmt"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// abortReason is the reason of the Event recorded on an aborted Rollout,
// Argo's own word for it.
const abortReason = "Aborted"

// WithDynamic lets m reach Argo Rollouts through dyn, and returns m.
func (m *Mutator) WithDynamic(dyn dynamic.Interface) *Mutator {
	m.dynamic = dyn
	return m
}

// abort rolls an Argo Rollout back as `kubectl argo rollouts abort` does:
// a merge patch of {"status":{"abort":true}} through the status
// subresource (the Rollout itself where the CRD has none, as the plugin
// falls back). Its controller then scales the stable ReplicaSet back up and
// puts the traffic on it. spec.template is left as it is, holding the new
// version, and the message says so: the next change to the Rollout, or a
// retry, rolls that version out again, and only reverting the template
// (kubectl argo rollouts undo) undoes it for good.
//
// An update that is not in progress (the current pod template is the
// stable one) cannot be aborted: that is a failed Change, as a Deployment
// with no previous revision is.
func (m *Mutator) abort(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	if m.toRevision != 0 {
		return pipeline.Change{}, fmt.Errorf(`cannot roll back %s to revision %d: a rollout is rolled back by aborting its update, back to the stable ReplicaSet, so "toRevision" does not apply (kubectl argo rollouts undo --to-revision rewrites its template instead)`, ref, m.toRevision)
	}
	var change pipeline.Change
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("abort %s: %w", ref, err)
		}
		u, ro, err := workload.GetRollout(ctx, m.dynamic, ref)
		if err != nil {
			return fmt.Errorf("get %s: %w", ref, err)
		}
		st := ro.Status
		stable := ro.ReplicaSetName(st.StableRS)
		switch {
		case st.Abort:
			change = pipeline.Change{Reason: abortReason,
				Message: fmt.Sprintf("%s is already aborted: its traffic is on the stable ReplicaSet %s; nothing to do", ref, stable)}
			return nil
		case st.StableRS == "":
			change = failed(fmt.Sprintf("cannot roll back %s: it has no stable ReplicaSet yet, so there is nothing to go back to", ref))
			return nil
		case st.CurrentPodHash == "":
			change = failed(fmt.Sprintf("cannot roll back %s: its controller has not reported its current pod template (status.currentPodHash)", ref))
			return nil
		case st.CurrentPodHash == st.StableRS:
			change = failed(fmt.Sprintf("cannot roll back %s: no update is in progress to abort, its pod template (ReplicaSet %s) is the stable one; "+
				"to go back to an earlier version, revert the template: kubectl argo rollouts undo %s -n %s", ref, stable, ref.Name, ref.Namespace))
			return nil
		}
		newVersion, oldVersion := m.versions(ctx, ro)
		change = pipeline.Change{
			Reason: abortReason,
			Before: fmt.Sprintf("updating to ReplicaSet %s (%s)", ro.ReplicaSetName(st.CurrentPodHash), newVersion),
			After:  fmt.Sprintf("aborted, back on the stable ReplicaSet %s (%s)", stable, oldVersion),
		}
		what := fmt.Sprintf("%s: traffic back on the stable ReplicaSet %s (%s); spec.template still holds the new version (%s), "+
			"which the next change or a retry will roll out again; to undo it for good, revert the template (kubectl argo rollouts undo %s -n %s)",
			ref, stable, oldVersion, newVersion, ref.Name, ref.Namespace)
		if dryRun {
			change.Message = "would abort " + what
			return nil
		}
		if err := m.patchAbort(ctx, ref, u.GetResourceVersion()); err != nil {
			return err
		}
		change.Message = "aborted " + what
		change.Changed, change.Rollout = true, true
		return nil
	})
	if apierrors.IsConflict(err) {
		return pipeline.Change{}, fmt.Errorf("cannot abort %s: it kept changing while the abort was worked out: %w", ref, err)
	}
	if err != nil {
		return pipeline.Change{}, err
	}
	return change, nil
}

// patchAbort sends the plugin's patch, with the resourceVersion of the read
// the abort was decided on as a precondition; a Conflict is returned as
// it is, for the caller to work the abort out again.
func (m *Mutator) patchAbort(ctx context.Context, ref workload.Ref, resourceVersion string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": resourceVersion},
		"status":   map[string]any{"abort": true},
	})
	if err != nil {
		return fmt.Errorf("abort %s: %w", ref, err)
	}
	rollouts := m.dynamic.Resource(workload.RolloutResource()).Namespace(ref.Namespace)
	_, err = rollouts.Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		// A CRD without the status subresource: the plugin patches the
		// Rollout itself then.
		_, err = rollouts.Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("abort %s: %w", ref, err)
	}
	return err
}

// versions names the images of the new version (spec.template, or the
// Deployment a workloadRef points at) and of the stable ReplicaSet, for the
// message; what cannot be read is said so rather than failing the abort.
func (m *Mutator) versions(ctx context.Context, ro *workload.ArgoRollout) (newVersion, stable string) {
	switch {
	case ro.Spec.Template != nil:
		newVersion = images(ro.Spec.Template)
	case ro.Spec.WorkloadRef != nil:
		newVersion = fmt.Sprintf("the template of %s %s, spec.workloadRef", ro.Spec.WorkloadRef.Kind, ro.Spec.WorkloadRef.Name)
	default:
		newVersion = "its pod template"
	}
	stable = "images unknown"
	rs, err := m.client.AppsV1().ReplicaSets(ro.Namespace).Get(ctx, ro.ReplicaSetName(ro.Status.StableRS), metav1.GetOptions{})
	if err == nil {
		stable = images(&corev1.PodTemplateSpec{Spec: rs.Spec.Template.Spec})
	}
	return newVersion, stable
}

// failed is a Change that did nothing, for a reason the remediation's
// author has to act on.
func failed(msg string) pipeline.Change {
	return pipeline.Change{Message: msg, Result: keptnv2.ResultFailed}
}

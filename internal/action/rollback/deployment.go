package rollback

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// revisionAnnotation is where the deployment controller numbers a
// Deployment's ReplicaSets, and the Deployment itself with the current one.
const revisionAnnotation = "deployment.kubernetes.io/revision"

// skippedAnnotation reports the annotations kubectl keeps from the Deployment rather
// than copy from the ReplicaSet it rolls back to: they describe the
// Deployment's rollouts, not the template. Ours are kept too: the
// controller copies a Deployment's annotations onto its ReplicaSets, so a
// rollback would otherwise bring back an opt-out its owner has removed.
func skippedAnnotation(key string) bool {
	if strings.HasPrefix(key, action.AnnotationPrefix) {
		return true
	}
	switch key {
	case corev1.LastAppliedConfigAnnotation,
		revisionAnnotation,
		"deployment.kubernetes.io/revision-history",
		"deployment.kubernetes.io/desired-replicas",
		"deployment.kubernetes.io/max-replicas",
		appsv1.DeprecatedRollbackTo:
		return true
	}
	return false
}

// deploymentRollbacker is kubectl's DeploymentRollbacker: the revisions are
// the Deployment's ReplicaSets, and a rollback copies one's pod template
// and annotations back into the Deployment with a JSON patch.
type deploymentRollbacker struct {
	client kube.Interface
	ref    workload.Ref
}

// plan reads the Deployment and the ReplicaSets it controls, and works out
// the patch that puts back the template and annotations of the target's.
func (r deploymentRollbacker) plan(ctx context.Context, toRevision int64) (plan, error) {
	d, err := r.client.AppsV1().Deployments(r.ref.Namespace).Get(ctx, r.ref.Name, metav1.GetOptions{})
	if err != nil {
		return plan{}, fmt.Errorf("get %s: %w", r.ref, err)
	}
	// kubectl checks this only after finding the revision, but a paused
	// Deployment would not roll out what we patch in either way.
	if d.Spec.Paused {
		return plan{}, fmt.Errorf("cannot roll back %s: it is paused; resume it first", r.ref)
	}
	rss, err := r.replicaSets(ctx, d)
	if err != nil {
		return plan{}, err
	}
	revisions := make([]int64, len(rss))
	for i, rs := range rss {
		revisions[i] = rs.revision
	}
	// The Deployment carries the revision of its current ReplicaSet.
	current, ok := revision(d.Annotations)
	if !ok && len(rss) > 0 {
		current = rss[len(rss)-1].revision
	}

	target := pickReplicaSet(rss, toRevision, current)
	if target == nil {
		return plan{done: notFound(r.ref, toRevision, current, revisions)}, nil
	}
	if equalIgnoreHash(&target.Spec.Template, &d.Spec.Template) {
		return plan{done: noChange(r.ref, target.revision)}, nil
	}
	tmpl := target.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	patch, err := deploymentPatch(d.ResourceVersion, tmpl, restoredAnnotations(d.Annotations, target.Annotations))
	if err != nil {
		return plan{}, fmt.Errorf("make the patch that rolls back %s to revision %d: %w", r.ref, target.revision, err)
	}
	return plan{from: current, to: target.revision, before: &d.Spec.Template, after: tmpl, patch: patch}, nil
}

// patch sends the plan's JSON patch to the Deployment.
func (r deploymentRollbacker) patch(ctx context.Context, p plan) error {
	_, err := r.client.AppsV1().Deployments(r.ref.Namespace).Patch(ctx, r.ref.Name, types.JSONPatchType, p.patch, metav1.PatchOptions{})
	return err
}

// restoredAnnotations are the annotations of a Deployment rolled back to a
// ReplicaSet: the ReplicaSet's, except that those skippedAnnotation names
// are the Deployment's own.
func restoredAnnotations(deployment, replicaSet map[string]string) map[string]string {
	annotations := map[string]string{}
	for k, v := range deployment {
		if skippedAnnotation(k) {
			annotations[k] = v
		}
	}
	for k, v := range replicaSet {
		if !skippedAnnotation(k) {
			annotations[k] = v
		}
	}
	return annotations
}

// deploymentPatch is kubectl's patch, after an op that makes it
// conditional: the API server takes the resourceVersion of the patched
// Deployment as a precondition, and answers with a Conflict if the
// Deployment is no longer the one read. The API server's JSON patch
// replaces an object key that is missing too, so it also works on a
// Deployment without annotations.
func deploymentPatch(resourceVersion string, tmpl *corev1.PodTemplateSpec, annotations map[string]string) ([]byte, error) {
	return json.Marshal([]map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": resourceVersion},
		{"op": "replace", "path": "/spec/template", "value": tmpl},
		{"op": "replace", "path": "/metadata/annotations", "value": annotations},
	})
}

// replicaSet is a ReplicaSet with its revision.
type replicaSet struct {
	*appsv1.ReplicaSet
	revision int64
}

// replicaSets lists the ReplicaSets the Deployment's selector matches and
// that it controls, so that a ReplicaSet that only shares the labels is
// never rolled back to; ascending by revision. Those without a revision are
// left out: there is no way to name them.
func (r deploymentRollbacker) replicaSets(ctx context.Context, d *appsv1.Deployment) ([]replicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s: %w", r.ref, err)
	}
	list, err := r.client.AppsV1().ReplicaSets(r.ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the replicasets of %s: %w", r.ref, err)
	}
	var rss []replicaSet
	for i := range list.Items {
		rs := &list.Items[i]
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		if rev, ok := revision(rs.Annotations); ok {
			rss = append(rss, replicaSet{ReplicaSet: rs, revision: rev})
		}
	}
	slices.SortFunc(rss, func(a, b replicaSet) int {
		return cmp.Or(cmp.Compare(a.revision, b.revision), strings.Compare(a.Name, b.Name))
	})
	return rss, nil
}

// pickReplicaSet returns the ReplicaSet of toRevision, or with 0 the one of
// the highest revision below current; nil if there is none. rss is
// ascending by revision.
func pickReplicaSet(rss []replicaSet, toRevision, current int64) *replicaSet {
	for i := len(rss) - 1; i >= 0; i-- {
		rs := &rss[i]
		if toRevision > 0 && rs.revision == toRevision || toRevision == 0 && rs.revision < current {
			return rs
		}
	}
	return nil
}

// revision reads the revision annotation; only a positive number counts.
func revision(annotations map[string]string) (int64, bool) {
	n, err := strconv.ParseInt(annotations[revisionAnnotation], 10, 64)
	return n, err == nil && n > 0
}

// equalIgnoreHash is kubectl's: the template a Deployment carries never has
// the pod-template-hash label its ReplicaSets add.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

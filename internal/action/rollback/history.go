package rollback

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// StatefulSets and DaemonSets keep their revisions as ControllerRevisions
// whose data is a strategic merge patch that puts the revision's pod
// template back: {"spec":{"template":{...,"$patch":"replace"}}}. kubectl
// rolls back by sending that patch as it is, and so does this package, with
// only the resourceVersion of the workload read merged in.

// statefulSetRollbacker is kubectl's StatefulSetRollbacker.
type statefulSetRollbacker struct {
	client kube.Interface
	ref    workload.Ref
}

// plan reads the StatefulSet and the ControllerRevisions it controls, and
// takes the target's patch.
func (r statefulSetRollbacker) plan(ctx context.Context, toRevision int64) (plan, error) {
	s, err := r.client.AppsV1().StatefulSets(r.ref.Namespace).Get(ctx, r.ref.Name, metav1.GetOptions{})
	if err != nil {
		return plan{}, fmt.Errorf("get %s: %w", r.ref, err)
	}
	crs, err := controllerRevisions(ctx, r.client, r.ref, s, s.Spec.Selector)
	if err != nil {
		return plan{}, err
	}
	// The StatefulSet's status names the ControllerRevision of its current
	// template.
	return planRevision(r.ref, s, &s.Spec.Template, crs, s.Status.UpdateRevision, toRevision)
}

// patch sends the plan's strategic merge patch to the StatefulSet.
func (r statefulSetRollbacker) patch(ctx context.Context, p plan) error {
	_, err := r.client.AppsV1().StatefulSets(r.ref.Namespace).Patch(ctx, r.ref.Name, types.StrategicMergePatchType, p.patch, metav1.PatchOptions{})
	return err
}

// daemonSetRollbacker is kubectl's DaemonSetRollbacker.
type daemonSetRollbacker struct {
	client kube.Interface
	ref    workload.Ref
}

// plan reads the DaemonSet and the ControllerRevisions it controls, and
// takes the target's patch.
func (r daemonSetRollbacker) plan(ctx context.Context, toRevision int64) (plan, error) {
	ds, err := r.client.AppsV1().DaemonSets(r.ref.Namespace).Get(ctx, r.ref.Name, metav1.GetOptions{})
	if err != nil {
		return plan{}, fmt.Errorf("get %s: %w", r.ref, err)
	}
	crs, err := controllerRevisions(ctx, r.client, r.ref, ds, ds.Spec.Selector)
	if err != nil {
		return plan{}, err
	}
	// A DaemonSet's status names no revision; the highest is current.
	return planRevision(r.ref, ds, &ds.Spec.Template, crs, "", toRevision)
}

// patch sends the plan's strategic merge patch to the DaemonSet.
func (r daemonSetRollbacker) patch(ctx context.Context, p plan) error {
	_, err := r.client.AppsV1().DaemonSets(r.ref.Namespace).Patch(ctx, r.ref.Name, types.StrategicMergePatchType, p.patch, metav1.PatchOptions{})
	return err
}

// planRevision works out the rollback of obj, a StatefulSet or DaemonSet
// read with template, to toRevision among crs, its ControllerRevisions in
// ascending order. currentName, if not "", names the ControllerRevision of
// the current template; otherwise the highest revision is current.
func planRevision(ref workload.Ref, obj metav1.Object, template *corev1.PodTemplateSpec, crs []*appsv1.ControllerRevision, currentName string, toRevision int64) (plan, error) {
	revisions := make([]int64, len(crs))
	var current int64
	for i, cr := range crs {
		revisions[i] = cr.Revision
		current = max(current, cr.Revision)
	}
	if i := slices.IndexFunc(crs, func(cr *appsv1.ControllerRevision) bool { return cr.Name == currentName }); currentName != "" && i >= 0 {
		current = crs[i].Revision
	}

	var target *appsv1.ControllerRevision
	for _, cr := range slices.Backward(crs) {
		if toRevision > 0 && cr.Revision == toRevision || toRevision == 0 && cr.Revision < current {
			target = cr
			break
		}
	}
	if target == nil {
		return plan{done: notFound(ref, toRevision, current, revisions)}, nil
	}
	after, err := restoredTemplate(obj, target.Data.Raw)
	if err != nil {
		return plan{}, fmt.Errorf("read revision %d of %s (controllerrevision %s): %w", target.Revision, ref, target.Name, err)
	}
	if apiequality.Semantic.DeepEqual(after, template) {
		return plan{done: noChange(ref, target.Revision)}, nil
	}
	patch, err := withResourceVersion(target.Data.Raw, obj.GetResourceVersion())
	if err != nil {
		return plan{}, fmt.Errorf("make the patch that rolls back %s to revision %d: %w", ref, target.Revision, err)
	}
	return plan{from: current, to: target.Revision, before: template, after: after, patch: patch}, nil
}

// withResourceVersion merges resourceVersion into the metadata of a
// strategic merge patch, and so makes it conditional: the API server takes
// the resourceVersion of the patched object as a precondition, and answers
// with a Conflict if the workload is no longer the one read. The rest of the
// patch is kept as it is.
func withResourceVersion(patch []byte, resourceVersion string) ([]byte, error) {
	var obj, meta map[string]json.RawMessage
	if err := json.Unmarshal(patch, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		obj = map[string]json.RawMessage{}
	}
	if raw, ok := obj["metadata"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	rv, err := json.Marshal(resourceVersion)
	if err != nil {
		return nil, err
	}
	meta["resourceVersion"] = rv
	if obj["metadata"], err = json.Marshal(meta); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

// controllerRevisions lists the ControllerRevisions that selector matches
// and owner controls, ascending by revision.
func controllerRevisions(ctx context.Context, c kube.Interface, ref workload.Ref, owner metav1.Object, selector *metav1.LabelSelector) ([]*appsv1.ControllerRevision, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s: %w", ref, err)
	}
	list, err := c.AppsV1().ControllerRevisions(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the controllerrevisions of %s: %w", ref, err)
	}
	var crs []*appsv1.ControllerRevision
	for i := range list.Items {
		if cr := &list.Items[i]; metav1.IsControlledBy(cr, owner) {
			crs = append(crs, cr)
		}
	}
	slices.SortFunc(crs, func(a, b *appsv1.ControllerRevision) int {
		return cmp.Or(cmp.Compare(a.Revision, b.Revision), strings.Compare(a.Name, b.Name))
	})
	return crs, nil
}

// restoredTemplate is the pod template that a ControllerRevision's patch
// gives obj, a *StatefulSet or *DaemonSet: the patch applied to a copy,
// with obj's type as the schema, as the API server will.
func restoredTemplate(obj metav1.Object, patch []byte) (*corev1.PodTemplateSpec, error) {
	orig, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	patched, err := strategicpatch.StrategicMergePatch(orig, patch, obj)
	if err != nil {
		return nil, err
	}
	var out struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(patched, &out); err != nil {
		return nil, err
	}
	return &out.Spec.Template, nil
}

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
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// StatefulSets and DaemonSets keep their revisions as ControllerRevisions
// whose data is a strategic merge patch that puts the revision's pod
// template back: {"spec":{"template":{...,"$patch":"replace"}}}. kubectl
// rolls back by sending that patch as it is, and so does this package, with
// only the resourceVersion of the workload read merged in.

// historyRollbacker is kubectl's StatefulSetRollbacker and
// DaemonSetRollbacker, which differ only in how they read the workload.
type historyRollbacker struct {
	client kubernetes.Interface
	ref    workload.Ref
}

// planStatefulSet works out the rollback of s, as read.
func (r historyRollbacker) planStatefulSet(ctx context.Context, s *appsv1.StatefulSet, toRevision int64) (plan, error) {
	return r.plan(ctx, toRevision, history{
		object:   s,
		selector: s.Spec.Selector,
		template: &s.Spec.Template,
		current:  s.Status.UpdateRevision,
		apply: func(patch []byte) (*corev1.PodTemplateSpec, error) {
			out, err := applyLocally(s, patch)
			if err != nil {
				return nil, err
			}
			return &out.Spec.Template, nil
		},
	})
}

// planDaemonSet works out the rollback of ds, as read.
func (r historyRollbacker) planDaemonSet(ctx context.Context, ds *appsv1.DaemonSet, toRevision int64) (plan, error) {
	return r.plan(ctx, toRevision, history{
		object:   ds,
		selector: ds.Spec.Selector,
		template: &ds.Spec.Template,
		// A DaemonSet's status names no revision; the highest is current.
		apply: func(patch []byte) (*corev1.PodTemplateSpec, error) {
			out, err := applyLocally(ds, patch)
			if err != nil {
				return nil, err
			}
			return &out.Spec.Template, nil
		},
	})
}

// history is what historyRollbacker.plan needs of a StatefulSet or
// DaemonSet.
type history struct {
	object   metav1.Object
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	// current names the ControllerRevision of the current template, when
	// the workload's status says: a StatefulSet's updateRevision.
	current string
	// apply returns the pod template that a ControllerRevision's patch
	// gives the workload.
	apply func(patch []byte) (*corev1.PodTemplateSpec, error)
}

// plan works out the rollback of a workload that keeps its revisions as
// ControllerRevisions.
func (r historyRollbacker) plan(ctx context.Context, toRevision int64, h history) (plan, error) {
	crs, err := controllerRevisions(ctx, r.client, r.ref, h)
	if err != nil {
		return plan{}, err
	}
	revisions := make([]int64, len(crs))
	var current int64
	for i, cr := range crs {
		revisions[i] = cr.Revision
		current = max(current, cr.Revision)
	}
	if i := slices.IndexFunc(crs, func(cr *appsv1.ControllerRevision) bool { return cr.Name == h.current }); h.current != "" && i >= 0 {
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
		return plan{done: notFound(r.ref, toRevision, current, revisions)}, nil
	}
	after, err := h.apply(target.Data.Raw)
	if err != nil {
		return plan{}, fmt.Errorf("read revision %d of %s (controllerrevision %s): %w", target.Revision, r.ref, target.Name, err)
	}
	if apiequality.Semantic.DeepEqual(after, h.template) {
		return plan{done: noChange(r.ref, target.Revision)}, nil
	}
	patch, err := withResourceVersion(target.Data.Raw, h.object.GetResourceVersion())
	if err != nil {
		return plan{}, fmt.Errorf("make the patch that rolls back %s to revision %d: %w", r.ref, target.Revision, err)
	}
	return plan{
		from: current, to: target.Revision,
		before: h.template, after: after,
		patchType: types.StrategicMergePatchType, patch: patch,
	}, nil
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

// controllerRevisions lists the ControllerRevisions the workload's selector
// matches and that it controls, ascending by revision.
func controllerRevisions(ctx context.Context, c kubernetes.Interface, ref workload.Ref, h history) ([]*appsv1.ControllerRevision, error) {
	sel, err := metav1.LabelSelectorAsSelector(h.selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s: %w", ref, err)
	}
	list, err := c.AppsV1().ControllerRevisions(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the controllerrevisions of %s: %w", ref, err)
	}
	var crs []*appsv1.ControllerRevision
	for i := range list.Items {
		if cr := &list.Items[i]; metav1.IsControlledBy(cr, h.object) {
			crs = append(crs, cr)
		}
	}
	slices.SortFunc(crs, func(a, b *appsv1.ControllerRevision) int {
		return cmp.Or(cmp.Compare(a.Revision, b.Revision), strings.Compare(a.Name, b.Name))
	})
	return crs, nil
}

// applyLocally applies a strategic merge patch to a copy of obj, with obj's
// type as the schema, as the API server will.
func applyLocally[T appsv1.StatefulSet | appsv1.DaemonSet](obj *T, patch []byte) (*T, error) {
	orig, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var schema T
	patched, err := strategicpatch.StrategicMergePatch(orig, patch, schema)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(patched, out); err != nil {
		return nil, err
	}
	return out, nil
}

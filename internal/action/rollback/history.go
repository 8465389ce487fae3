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
// rolls back by sending that patch as it is, and so does this package.

// statefulSetRollbacker is kubectl's StatefulSetRollbacker.
type statefulSetRollbacker struct {
	client kubernetes.Interface
	ref    workload.Ref
}

func (r statefulSetRollbacker) get(ctx context.Context) (*appsv1.StatefulSet, error) {
	s, err := r.client.AppsV1().StatefulSets(r.ref.Namespace).Get(ctx, r.ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", r.ref, err)
	}
	return s, nil
}

// statefulSetStamp covers what a plan reads from the StatefulSet.
func statefulSetStamp(s *appsv1.StatefulSet) (string, error) {
	b, err := json.Marshal(struct {
		Template       corev1.PodTemplateSpec
		UpdateRevision string
	}{s.Spec.Template, s.Status.UpdateRevision})
	return string(b), err
}

func (r statefulSetRollbacker) stamp(ctx context.Context) (string, error) {
	s, err := r.get(ctx)
	if err != nil {
		return "", err
	}
	return statefulSetStamp(s)
}

func (r statefulSetRollbacker) apply(ctx context.Context, pt types.PatchType, patch []byte) error {
	_, err := r.client.AppsV1().StatefulSets(r.ref.Namespace).Patch(ctx, r.ref.Name, pt, patch, metav1.PatchOptions{})
	return err
}

func (r statefulSetRollbacker) plan(ctx context.Context, toRevision int64) (plan, error) {
	s, err := r.get(ctx)
	if err != nil {
		return plan{}, err
	}
	stamp, err := statefulSetStamp(s)
	if err != nil {
		return plan{}, fmt.Errorf("read %s: %w", r.ref, err)
	}
	return planHistory(ctx, r.client, r.ref, toRevision, history{
		object:   s,
		selector: s.Spec.Selector,
		template: &s.Spec.Template,
		current:  s.Status.UpdateRevision,
		stamp:    stamp,
		apply: func(patch []byte) (*corev1.PodTemplateSpec, error) {
			out, err := applyLocally(s, patch)
			if err != nil {
				return nil, err
			}
			return &out.Spec.Template, nil
		},
	})
}

// daemonSetRollbacker is kubectl's DaemonSetRollbacker.
type daemonSetRollbacker struct {
	client kubernetes.Interface
	ref    workload.Ref
}

func (r daemonSetRollbacker) get(ctx context.Context) (*appsv1.DaemonSet, error) {
	ds, err := r.client.AppsV1().DaemonSets(r.ref.Namespace).Get(ctx, r.ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", r.ref, err)
	}
	return ds, nil
}

// daemonSetStamp covers what a plan reads from the DaemonSet.
func daemonSetStamp(ds *appsv1.DaemonSet) (string, error) {
	b, err := json.Marshal(ds.Spec.Template)
	return string(b), err
}

func (r daemonSetRollbacker) stamp(ctx context.Context) (string, error) {
	ds, err := r.get(ctx)
	if err != nil {
		return "", err
	}
	return daemonSetStamp(ds)
}

func (r daemonSetRollbacker) apply(ctx context.Context, pt types.PatchType, patch []byte) error {
	_, err := r.client.AppsV1().DaemonSets(r.ref.Namespace).Patch(ctx, r.ref.Name, pt, patch, metav1.PatchOptions{})
	return err
}

func (r daemonSetRollbacker) plan(ctx context.Context, toRevision int64) (plan, error) {
	ds, err := r.get(ctx)
	if err != nil {
		return plan{}, err
	}
	stamp, err := daemonSetStamp(ds)
	if err != nil {
		return plan{}, fmt.Errorf("read %s: %w", r.ref, err)
	}
	return planHistory(ctx, r.client, r.ref, toRevision, history{
		object:   ds,
		selector: ds.Spec.Selector,
		template: &ds.Spec.Template,
		// A DaemonSet's status names no revision; the highest is current.
		stamp: stamp,
		apply: func(patch []byte) (*corev1.PodTemplateSpec, error) {
			out, err := applyLocally(ds, patch)
			if err != nil {
				return nil, err
			}
			return &out.Spec.Template, nil
		},
	})
}

// history is what planHistory needs of a StatefulSet or DaemonSet.
type history struct {
	object   metav1.Object
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
	// current names the ControllerRevision of the current template, when
	// the workload's status says: a StatefulSet's updateRevision.
	current string
	stamp   string
	// apply returns the pod template that a ControllerRevision's patch
	// gives the workload.
	apply func(patch []byte) (*corev1.PodTemplateSpec, error)
}

// planHistory works out the rollback of a workload that keeps its revisions
// as ControllerRevisions.
func planHistory(ctx context.Context, c kubernetes.Interface, ref workload.Ref, toRevision int64, h history) (plan, error) {
	crs, err := controllerRevisions(ctx, c, ref, h)
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
		return plan{done: notFound(ref, toRevision, current, revisions)}, nil
	}
	after, err := h.apply(target.Data.Raw)
	if err != nil {
		return plan{}, fmt.Errorf("read revision %d of %s (controllerrevision %s): %w", target.Revision, ref, target.Name, err)
	}
	if apiequality.Semantic.DeepEqual(after, h.template) {
		return plan{done: noChange(ref, target.Revision)}, nil
	}
	return plan{
		from: current, to: target.Revision,
		before: h.template, after: after,
		patchType: types.StrategicMergePatchType, patch: target.Data.Raw,
		stamp: h.stamp,
	}, nil
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

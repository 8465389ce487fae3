package sandbox

import (
	"errors"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// fieldManager stands for the user agent an API server would record as the
// manager of the fields a scale update sets.
const fieldManager = "sandbox-scale"

// addScaleReactors serves the scale subresource of Deployments and
// StatefulSets. The fake's own object reaction ignores subresources on get
// and update: a get returns the workload itself, which the typed GetScale
// then asserts to be a Scale and panics; an update hands the Scale to the
// tracker as if it were the workload, which the field-managed tracker
// refuses to convert (the simple one would store it in the workload's place).
//
// The reactors run under the clientset's lock and so must use the tracker,
// never the clientset.
func addScaleReactors(cs *fake.Clientset) {
	t := cs.Tracker()
	for _, resource := range []string{"deployments", "statefulsets"} {
		cs.PrependReactor("get", resource+"/scale", func(a clienttesting.Action) (bool, runtime.Object, error) {
			return getScale(t, a)
		})
		cs.PrependReactor("update", resource+"/scale", func(a clienttesting.Action) (bool, runtime.Object, error) {
			return updateScale(t, a)
		})
		// Patch and apply on the subresource would otherwise be applied to
		// the workload and the result handed back where a Scale is expected.
		cs.PrependReactor("patch", resource+"/scale", func(a clienttesting.Action) (bool, runtime.Object, error) {
			if !isScale(a) {
				return false, nil, nil
			}
			return true, nil, apierrors.NewMethodNotSupported(a.GetResource().GroupResource(), "patch of the scale subresource in the sandbox (use UpdateScale)")
		})
	}
}

// isScale reports whether a is about the scale subresource of an apps
// workload. Reactors are matched on resource name only, and the name
// "deployments" also exists in the long-gone extensions group.
func isScale(a clienttesting.Action) bool {
	return a.GetSubresource() == "scale" && a.GetResource().Group == appsv1.GroupName
}

func getScale(t clienttesting.ObjectTracker, a clienttesting.Action) (bool, runtime.Object, error) {
	get, ok := a.(clienttesting.GetAction)
	if !ok || !isScale(a) {
		return false, nil, nil
	}
	obj, err := t.Get(a.GetResource(), a.GetNamespace(), get.GetName())
	if err != nil {
		return true, nil, err
	}
	s, err := scaleOf(obj)
	if err != nil {
		return true, nil, err
	}
	return true, s, nil
}

func updateScale(t clienttesting.ObjectTracker, a clienttesting.Action) (bool, runtime.Object, error) {
	upd, ok := a.(clienttesting.UpdateActionImpl)
	if !ok || !isScale(a) {
		return false, nil, nil
	}
	gvr, ns := a.GetResource(), a.GetNamespace()
	want, ok := upd.GetObject().(*autoscalingv1.Scale)
	if !ok {
		return true, nil, apierrors.NewBadRequest(fmt.Sprintf("expected an autoscaling/v1 Scale, got %T", upd.GetObject()))
	}
	if want.Name == "" {
		return true, nil, apierrors.NewBadRequest("scale has no metadata.name")
	}
	if want.Spec.Replicas < 0 {
		return true, nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), want.Name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0"),
		})
	}

	obj, err := t.Get(gvr, ns, want.Name)
	if err != nil {
		return true, nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return true, nil, err
	}
	// The tracker ignores resourceVersion; check it here so that concurrent
	// read-modify-write scalers see the conflicts a real cluster gives them.
	if rv := want.ResourceVersion; rv != "" && rv != m.GetResourceVersion() {
		return true, nil, conflict(gvr.GroupResource(), want.Name)
	}
	changed, err := setReplicas(obj, want.Spec.Replicas)
	if err != nil {
		return true, nil, err
	}
	// As on a real cluster, an update that changes nothing writes nothing
	// and keeps the resourceVersion.
	if changed && len(upd.UpdateOptions.DryRun) == 0 {
		m.SetResourceVersion(nextResourceVersion(m.GetResourceVersion()))
		fm := upd.UpdateOptions.FieldManager
		if fm == "" {
			fm = fieldManager
		}
		if err := t.Update(gvr, obj, ns, metav1.UpdateOptions{FieldManager: fm}); err != nil {
			return true, nil, err
		}
	}
	s, err := scaleOf(obj)
	if err != nil {
		return true, nil, err
	}
	return true, s, nil
}

func conflict(gr schema.GroupResource, name string) error {
	return apierrors.NewConflict(gr, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// nextResourceVersion orders versions the way the sandbox hands them out;
// a seed's non-numeric version simply starts the count again.
func nextResourceVersion(rv string) string {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		n = 0
	}
	return strconv.FormatUint(n+1, 10)
}

// scaleOf builds the Scale an API server would return for a workload.
func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	var (
		om       metav1.ObjectMeta
		spec     *int32
		status   int32
		selector *metav1.LabelSelector
	)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		om, spec, status, selector = o.ObjectMeta, o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector
	case *appsv1.StatefulSet:
		om, spec, status, selector = o.ObjectMeta, o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the sandbox has no scale subresource for %T", obj))
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("selector of %s/%s: %w", om.Namespace, om.Name, err))
	}
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{APIVersion: autoscalingv1.SchemeGroupVersion.String(), Kind: "Scale"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              om.Name,
			Namespace:         om.Namespace,
			UID:               om.UID,
			ResourceVersion:   om.ResourceVersion,
			CreationTimestamp: om.CreationTimestamp,
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas(spec)},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel.String()},
	}, nil
}

// replicas reads spec.replicas, which the API server defaults to 1.
func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// setReplicas writes spec.replicas and, since no controller will, the status
// a controller would report once the rollout converged. It reports whether
// spec.replicas changed.
func setReplicas(obj runtime.Object, n int32) (changed bool, err error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if replicas(o.Spec.Replicas) == n {
			return false, nil
		}
		o.Generation++
		o.Spec.Replicas = &n
		o.Status.ObservedGeneration = o.Generation
		o.Status.Replicas = n
		o.Status.UpdatedReplicas = n
		o.Status.ReadyReplicas = n
		o.Status.AvailableReplicas = n
		o.Status.UnavailableReplicas = 0
	case *appsv1.StatefulSet:
		if replicas(o.Spec.Replicas) == n {
			return false, nil
		}
		o.Generation++
		o.Spec.Replicas = &n
		o.Status.ObservedGeneration = o.Generation
		o.Status.Replicas = n
		o.Status.CurrentReplicas = n
		o.Status.UpdatedReplicas = n
		o.Status.ReadyReplicas = n
		o.Status.AvailableReplicas = n
	default:
		return false, apierrors.NewBadRequest(fmt.Sprintf("the sandbox has no scale subresource for %T", obj))
	}
	return true, nil
}

package sandbox

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// addEvictionReactor teaches the sandbox the eviction subresource, as the
// API server does it when no PodDisruptionBudget stands in the way: the pod
// is deleted. The stock tracker would instead try to store the Eviction as
// if it were the pod.
//
// Standing in for the workload's controller and the kubelet, the sandbox
// then puts a ready replacement in its place, as a healthy cluster would:
// same name for a StatefulSet's pod, a new one for a ReplicaSet's.
func addEvictionReactor(cs *fake.Clientset) {
	t := cs.Tracker()
	cs.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		create, ok := a.(clienttesting.CreateAction)
		if !ok || a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev, ok := create.GetObject().(*policyv1.Eviction)
		if !ok {
			return true, nil, apierrors.NewBadRequest("expected a policy/v1 Eviction")
		}
		gvr, ns := a.GetResource(), a.GetNamespace()
		obj, err := t.Get(gvr, ns, ev.Name)
		if err != nil {
			return true, nil, err
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return true, nil, apierrors.NewInternalError(fmt.Errorf("pod %s/%s is a %T", ns, ev.Name, obj))
		}
		if p := ev.DeleteOptions; p != nil && p.Preconditions != nil && p.Preconditions.UID != nil && *p.Preconditions.UID != pod.UID {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), ev.Name,
				fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", *p.Preconditions.UID, pod.UID))
		}
		if err := t.Delete(gvr, ns, ev.Name); err != nil {
			return true, nil, err
		}
		if err := t.Create(gvr, replacement(pod), ns); err != nil {
			return true, nil, err
		}
		return true, ev, nil
	})
}

// replacement is the ready pod a controller and a kubelet would put in the
// evicted pod's place.
func replacement(p *corev1.Pod) *corev1.Pod {
	r := p.DeepCopy()
	r.UID = uuid.NewUUID()
	r.ResourceVersion = "1"
	r.CreationTimestamp = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	if owner := metav1.GetControllerOf(p); owner != nil && owner.Kind == "ReplicaSet" {
		r.Name = owner.Name + "-" + rand.String(5)
	}
	now := metav1.Now()
	r.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		StartTime:  &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	for _, c := range p.Spec.Containers {
		r.Status.ContainerStatuses = append(r.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return r
}

package deletepods_test

import (
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const ns = "sockshop-production"

// fixture is a workload with its pods, owned the way the controllers own
// them, since workload.Pods follows owner references: deployment →
// ReplicaSet → pod, or statefulset/daemonset → pod.
type fixture struct {
	kind     workload.Kind // Deployment when empty
	name     string        // "carts" when empty
	replicas int32
	pods     []*corev1.Pod
	extra    []runtime.Object // anything else: budgets, stray pods
}

func (f fixture) ref() workload.Ref {
	kind, name := f.kind, f.name
	if kind == "" {
		kind = workload.Deployment
	}
	if name == "" {
		name = "carts"
	}
	return workload.Ref{Kind: kind, Namespace: ns, Name: name}
}

func (f fixture) objects() []runtime.Object {
	ref := f.ref()
	labels := map[string]string{"app": ref.Name}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), Labels: labels}
	}
	selector := &metav1.LabelSelector{MatchLabels: labels}
	replicas := f.replicas

	var objs []runtime.Object
	owner := controller(ref.Kind, ref.Name)
	switch ref.Kind {
	case workload.Deployment:
		objs = append(objs, &appsv1.Deployment{ObjectMeta: meta(ref.Name), Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector}})
		rs := &appsv1.ReplicaSet{ObjectMeta: meta(ref.Name + "-7d4b9"), Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: selector}}
		rs.OwnerReferences = []metav1.OwnerReference{owner}
		objs = append(objs, rs)
		owner = controller("ReplicaSet", rs.Name)
	case workload.StatefulSet:
		objs = append(objs, &appsv1.StatefulSet{ObjectMeta: meta(ref.Name), Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: selector}})
	case workload.DaemonSet:
		objs = append(objs, &appsv1.DaemonSet{ObjectMeta: meta(ref.Name), Spec: appsv1.DaemonSetSpec{Selector: selector}})
	}
	for _, p := range f.pods {
		p = p.DeepCopy()
		p.Namespace, p.Labels = ns, labels
		p.OwnerReferences = []metav1.OwnerReference{owner}
		objs = append(objs, p)
	}
	return append(objs, f.extra...)
}

// client returns a fake clientset holding the fixture.
func (f fixture) client() *fake.Clientset { return fake.NewClientset(f.objects()...) }

// controller is a controlling owner reference to the object named name,
// whose UID the fixture derives from its name.
func controller(kind workload.Kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: "apps/v1", Kind: string(kind), Name: name,
		UID: types.UID("uid-" + name), Controller: &yes,
	}
}

// podOpt changes a pod built by newPod.
type podOpt func(*corev1.Pod)

// newPod returns a running, scheduled, ready pod with one container.
func newPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// setCondition sets the status of p's condition t.
func setCondition(p *corev1.Pod, t corev1.PodConditionType, s corev1.ConditionStatus) {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			p.Status.Conditions[i].Status = s
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: s})
}

// notReady makes the pod fail its readiness probe.
func notReady(p *corev1.Pod) {
	setCondition(p, corev1.PodReady, corev1.ConditionFalse)
	p.Status.ContainerStatuses[0].Ready = false
}

// readyAnyway marks the pod ready whatever its containers do.
func readyAnyway(p *corev1.Pod) { setCondition(p, corev1.PodReady, corev1.ConditionTrue) }

// waiting leaves the container waiting for reason, after restarts, and the
// pod not ready.
func waiting(reason string, restarts int32) podOpt {
	return func(p *corev1.Pod) {
		notReady(p)
		cs := &p.Status.ContainerStatuses[0]
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
		cs.RestartCount = restarts
	}
}

// restarts sets the container's restart count.
func restarts(n int32) podOpt {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses[0].RestartCount = n }
}

// phase puts the pod in phase ph, with reason, not ready.
func phase(ph corev1.PodPhase, reason string) podOpt {
	return func(p *corev1.Pod) {
		notReady(p)
		p.Status.Phase, p.Status.Reason = ph, reason
	}
}

// unscheduled leaves the pod pending for want of a node.
func unscheduled(p *corev1.Pod) {
	p.Status.Phase = corev1.PodPending
	p.Status.ContainerStatuses = nil
	setCondition(p, corev1.PodScheduled, corev1.ConditionFalse)
	setCondition(p, corev1.PodReady, corev1.ConditionFalse)
}

// terminating marks the pod as being deleted.
func terminating(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}

// unhealthyPods returns pods named carts-a, carts-b, ... that are not
// ready.
func unhealthyPods(n int) []*corev1.Pod {
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = newPod("carts-"+string(rune('a'+i)), notReady)
	}
	return pods
}

// pdb is a budget in ns whose selector matches the labels app=app.
func pdb(name, app string) *policyv1.PodDisruptionBudget {
	minAvailable := intstr.FromInt32(2)
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		},
		Status: policyv1.PodDisruptionBudgetStatus{CurrentHealthy: 2, DesiredHealthy: 2, DisruptionsAllowed: 0},
	}
}

// evictions returns the names of the pods whose eviction c was asked for,
// in order.
func evictions(c *fake.Clientset) []string {
	var names []string
	for _, a := range c.Actions() {
		if a.GetVerb() != "create" || a.GetResource().Resource != "pods" || a.GetSubresource() != "eviction" {
			continue
		}
		names = append(names, a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction).Name)
	}
	return names
}

// writes returns the actions of c that would change something.
func writes(c *fake.Clientset) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range c.Actions() {
		if !slices.Contains([]string{"get", "list", "watch"}, a.GetVerb()) {
			out = append(out, a)
		}
	}
	return out
}

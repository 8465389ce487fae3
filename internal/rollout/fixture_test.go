package rollout

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const ns = "sockshop-production"

// rsName is the ReplicaSet the fixture puts between a deployment and its
// pods; pod names in the tests start with it, as real ones do.
const rsName = "carts-7d9f"

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: ns, Name: name, UID: types.UID("uid-" + name),
		Labels: map[string]string{"app": name}, Generation: 2,
	}
}

func selector(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
}

// deploy is a deployment "carts" of n replicas whose rollout converged;
// opts then change it.
func deploy(n int32, opts ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: meta("carts"),
		Spec:       appsv1.DeploymentSpec{Replicas: &n, Selector: selector("carts")},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 2, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{
				Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable",
				Message: `ReplicaSet "carts-7d9f" has successfully progressed.`,
			}},
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

// deadlineExceeded gives d the condition the controller sets when its
// progress deadline passes.
func deadlineExceeded(d *appsv1.Deployment) {
	d.Status.Conditions = []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "carts-7d9f" has timed out progressing.`,
	}}
}

// sts is a statefulset "carts-db" of n replicas whose rollout converged.
func sts(n int32, opts ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: meta("carts-db"),
		Spec: appsv1.StatefulSetSpec{
			Replicas: &n, Selector: selector("carts-db"),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: new(int32(0))},
			},
		},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: 2, Replicas: n, ReadyReplicas: n, AvailableReplicas: n,
			CurrentReplicas: n, UpdatedReplicas: n, CurrentRevision: "carts-db-2", UpdateRevision: "carts-db-2",
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ds is a daemonset "node-exporter" on n nodes whose rollout converged.
func ds(n int32, opts ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{
		ObjectMeta: meta("node-exporter"),
		Spec: appsv1.DaemonSetSpec{
			Selector:       selector("node-exporter"),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
		},
		Status: appsv1.DaemonSetStatus{
			ObservedGeneration: 2, DesiredNumberScheduled: n, CurrentNumberScheduled: n,
			UpdatedNumberScheduled: n, NumberReady: n, NumberAvailable: n,
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

// refOf names the workload obj.
func refOf(t *testing.T, obj runtime.Object) workload.Ref {
	t.Helper()
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return workload.Ref{Kind: workload.Deployment, Namespace: o.Namespace, Name: o.Name}
	case *appsv1.StatefulSet:
		return workload.Ref{Kind: workload.StatefulSet, Namespace: o.Namespace, Name: o.Name}
	case *appsv1.DaemonSet:
		return workload.Ref{Kind: workload.DaemonSet, Namespace: o.Namespace, Name: o.Name}
	}
	t.Fatalf("no workload: %T", obj)
	return workload.Ref{}
}

// cluster is a fake clientset holding the workload obj and pods owned the
// way the controllers own them, since workload.Pods follows owner
// references: deployment → ReplicaSet rsName → pod, or statefulset and
// daemonset → pod. Pods keep an owner they already have (a stray pod).
func cluster(t *testing.T, obj runtime.Object, pods ...*corev1.Pod) *fake.Clientset {
	t.Helper()
	owner, ok := obj.(metav1.Object)
	if !ok {
		t.Fatalf("not an object: %T", obj)
	}
	objs := []runtime.Object{obj}
	kind := refOf(t, obj).Kind
	if kind == workload.Deployment {
		rs := &appsv1.ReplicaSet{ObjectMeta: meta(rsName)}
		rs.Labels = map[string]string{"app": owner.GetName(), "pod-template-hash": "7d9f"}
		rs.OwnerReferences = []metav1.OwnerReference{controller(string(kind), owner)}
		objs = append(objs, rs)
		owner, kind = rs, "ReplicaSet"
	}
	for _, p := range pods {
		p = p.DeepCopy()
		p.Namespace = ns
		p.Labels = map[string]string{"app": refOf(t, obj).Name}
		if p.OwnerReferences == nil {
			p.OwnerReferences = []metav1.OwnerReference{controller(string(kind), owner)}
		}
		objs = append(objs, p)
	}
	return fake.NewClientset(objs...)
}

func controller(kind string, o metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: new(true)}
}

// podOpt changes a pod built by newPod.
type podOpt func(*corev1.Pod)

// newPod is a running, scheduled, ready pod with one container "carts".
func newPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "carts"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "carts", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// setCondition sets p's condition t.
func setCondition(p *corev1.Pod, c corev1.PodCondition) {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == c.Type {
			p.Status.Conditions[i] = c
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}

// containersNotReady makes the pod not ready because its containers are
// not, with the conditions the kubelet sets then.
func containersNotReady(p *corev1.Pod) {
	names := ""
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = false
		if names != "" {
			names += " "
		}
		names += p.Status.ContainerStatuses[i].Name
	}
	msg := fmt.Sprintf("containers with unready status: [%s]", names)
	setCondition(p, corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: msg})
	setCondition(p, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: msg})
}

// waiting leaves container i waiting for reason, and the pod not ready.
func waiting(i int, reason, message string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
		containersNotReady(p)
	}
}

// lastExit records how container i ended last time.
func lastExit(i int, reason string, code int32, message string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses[i].LastTerminationState = corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Message: message},
		}
	}
}

// terminated leaves container i terminated, and the pod not ready.
func terminated(i int, reason string, code int32, message string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses[i].State = corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Message: message},
		}
		containersNotReady(p)
	}
}

// sidecar adds a second, ready container.
func sidecar(name string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: name, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		})
	}
}

// initContainer adds an init container in state s; the main container then
// waits with PodInitializing unless s completed.
func initContainer(name string, s corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name})
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{Name: name, State: s})
		if t := s.Terminated; t == nil || t.ExitCode != 0 {
			p.Status.Phase = corev1.PodPending
			waiting(0, "PodInitializing", "")(p)
		}
	}
}

// unschedulable leaves the pod pending, with no node for it.
func unschedulable(message string) podOpt {
	return func(p *corev1.Pod) {
		p.Status = corev1.PodStatus{
			Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: message,
			}},
		}
	}
}

// gate adds a readiness gate of type t, with condition status s ("" for
// none reported), and makes the pod not ready as the kubelet would.
func gate(t corev1.PodConditionType, s corev1.ConditionStatus) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: t})
		if s != "" {
			setCondition(p, corev1.PodCondition{Type: t, Status: s})
		}
		setCondition(p, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady"})
	}
}

// pending is a pod nothing has happened to yet.
func pending(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} }

// terminating marks the pod deleted, waiting for its grace period.
func terminating(p *corev1.Pod) {
	p.DeletionTimestamp = &metav1.Time{}
	containersNotReady(p)
}

// evicted is a pod the kubelet evicted: finished, and replaced.
func evicted(p *corev1.Pod) {
	p.Status = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}
}

// stray gives the pod an owner that is not the workload's.
func stray(p *corev1.Pod) {
	p.OwnerReferences = []metav1.OwnerReference{controller("ReplicaSet", &metav1.ObjectMeta{Name: "other", UID: "uid-other"})}
}

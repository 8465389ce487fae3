package kube

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Interface is the part of the Kubernetes API the provider uses: six API
// groups and the verbs its actions, guards and ledger call. Its methods have
// the names and signatures of client-go's clientset (kubernetes.Interface),
// so code reads the same and a full or fake clientset fits it through package
// adapt. It exists because importing client-go's clientset registers all of
// its 56 API groups at start-up, which cost the provider a third of its
// binary and its idle memory (docs/performance.md#binary-size).
type Interface interface {
	AppsV1() AppsV1
	AutoscalingV2() AutoscalingV2
	BatchV1() BatchV1
	CoordinationV1() CoordinationV1
	CoreV1() CoreV1
	PolicyV1() PolicyV1
}

// Resource is one kind in one namespace (or a cluster-scoped kind): the
// verbs of client-go's generated clients, T the object and L its list.
type Resource[T, L any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Scalable is a workload with the scale subresource, the one kubectl scale
// uses.
type Scalable[T, L any] interface {
	Resource[T, L]
	GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error)
	UpdateScale(ctx context.Context, name string, scale *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error)
}

// The kinds, named as in client-go.
type (
	DeploymentInterface              = Scalable[*appsv1.Deployment, *appsv1.DeploymentList]
	StatefulSetInterface             = Scalable[*appsv1.StatefulSet, *appsv1.StatefulSetList]
	DaemonSetInterface               = Resource[*appsv1.DaemonSet, *appsv1.DaemonSetList]
	ReplicaSetInterface              = Scalable[*appsv1.ReplicaSet, *appsv1.ReplicaSetList]
	ControllerRevisionInterface      = Resource[*appsv1.ControllerRevision, *appsv1.ControllerRevisionList]
	HorizontalPodAutoscalerInterface = Resource[*autoscalingv2.HorizontalPodAutoscaler, *autoscalingv2.HorizontalPodAutoscalerList]
	JobInterface                     = Resource[*batchv1.Job, *batchv1.JobList]
	LeaseInterface                   = Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]
	EventInterface                   = Resource[*corev1.Event, *corev1.EventList]
	NamespaceInterface               = Resource[*corev1.Namespace, *corev1.NamespaceList]
	SecretInterface                  = Resource[*corev1.Secret, *corev1.SecretList]
	ServiceAccountInterface          = Resource[*corev1.ServiceAccount, *corev1.ServiceAccountList]
	PodDisruptionBudgetInterface     = Resource[*policyv1.PodDisruptionBudget, *policyv1.PodDisruptionBudgetList]
)

// PodInterface adds the log subresource, read by the job action.
type PodInterface interface {
	Resource[*corev1.Pod, *corev1.PodList]
	GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request
}

// EvictionInterface is the eviction subresource, as kubectl drain uses it.
type EvictionInterface interface {
	Evict(ctx context.Context, eviction *policyv1.Eviction) error
}

// AppsV1 is the apps/v1 group.
type AppsV1 interface {
	Deployments(namespace string) DeploymentInterface
	StatefulSets(namespace string) StatefulSetInterface
	DaemonSets(namespace string) DaemonSetInterface
	ReplicaSets(namespace string) ReplicaSetInterface
	ControllerRevisions(namespace string) ControllerRevisionInterface
}

// AutoscalingV2 is the autoscaling/v2 group.
type AutoscalingV2 interface {
	HorizontalPodAutoscalers(namespace string) HorizontalPodAutoscalerInterface
}

// BatchV1 is the batch/v1 group.
type BatchV1 interface {
	Jobs(namespace string) JobInterface
}

// CoordinationV1 is the coordination.k8s.io/v1 group.
type CoordinationV1 interface {
	Leases(namespace string) LeaseInterface
}

// CoreV1 is the core ("") v1 group.
type CoreV1 interface {
	Pods(namespace string) PodInterface
	Events(namespace string) EventInterface
	Namespaces() NamespaceInterface
	Secrets(namespace string) SecretInterface
	ServiceAccounts(namespace string) ServiceAccountInterface
}

// PolicyV1 is the policy/v1 group.
type PolicyV1 interface {
	PodDisruptionBudgets(namespace string) PodDisruptionBudgetInterface
	Evictions(namespace string) EvictionInterface
}

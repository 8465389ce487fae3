package kube

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Clientset talks to the API server for Interface. It is built on the same
// generic client (gentype) as client-go's generated clientset, with a scheme
// of only the groups it serves, and prefers protobuf as that one does.
type Clientset struct {
	codec                                                runtime.ParameterCodec
	apps, autoscaling, batch, coordination, core, policy rest.Interface
}

var _ Interface = (*Clientset)(nil)

// NewForConfig builds a Clientset as kubernetes.NewForConfig does: one HTTP
// client for all groups, and one client-side rate limiter for all of them,
// cfg.RateLimiter if set, else a token bucket of cfg.QPS and cfg.Burst.
func NewForConfig(cfg *rest.Config) (*Clientset, error) {
	c := *cfg
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if c.RateLimiter == nil && c.QPS > 0 {
		if c.Burst <= 0 {
			return nil, fmt.Errorf("kubernetes client: burst must be above 0 when QPS (%v) is set", c.QPS)
		}
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	httpClient, err := rest.HTTPClientFor(&c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}

	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, autoscalingv1.AddToScheme, autoscalingv2.AddToScheme, batchv1.AddToScheme,
		coordinationv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	// The options types (GetOptions, ListOptions…) as client-go's scheme
	// registers them, for query parameters.
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(s)

	cs := &Clientset{codec: runtime.NewParameterCodec(s)}
	for _, g := range []struct {
		into    *rest.Interface
		gv      schema.GroupVersion
		apiPath string
	}{
		{&cs.apps, appsv1.SchemeGroupVersion, "/apis"},
		{&cs.autoscaling, autoscalingv2.SchemeGroupVersion, "/apis"},
		{&cs.batch, batchv1.SchemeGroupVersion, "/apis"},
		{&cs.coordination, coordinationv1.SchemeGroupVersion, "/apis"},
		{&cs.core, corev1.SchemeGroupVersion, "/api"},
		{&cs.policy, policyv1.SchemeGroupVersion, "/apis"},
	} {
		gc := c
		gv := g.gv
		gc.GroupVersion = &gv
		gc.APIPath = g.apiPath
		gc.NegotiatedSerializer = codecs.WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(&gc, httpClient)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
		*g.into = rc
	}
	return cs, nil
}

// AppsV1 implements Interface.
func (c *Clientset) AppsV1() AppsV1 { return apps{c} }

// AutoscalingV2 implements Interface.
func (c *Clientset) AutoscalingV2() AutoscalingV2 { return autoscaling{c} }

// BatchV1 implements Interface.
func (c *Clientset) BatchV1() BatchV1 { return batch{c} }

// CoordinationV1 implements Interface.
func (c *Clientset) CoordinationV1() CoordinationV1 { return coordination{c} }

// CoreV1 implements Interface.
func (c *Clientset) CoreV1() CoreV1 { return core{c} }

// PolicyV1 implements Interface.
func (c *Clientset) PolicyV1() PolicyV1 { return policy{c} }

// resource builds the generic client of one kind, T its object and L its
// list; resource is the kind's plural, as in the URL.
func resource[T interface {
	runtime.Object
	metav1.Object
}, L runtime.Object](c *Clientset, rc rest.Interface, plural, namespace string, newObject func() T, newList func() L) *gentype.ClientWithList[T, L] {
	return gentype.NewClientWithList(plural, rc, c.codec, namespace, newObject, newList, gentype.PrefersProtobuf[T]())
}

// scalable adds the scale subresource to a workload's client.
type scalable[T interface {
	runtime.Object
	metav1.Object
}, L runtime.Object] struct {
	*gentype.ClientWithList[T, L]
	plural string
	codec  runtime.ParameterCodec
}

func (s scalable[T, L]) GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error) {
	out := &autoscalingv1.Scale{}
	err := s.GetClient().Get().UseProtobufAsDefault().
		Namespace(s.GetNamespace()).Resource(s.plural).Name(name).SubResource("scale").
		VersionedParams(&opts, s.codec).Do(ctx).Into(out)
	return out, err
}

func (s scalable[T, L]) UpdateScale(ctx context.Context, name string, scale *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error) {
	out := &autoscalingv1.Scale{}
	err := s.GetClient().Put().UseProtobufAsDefault().
		Namespace(s.GetNamespace()).Resource(s.plural).Name(name).SubResource("scale").
		VersionedParams(&opts, s.codec).Body(scale).Do(ctx).Into(out)
	return out, err
}

type apps struct{ c *Clientset }

func (g apps) Deployments(ns string) DeploymentInterface {
	return scalable[*appsv1.Deployment, *appsv1.DeploymentList]{
		resource(g.c, g.c.apps, "deployments", ns, func() *appsv1.Deployment { return &appsv1.Deployment{} }, func() *appsv1.DeploymentList { return &appsv1.DeploymentList{} }),
		"deployments", g.c.codec,
	}
}

func (g apps) StatefulSets(ns string) StatefulSetInterface {
	return scalable[*appsv1.StatefulSet, *appsv1.StatefulSetList]{
		resource(g.c, g.c.apps, "statefulsets", ns, func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} }, func() *appsv1.StatefulSetList { return &appsv1.StatefulSetList{} }),
		"statefulsets", g.c.codec,
	}
}

func (g apps) ReplicaSets(ns string) ReplicaSetInterface {
	return scalable[*appsv1.ReplicaSet, *appsv1.ReplicaSetList]{
		resource(g.c, g.c.apps, "replicasets", ns, func() *appsv1.ReplicaSet { return &appsv1.ReplicaSet{} }, func() *appsv1.ReplicaSetList { return &appsv1.ReplicaSetList{} }),
		"replicasets", g.c.codec,
	}
}

func (g apps) DaemonSets(ns string) DaemonSetInterface {
	return resource(g.c, g.c.apps, "daemonsets", ns, func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} }, func() *appsv1.DaemonSetList { return &appsv1.DaemonSetList{} })
}

func (g apps) ControllerRevisions(ns string) ControllerRevisionInterface {
	return resource(g.c, g.c.apps, "controllerrevisions", ns, func() *appsv1.ControllerRevision { return &appsv1.ControllerRevision{} }, func() *appsv1.ControllerRevisionList { return &appsv1.ControllerRevisionList{} })
}

type autoscaling struct{ c *Clientset }

func (g autoscaling) HorizontalPodAutoscalers(ns string) HorizontalPodAutoscalerInterface {
	return resource(g.c, g.c.autoscaling, "horizontalpodautoscalers", ns, func() *autoscalingv2.HorizontalPodAutoscaler { return &autoscalingv2.HorizontalPodAutoscaler{} }, func() *autoscalingv2.HorizontalPodAutoscalerList { return &autoscalingv2.HorizontalPodAutoscalerList{} })
}

type batch struct{ c *Clientset }

func (g batch) Jobs(ns string) JobInterface {
	return resource(g.c, g.c.batch, "jobs", ns, func() *batchv1.Job { return &batchv1.Job{} }, func() *batchv1.JobList { return &batchv1.JobList{} })
}

type coordination struct{ c *Clientset }

func (g coordination) Leases(ns string) LeaseInterface {
	return resource(g.c, g.c.coordination, "leases", ns, func() *coordinationv1.Lease { return &coordinationv1.Lease{} }, func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} })
}

type core struct{ c *Clientset }

func (g core) Pods(ns string) PodInterface {
	return pods{resource(g.c, g.c.core, "pods", ns, func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} }), g.c.codec}
}

func (g core) Events(ns string) EventInterface {
	return resource(g.c, g.c.core, "events", ns, func() *corev1.Event { return &corev1.Event{} }, func() *corev1.EventList { return &corev1.EventList{} })
}

func (g core) Namespaces() NamespaceInterface {
	return resource(g.c, g.c.core, "namespaces", "", func() *corev1.Namespace { return &corev1.Namespace{} }, func() *corev1.NamespaceList { return &corev1.NamespaceList{} })
}

func (g core) Secrets(ns string) SecretInterface {
	return resource(g.c, g.c.core, "secrets", ns, func() *corev1.Secret { return &corev1.Secret{} }, func() *corev1.SecretList { return &corev1.SecretList{} })
}

func (g core) ServiceAccounts(ns string) ServiceAccountInterface {
	return resource(g.c, g.c.core, "serviceaccounts", ns, func() *corev1.ServiceAccount { return &corev1.ServiceAccount{} }, func() *corev1.ServiceAccountList { return &corev1.ServiceAccountList{} })
}

type pods struct {
	*gentype.ClientWithList[*corev1.Pod, *corev1.PodList]
	codec runtime.ParameterCodec
}

func (p pods) GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request {
	return p.GetClient().Get().Namespace(p.GetNamespace()).Name(name).Resource("pods").SubResource("log").VersionedParams(opts, p.codec)
}

type policy struct{ c *Clientset }

func (g policy) PodDisruptionBudgets(ns string) PodDisruptionBudgetInterface {
	return resource(g.c, g.c.policy, "poddisruptionbudgets", ns, func() *policyv1.PodDisruptionBudget { return &policyv1.PodDisruptionBudget{} }, func() *policyv1.PodDisruptionBudgetList { return &policyv1.PodDisruptionBudgetList{} })
}

func (g policy) Evictions(string) EvictionInterface { return evictions{g.c.policy} }

type evictions struct{ rc rest.Interface }

// Evict posts to the pod's eviction subresource, which lives in the core
// group's path while its body is policy/v1, as client-go's does.
func (e evictions) Evict(ctx context.Context, ev *policyv1.Eviction) error {
	return e.rc.Post().AbsPath("/api/v1").Namespace(ev.Namespace).Resource("pods").Name(ev.Name).SubResource("eviction").Body(ev).Do(ctx).Error()
}

// Package adapt lets a client-go clientset, full or fake, stand where the
// provider takes a kube.Interface. Only the sandbox and tests import it, so
// that the release binary (built with -tags nosandbox) links none of
// client-go's 56 API groups.
package adapt

import (
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// Clientset returns cs as a kube.Interface; nil stays nil, so that code
// checking for a missing client still sees one.
func Clientset(cs kubernetes.Interface) kube.Interface {
	if cs == nil {
		return nil
	}
	return clientset{cs}
}

type clientset struct{ cs kubernetes.Interface }

func (c clientset) AppsV1() kube.AppsV1                 { return apps(c) }
func (c clientset) AutoscalingV2() kube.AutoscalingV2   { return autoscaling(c) }
func (c clientset) BatchV1() kube.BatchV1               { return batch(c) }
func (c clientset) CoordinationV1() kube.CoordinationV1 { return coordination(c) }
func (c clientset) CoreV1() kube.CoreV1                 { return core(c) }
func (c clientset) PolicyV1() kube.PolicyV1             { return policy(c) }

type apps struct{ cs kubernetes.Interface }

func (g apps) Deployments(ns string) kube.DeploymentInterface {
	return g.cs.AppsV1().Deployments(ns)
}
func (g apps) StatefulSets(ns string) kube.StatefulSetInterface {
	return g.cs.AppsV1().StatefulSets(ns)
}
func (g apps) DaemonSets(ns string) kube.DaemonSetInterface { return g.cs.AppsV1().DaemonSets(ns) }
func (g apps) ReplicaSets(ns string) kube.ReplicaSetInterface {
	return g.cs.AppsV1().ReplicaSets(ns)
}
func (g apps) ControllerRevisions(ns string) kube.ControllerRevisionInterface {
	return g.cs.AppsV1().ControllerRevisions(ns)
}

type autoscaling struct{ cs kubernetes.Interface }

func (g autoscaling) HorizontalPodAutoscalers(ns string) kube.HorizontalPodAutoscalerInterface {
	return g.cs.AutoscalingV2().HorizontalPodAutoscalers(ns)
}

type batch struct{ cs kubernetes.Interface }

func (g batch) Jobs(ns string) kube.JobInterface { return g.cs.BatchV1().Jobs(ns) }

type coordination struct{ cs kubernetes.Interface }

func (g coordination) Leases(ns string) kube.LeaseInterface {
	return g.cs.CoordinationV1().Leases(ns)
}

type core struct{ cs kubernetes.Interface }

func (g core) Pods(ns string) kube.PodInterface       { return g.cs.CoreV1().Pods(ns) }
func (g core) Events(ns string) kube.EventInterface   { return g.cs.CoreV1().Events(ns) }
func (g core) Namespaces() kube.NamespaceInterface    { return g.cs.CoreV1().Namespaces() }
func (g core) Secrets(ns string) kube.SecretInterface { return g.cs.CoreV1().Secrets(ns) }
func (g core) ServiceAccounts(ns string) kube.ServiceAccountInterface {
	return g.cs.CoreV1().ServiceAccounts(ns)
}

type policy struct{ cs kubernetes.Interface }

func (g policy) PodDisruptionBudgets(ns string) kube.PodDisruptionBudgetInterface {
	return g.cs.PolicyV1().PodDisruptionBudgets(ns)
}
func (g policy) Evictions(ns string) kube.EvictionInterface { return g.cs.PolicyV1().Evictions(ns) }

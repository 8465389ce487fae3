package workload

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// Pods lists the pods that belong to the workload: those its label selector
// matches and that a controller of the workload owns, so that a stray pod
// carrying the same labels is never counted or touched.
//
// Ownership is followed one level for StatefulSets and DaemonSets (they own
// their pods) and two for Deployments and Rollouts (→ ReplicaSet → pod).
func Pods(ctx context.Context, c kube.Interface, ref Ref) ([]corev1.Pod, error) {
	if ref.Kind == Rollout {
		return rolloutPods(ctx, c, ref)
	}
	var (
		selector *metav1.LabelSelector
		owners   = map[string]bool{}
	)
	switch ref.Kind {
	case Deployment:
		d, err := c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", ref, err)
		}
		selector = d.Spec.Selector
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return nil, fmt.Errorf("selector of %s: %w", ref, err)
		}
		rss, err := c.AppsV1().ReplicaSets(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, fmt.Errorf("list the replicasets of %s: %w", ref, err)
		}
		for _, rs := range rss.Items {
			if owned(rs.OwnerReferences, string(d.UID)) {
				owners[string(rs.UID)] = true
			}
		}
	case StatefulSet:
		s, err := c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", ref, err)
		}
		selector, owners[string(s.UID)] = s.Spec.Selector, true
	case DaemonSet:
		ds, err := c.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", ref, err)
		}
		selector, owners[string(ds.UID)] = ds.Spec.Selector, true
	default:
		return nil, fmt.Errorf("unsupported kind %q", ref.Kind)
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s: %w", ref, err)
	}
	list, err := c.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of %s: %w", ref, err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		for _, o := range p.OwnerReferences {
			if o.Controller != nil && *o.Controller && owners[string(o.UID)] {
				pods = append(pods, p)
				break
			}
		}
	}
	return pods, nil
}

// owned reports whether refs name uid as the controlling owner.
func owned(refs []metav1.OwnerReference, uid string) bool {
	for _, o := range refs {
		if o.Controller != nil && *o.Controller && string(o.UID) == uid {
			return true
		}
	}
	return false
}

// rolloutPods lists the pods of an Argo Rollout with the typed client
// alone: the ReplicaSets it controls name it as their owner, and the pods
// those ReplicaSets control are its own. A Rollout's ReplicaSets differ in
// their selectors (the pod-template-hash), so the pods are listed once for
// the namespace and kept by owner.
func rolloutPods(ctx context.Context, c kube.Interface, ref Ref) ([]corev1.Pod, error) {
	rss, err := c.AppsV1().ReplicaSets(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the replicasets of %s: %w", ref, err)
	}
	owners := map[string]bool{}
	for _, rs := range rss.Items {
		for _, o := range rs.OwnerReferences {
			if o.Controller != nil && *o.Controller && o.Kind == string(Rollout) && o.Name == ref.Name &&
				strings.HasPrefix(o.APIVersion, RolloutGroup+"/") {
				owners[string(rs.UID)] = true
			}
		}
	}
	if len(owners) == 0 {
		return nil, nil
	}
	list, err := c.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the pods of %s: %w", ref, err)
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		for _, o := range p.OwnerReferences {
			if o.Controller != nil && *o.Controller && owners[string(o.UID)] {
				pods = append(pods, p)
				break
			}
		}
	}
	return pods, nil
}

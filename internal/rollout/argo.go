package rollout

import (
	"context"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Argo Rollouts' phases (status.phase), which its controller works out.
const (
	phaseHealthy  = "Healthy"
	phaseDegraded = "Degraded"
)

// argoRollout judges an Argo Rollout as `kubectl argo rollouts status`
// does: done when Healthy, failed when Degraded, otherwise waiting
// (Progressing, or Paused at a step until someone promotes it).
//
// An aborted Rollout is judged by what the abort is for instead: its
// controller reports it Degraded by design, and the abort has worked once
// the controller has seen it (status.abortedAt) and the stable ReplicaSet
// has as many ready replicas as the Rollout wants.
func argoRollout(ctx context.Context, c kube.Interface, dyn dynamic.Interface, ref workload.Ref, want *int32) (Status, error) {
	_, ro, err := workload.GetRollout(ctx, dyn, ref)
	if err != nil {
		return Status{}, fmt.Errorf("get %s: %w", ref, err)
	}
	return rolloutStatus(ctx, c, ro, want)
}

// rolloutStatus is argoRollout for a Rollout already read; only an aborted
// one costs a read, of its stable ReplicaSet.
func rolloutStatus(ctx context.Context, c kube.Interface, ro *workload.ArgoRollout, want *int32) (Status, error) {
	n := desired(ro.Spec.Replicas)
	st := ro.Status
	s := Status{Ready: st.ReadyReplicas, Desired: n}
	waiting := func(format string, args ...any) (Status, error) {
		s.Message = fmt.Sprintf(format, args...)
		return s, nil
	}
	switch {
	case want != nil && n != *want:
		s.Desired = *want
		return waiting("%s", autoscalerMessage(*want, n))
	case !generationObserved(ro):
		return waiting("waiting for rollout %q spec update to be observed", ro.Name)
	case st.ControllerPause && len(st.PauseConditions) == 0:
		return waiting("waiting for rollout %q to unpause", ro.Name)
	case st.Abort:
		return aborted(ctx, c, ro, s)
	}
	switch st.Phase {
	case phaseHealthy:
		s.Done = true
		s.Message = fmt.Sprintf("rollout %q is Healthy", ro.Name)
	case phaseDegraded:
		s.Failed = true
		s.Message = fmt.Sprintf("rollout %q is Degraded", ro.Name)
		if st.Message != "" {
			s.Message += ": " + trim(st.Message)
		}
	case "":
		s.Message = fmt.Sprintf("waiting for rollout %q: its controller has not reported a phase", ro.Name)
	default:
		s.Message = fmt.Sprintf("waiting for rollout %q: %s", ro.Name, st.Phase)
		if st.Message != "" {
			s.Message += " - " + trim(st.Message)
		}
	}
	return s, nil
}

// aborted judges a Rollout whose update was aborted: by its stable
// ReplicaSet, which the controller scales back up and puts the traffic on.
func aborted(ctx context.Context, c kube.Interface, ro *workload.ArgoRollout, s Status) (Status, error) {
	st := ro.Status
	switch {
	case st.AbortedAt == nil:
		s.Message = fmt.Sprintf("waiting for the controller of rollout %q to abort the update", ro.Name)
		return s, nil
	case st.StableRS == "":
		s.Failed = true
		s.Message = fmt.Sprintf("rollout %q is aborted but has no stable ReplicaSet to go back to", ro.Name)
		return s, nil
	}
	name := ro.ReplicaSetName(st.StableRS)
	rs, err := c.AppsV1().ReplicaSets(ro.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.Failed = true
		s.Message = fmt.Sprintf("rollout %q is aborted, but its stable ReplicaSet %s is gone", ro.Name, name)
		return s, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("get the stable replicaset %s/%s: %w", ro.Namespace, name, err)
	}
	s.Ready = rs.Status.ReadyReplicas
	if s.Ready < s.Desired {
		s.Message = fmt.Sprintf("waiting for the stable ReplicaSet %s of aborted rollout %q: %d of %d replicas ready", name, ro.Name, s.Ready, s.Desired)
		return s, nil
	}
	s.Done = true
	s.Message = fmt.Sprintf("rollout %q is aborted: its stable ReplicaSet %s has %d of %d replicas ready", ro.Name, name, s.Ready, s.Desired)
	return s, nil
}

// generationObserved is Argo's own test: status.observedGeneration is a
// number since v0.10 (a hash before, which counts as observed).
func generationObserved(ro *workload.ArgoRollout) bool {
	observed, err := strconv.ParseInt(ro.Status.ObservedGeneration, 10, 64)
	if err != nil {
		return true
	}
	return observed >= ro.Generation
}

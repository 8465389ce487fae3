// Package rollout checks that a change to a workload took effect: it
// waits until the rollout converges, judged as `kubectl rollout status`
// judges it, and when it does not, says why in the words of the pods.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Status is one judgement of a rollout.
type Status struct {
	// Done: converged.
	Done bool
	// Failed: waiting will not help, e.g. the deployment's progress
	// deadline was exceeded.
	Failed bool
	// Message says what is awaited, in kubectl's words: `waiting for
	// deployment "carts" rollout to finish: 1 of 3 updated replicas are
	// available`.
	Message string
	// Ready and Desired count replicas, for "2/3 pods ready".
	Ready, Desired int32
}

// errUnsupportedKind is returned for a kind that has no rollout; asking
// again will not change the answer.
var errUnsupportedKind = errors.New("no rollout status for this kind")

// Check reads the workload once and judges its rollout. want, when set,
// is the spec.replicas the workload must reach first (an autoscaler is
// moving it); a DaemonSet has no spec.replicas and ignores it. Check has
// no dynamic client, so it cannot judge an Argo Rollout; CheckWith can.
func Check(ctx context.Context, c kube.Interface, ref workload.Ref, want *int32) (Status, error) {
	return CheckWith(ctx, c, nil, ref, want)
}

// CheckWith is Check that also judges Argo Rollouts, read through dyn.
func CheckWith(ctx context.Context, c kube.Interface, dyn dynamic.Interface, ref workload.Ref, want *int32) (Status, error) {
	switch ref.Kind {
	case workload.Rollout:
		return argoRollout(ctx, c, dyn, ref, want)
	case workload.Deployment:
		d, err := c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return Status{}, fmt.Errorf("get %s: %w", ref, err)
		}
		return deployment(d, want), nil
	case workload.StatefulSet:
		s, err := c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return Status{}, fmt.Errorf("get %s: %w", ref, err)
		}
		return statefulSet(s, want), nil
	case workload.DaemonSet:
		ds, err := c.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return Status{}, fmt.Errorf("get %s: %w", ref, err)
		}
		return daemonSet(ds), nil
	}
	return Status{}, fmt.Errorf("%w: %q", errUnsupportedKind, ref.Kind)
}

// desired reads spec.replicas, which the API server defaults to 1.
func desired(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// autoscalerMessage is what is awaited while spec.replicas is not yet what
// an autoscaler was asked to make it.
func autoscalerMessage(want, now int32) string {
	return fmt.Sprintf("waiting for the autoscaler to set spec.replicas to %d (now %d)", want, now)
}

// onDeleteNote ends the message of a workload whose pods are replaced only
// when deleted: kubectl cannot judge such a rollout, so neither can we,
// and a reader should know that "done" means only "enough pods ready".
const onDeleteNote = "update strategy OnDelete: pods change only when deleted"

// deployment judges as kubectl does, and also waits until as many replicas
// are ready as desired, since ready, not available, is what serves traffic
// the moment a rollout ends.
func deployment(d *appsv1.Deployment, want *int32) Status {
	n := desired(d.Spec.Replicas)
	st := d.Status
	s := Status{Ready: st.ReadyReplicas, Desired: n}
	waiting := func(format string, args ...any) Status {
		s.Message = fmt.Sprintf("waiting for deployment %q rollout to finish: ", d.Name) + fmt.Sprintf(format, args...)
		if c := deploymentCondition(d, appsv1.DeploymentReplicaFailure); c != nil && c.Status == corev1.ConditionTrue {
			// Pods that cannot even be created (quota, admission) leave
			// no pod to explain it; the ReplicaSet's condition does.
			s.Message += "; " + withMessage("ReplicaFailure: "+c.Reason, c.Message)
		}
		if d.Spec.Paused {
			s.Message += " (the deployment is paused: nothing rolls out until it is resumed)"
		}
		return s
	}
	switch {
	case want != nil && n != *want:
		s.Desired = *want
		s.Message = autoscalerMessage(*want, n)
		return s
	case d.Generation > st.ObservedGeneration:
		s.Message = fmt.Sprintf("waiting for deployment %q spec update to be observed", d.Name)
		return s
	}
	if c := deploymentCondition(d, appsv1.DeploymentProgressing); c != nil && c.Reason == "ProgressDeadlineExceeded" {
		s.Failed = true
		msg := strings.TrimSuffix(strings.TrimSpace(c.Message), ".")
		if msg == "" {
			msg = fmt.Sprintf("deployment %q exceeded its progress deadline", d.Name)
		}
		s.Message = "progress deadline exceeded: " + trim(msg)
		return s
	}
	switch {
	case st.UpdatedReplicas < n:
		return waiting("%d out of %d new replicas have been updated", st.UpdatedReplicas, n)
	case st.Replicas > st.UpdatedReplicas:
		return waiting("%d old replicas are pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < st.UpdatedReplicas:
		return waiting("%d of %d updated replicas are available", st.AvailableReplicas, st.UpdatedReplicas)
	case st.Replicas > n:
		// kubectl calls a scale-down done at once; we wait until the
		// ReplicaSet has let the extra pods go.
		return waiting("%d extra replicas are pending termination", st.Replicas-n)
	case st.ReadyReplicas != n:
		return waiting("%d of %d replicas are ready", st.ReadyReplicas, n)
	}
	s.Done = true
	s.Message = fmt.Sprintf("deployment %q successfully rolled out", d.Name)
	return s
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func statefulSet(ss *appsv1.StatefulSet, want *int32) Status {
	n := desired(ss.Spec.Replicas)
	st := ss.Status
	s := Status{Ready: st.ReadyReplicas, Desired: n}
	switch {
	case want != nil && n != *want:
		s.Desired = *want
		s.Message = autoscalerMessage(*want, n)
	case st.ObservedGeneration == 0 || ss.Generation > st.ObservedGeneration:
		s.Message = fmt.Sprintf("waiting for statefulset %q spec update to be observed", ss.Name)
	case st.ReadyReplicas < n:
		s.Message = fmt.Sprintf("waiting for %d pods of statefulset %q to be ready", n-st.ReadyReplicas, ss.Name)
	case st.Replicas > n:
		// A StatefulSet removes pods one at a time, highest ordinal first;
		// kubectl does not wait for it, we do.
		s.Message = fmt.Sprintf("waiting for statefulset %q to scale down: %d extra pods are pending termination", ss.Name, st.Replicas-n)
	case ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType:
		s.Done = true
		s.Message = fmt.Sprintf("statefulset %q has %d of %d pods ready (%s)", ss.Name, st.ReadyReplicas, n, onDeleteNote)
	default:
		var partition int32
		if ru := ss.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			partition = *ru.Partition
		}
		switch {
		case partition > 0 && st.UpdatedReplicas < n-partition:
			s.Message = fmt.Sprintf("waiting for partitioned roll out of statefulset %q to finish: %d out of %d new pods have been updated", ss.Name, st.UpdatedReplicas, n-partition)
		case partition > 0:
			s.Done = true
			s.Message = fmt.Sprintf("partitioned roll out of statefulset %q complete: %d new pods have been updated", ss.Name, st.UpdatedReplicas)
		case st.UpdatedReplicas < n || st.UpdateRevision != st.CurrentRevision:
			s.Message = fmt.Sprintf("waiting for statefulset %q rolling update to complete: %d out of %d pods at revision %s", ss.Name, st.UpdatedReplicas, n, st.UpdateRevision)
		default:
			s.Done = true
			s.Message = fmt.Sprintf("statefulset %q rolling update complete: %d pods at revision %s", ss.Name, st.UpdatedReplicas, st.UpdateRevision)
		}
	}
	return s
}

func daemonSet(ds *appsv1.DaemonSet) Status {
	st := ds.Status
	s := Status{Ready: st.NumberReady, Desired: st.DesiredNumberScheduled}
	onDelete := ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType
	switch {
	case ds.Generation > st.ObservedGeneration:
		s.Message = fmt.Sprintf("waiting for daemon set %q spec update to be observed", ds.Name)
	case onDelete && st.NumberAvailable < st.DesiredNumberScheduled:
		// Old pods stay until deleted, so "updated" would never come.
		s.Message = fmt.Sprintf("waiting for daemon set %q: %d of %d pods are available (%s)", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled, onDeleteNote)
	case onDelete:
		s.Done = true
		s.Message = fmt.Sprintf("daemon set %q has %d of %d pods available (%s)", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled, onDeleteNote)
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		s.Message = fmt.Sprintf("waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated", ds.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled:
		s.Message = fmt.Sprintf("waiting for daemon set %q rollout to finish: %d of %d updated pods are available", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled)
	default:
		s.Done = true
		s.Message = fmt.Sprintf("daemon set %q successfully rolled out", ds.Name)
	}
	return s
}

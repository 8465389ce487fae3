package rollout

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const (
	// maxPodsNamed bounds how many pods a reason names.
	maxPodsNamed = 3
	// maxMessage keeps one pod's message from crowding out the others.
	maxMessage = 200
	// maxSummary keeps a Summary short enough for a Keptn event and a
	// chat notification.
	maxSummary = 1024
	// podsTimeout bounds the read of the pods that explain a rollout, which
	// happens after Wait's own timeout has passed.
	podsTimeout = 5 * time.Second
)

// How telling a pod's reason is; the most telling pods are named first.
const (
	rankContainer     = iota // a container cannot start, or keeps dying
	rankUnschedulable        // no node will take the pod
	rankGate                 // the containers are ready, a readiness gate is not
	rankStarting             // containers are being created
	rankNotReady             // the Ready condition says why, or nothing does
	rankPending              // nothing has happened to the pod yet
)

// trouble is why one pod is not ready.
type trouble struct {
	pod    string
	reason string
	rank   int
}

// why explains an unconverged rollout by its pods: "2/3 pods ready; pod
// carts-7d9f-x2k4q: ImagePullBackOff (...)".
func why(ctx context.Context, c kube.Interface, ref workload.Ref, s Status) string {
	parts := []string{fmt.Sprintf("%d/%d pods ready", s.Ready, s.Desired)}
	ctx, cancel := context.WithTimeout(ctx, podsTimeout)
	defer cancel()
	pods, err := workload.Pods(ctx, c, ref)
	if err != nil {
		return parts[0] + "; the pods could not be read: " + err.Error()
	}
	var (
		troubles    []trouble
		terminating int
	)
	for i := range pods {
		p := &pods[i]
		switch {
		case p.DeletionTimestamp != nil:
			terminating++
			continue
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			// Finished pods (evicted by the kubelet, say) are no longer
			// the controller's: it has replaced them already.
			continue
		}
		if rank, reason := podReason(p); reason != "" {
			troubles = append(troubles, trouble{pod: p.Name, reason: reason, rank: rank})
		}
	}
	slices.SortFunc(troubles, func(a, b trouble) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), strings.Compare(a.pod, b.pod))
	})
	for i, t := range troubles {
		if i == maxPodsNamed {
			parts = append(parts, fmt.Sprintf("and %d more pods not ready", len(troubles)-maxPodsNamed))
			break
		}
		parts = append(parts, "pod "+t.pod+": "+t.reason)
	}
	if terminating > 0 {
		parts = append(parts, fmt.Sprintf("%d terminating", terminating))
	}
	if len(pods) == 0 {
		parts = append(parts, "no pods")
	}
	return strings.Join(parts, "; ")
}

// podReason is the most telling reason a pod is not ready, and how telling
// it is; "" if the pod is ready.
func podReason(p *corev1.Pod) (rank int, reason string) {
	if c := podCondition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return 0, ""
	}

	type container struct {
		corev1.ContainerStatus
		init bool
	}
	var cs []container
	for _, s := range p.Status.InitContainerStatuses {
		cs = append(cs, container{s, true})
	}
	for _, s := range p.Status.ContainerStatuses {
		cs = append(cs, container{s, false})
	}
	// Name the container only when the pod has more than one.
	named := len(p.Spec.InitContainers)+len(p.Spec.Containers) > 1 || len(cs) > 1
	label := func(c container) string {
		switch {
		case c.init:
			return fmt.Sprintf("init container %q: ", c.Name)
		case named:
			return fmt.Sprintf("container %q: ", c.Name)
		}
		return ""
	}

	var starting string
	for _, c := range cs {
		w := c.State.Waiting
		switch {
		case w == nil || w.Reason == "":
			continue
		case w.Reason == "ContainerCreating" || w.Reason == "PodInitializing":
			if starting == "" {
				starting = label(c) + withMessage(w.Reason, w.Message)
			}
			continue
		}
		msg := w.Message
		if t := c.LastTerminationState.Terminated; t != nil && w.Reason == "CrashLoopBackOff" {
			// "back-off 5m0s restarting failed container" says less
			// than how the container died.
			msg = "last exit: " + exit(t)
			if t.Reason != "" {
				msg = "last exit: " + t.Reason + ", " + exit(t)
			}
		}
		return rankContainer, label(c) + withMessage(w.Reason, msg)
	}
	for _, c := range cs {
		t := c.State.Terminated
		if t == nil || (c.init && t.ExitCode == 0) {
			continue // an init container that completed did its job
		}
		reason := t.Reason
		if reason == "" {
			reason = "terminated"
		}
		return rankContainer, label(c) + withMessage(reason, exit(t))
	}

	if c := podCondition(p, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
		reason := c.Reason
		if reason == "" {
			reason = "not scheduled"
		}
		if msg := trim(c.Message); msg != "" {
			reason += ": " + msg
		}
		return rankUnschedulable, reason
	}
	// A gate holds the pod back only once its containers are ready;
	// before that, the containers are the better reason.
	if c := podCondition(p, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue {
		for _, g := range p.Spec.ReadinessGates {
			gc := podCondition(p, g.ConditionType)
			switch {
			case gc == nil:
				return rankGate, fmt.Sprintf("readiness gate %s has not been reported", g.ConditionType)
			case gc.Status != corev1.ConditionTrue:
				return rankGate, withMessage(fmt.Sprintf("readiness gate %s is %s", g.ConditionType, gc.Status), gc.Message)
			}
		}
	}
	if starting != "" {
		return rankStarting, starting
	}
	if c := podCondition(p, corev1.PodReady); c != nil && c.Reason != "" {
		return rankNotReady, withMessage("not ready: "+c.Reason, c.Message)
	}
	if p.Status.Phase == corev1.PodPending || p.Status.Phase == "" {
		return rankPending, "Pending"
	}
	return rankNotReady, "not ready"
}

// exit says how a container ended, "exit code 1: panic: ...", with its
// termination message: the app's last words, or its log's last lines.
func exit(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("exit code %d", t.ExitCode)
	if msg := strings.TrimSpace(t.Message); msg != "" {
		s += ": " + msg
	}
	return s
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// withMessage is "Reason (message)", the message trimmed.
func withMessage(reason, message string) string {
	if message = trim(message); message == "" {
		return reason
	}
	return reason + " (" + message + ")"
}

// trim puts a message on one line and cuts it to maxMessage bytes.
func trim(message string) string {
	return cut(strings.Join(strings.Fields(message), " "), maxMessage)
}

// capSummary keeps a Summary within maxSummary bytes.
func capSummary(s string) string {
	return cut(s, maxSummary)
}

// cut shortens s to at most n bytes, ending in "…" when it cut, and never
// inside a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	i := n - len(ellipsis)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + ellipsis
}

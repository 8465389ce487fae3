// Package audit records each change an action makes as a Kubernetes Event
// on the changed object, so that `kubectl describe` and `kubectl events`
// show who changed a workload, when and why, next to the controllers' own
// events.
package audit

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Component is the event source kubectl describe shows in its From column.
const Component = "keptn-action-provider"

// maxMessage is what the API server keeps of an event's message.
const maxMessage = 1024

// Recorder writes the events. The zero value is not usable; use New.
type Recorder struct {
	client   kube.Interface
	instance string
	now      func() time.Time
}

// New returns a Recorder; instance names this replica (its pod name).
func New(c kube.Interface, instance string) *Recorder {
	return &Recorder{client: c, instance: instance, now: time.Now}
}

// Entry is one audit record.
type Entry struct {
	Reason  string // "Restarted", "Scaled", "RolledBack", "PodsEvicted"
	Action  string // the action name: "restart"
	Change  string // what happened, before → after
	Context string // shkeptncontext
	Trigger string // triggered event id
	Problem string // the problem title, when Keptn sent one
	Warning bool   // the change did not fully succeed
}

// Message is the event's text: the change first, then why.
func (e Entry) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keptn remediation %s: %s (shkeptncontext %s, triggeredid %s", e.Action, e.Change, e.Context, e.Trigger)
	if e.Problem != "" {
		fmt.Fprintf(&b, ", problem %q", e.Problem)
	}
	b.WriteString(")")
	return truncate(b.String(), maxMessage)
}

// Record writes e as an event on the object ref names. obj supplies its UID
// and resourceVersion, so the event is tied to this object and not to a
// later one of the same name.
func (r *Recorder) Record(ctx context.Context, ref workload.Ref, obj metav1.Object, e Entry) error {
	now := metav1.NewTime(r.now())
	typ := corev1.EventTypeNormal
	if e.Warning {
		typ = corev1.EventTypeWarning
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// The convention of client-go's recorder: object name and a
			// unique suffix.
			Name:      fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()),
			Namespace: ref.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion:      apiVersion(ref.Kind),
			Kind:            string(ref.Kind),
			Namespace:       ref.Namespace,
			Name:            ref.Name,
			UID:             obj.GetUID(),
			ResourceVersion: obj.GetResourceVersion(),
		},
		Reason:              e.Reason,
		Message:             e.Message(),
		Source:              corev1.EventSource{Component: Component},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Type:                typ,
		Action:              e.Action,
		ReportingController: Component,
		ReportingInstance:   r.instance,
	}
	if _, err := r.client.CoreV1().Events(ref.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("record the %s event on %s: %w", e.Reason, ref, err)
	}
	return nil
}

// apiVersion is the group of a kind the actions record events on: the
// workloads', and the job action's Jobs.
func apiVersion(k workload.Kind) string {
	if k == "Job" {
		return "batch/v1"
	}
	return k.APIVersion() // apps/v1, or argoproj.io/v1alpha1 for a Rollout
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	s = s[:n-len(mark)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}

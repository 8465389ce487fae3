// Package history reads, from the cluster, what the provider did: the
// audit Events it recorded on the objects it changed (and the gates'
// approval and budget Events), and the ledger's records of the triggered
// events it claimed. action-provider history prints them; the demo calls
// Read on its sandbox.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// The ledger's labels and annotations on a claimed event's Lease
// (internal/ledger keeps them unexported; these are its on-cluster format).
const (
	recordLabel    = action.AnnotationPrefix + "record"
	recordEvent    = "event"
	stateLabel     = action.AnnotationPrefix + "state"
	triggeredIDKey = action.AnnotationPrefix + "triggeredid"
	recordKey      = action.AnnotationPrefix + "event"
	finishedKey    = action.AnnotationPrefix + "finished"
)

// Sources of an Entry.
const (
	SourceEvent  = "event"  // a Kubernetes Event the provider recorded
	SourceLedger = "ledger" // a claimed event's Lease
)

// Ledger states, as Entry.What says them: the ledger's, and "claimed" for
// a Lease that has none yet.
const (
	StateClaimed    = "claimed"
	StateStarted    = "started"
	StateFinishing  = "finishing"
	StateFinished   = "finished"
	StateRecovering = "recovering"
)

// DefaultSince is how far back Read looks when Options.Since is zero.
const DefaultSince = 24 * time.Hour

// pageSize bounds one List.
const pageSize = 500

// Options say what Read reads.
type Options struct {
	// Since: only what happened within this long before Now (0: DefaultSince).
	Since time.Duration
	// Namespaces of the targets; empty: every namespace the client may
	// list. With namespaces, a ledger record is kept only when an Event
	// in them names its triggered id.
	Namespaces []string
	// LedgerNamespace holds the ledger's Leases (POD_NAMESPACE); empty:
	// no ledger records are read.
	LedgerNamespace string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Entry is one thing the provider did. The JSON names are stable.
type Entry struct {
	Time        time.Time `json:"time"`
	Source      string    `json:"source"`              // "event" or "ledger"
	Namespace   string    `json:"namespace,omitempty"` // the target's; the ledger's for an unjoined record
	Target      string    `json:"target,omitempty"`    // "Deployment/carts"
	Action      string    `json:"action,omitempty"`
	What        string    `json:"what"`             // the Event's reason, or the record's state
	Result      string    `json:"result,omitempty"` // Normal/Warning for an Event; pass/warning/fail when the ledger kept it
	Message     string    `json:"message,omitempty"`
	TriggeredID string    `json:"triggeredid,omitempty"`
	Context     string    `json:"shkeptncontext,omitempty"`
	Replica     string    `json:"replica,omitempty"`
}

// InFlight says whether a ledger record's action has not been reported.
func (e Entry) InFlight() bool {
	return e.Source == SourceLedger && e.What != StateFinished
}

// Read lists what the provider did within opts.Since, oldest first.
func Read(ctx context.Context, client kube.Interface, opts Options) ([]Entry, error) {
	if client == nil {
		return nil, errors.New("history: nil Kubernetes client")
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	since := opts.Since
	if since <= 0 {
		since = DefaultSince
	}
	from := now().Add(-since)

	events, err := readEvents(ctx, client, opts.Namespaces, from)
	if err != nil {
		return nil, err
	}
	var records []Entry
	if opts.LedgerNamespace != "" {
		if records, err = readLedger(ctx, client, opts.LedgerNamespace, from); err != nil {
			return nil, err
		}
	}
	// Join: a record learns its target and action from the Events of its
	// triggered id.
	byID := map[string]Entry{}
	for _, e := range events {
		if _, ok := byID[e.TriggeredID]; !ok && e.TriggeredID != "" {
			byID[e.TriggeredID] = e
		}
	}
	out := events
	for _, r := range records {
		ev, joined := byID[r.TriggeredID]
		if len(opts.Namespaces) > 0 && !joined {
			continue
		}
		if joined {
			r.Namespace, r.Target = ev.Namespace, ev.Target
			r.Action = first(r.Action, ev.Action)
			r.Context = first(r.Context, ev.Context)
		}
		out = append(out, r)
	}
	// Events keep whole seconds, Leases microseconds: compared by the
	// second first, a claim comes before what it led to within its second.
	slices.SortStableFunc(out, func(a, b Entry) int {
		if c := a.Time.Truncate(time.Second).Compare(b.Time.Truncate(time.Second)); c != 0 {
			return c
		}
		if c := strings.Compare(b.Source, a.Source); c != 0 {
			return c
		}
		return a.Time.Compare(b.Time)
	})
	return out, nil
}

// readEvents lists the provider's Events since from.
func readEvents(ctx context.Context, client kube.Interface, namespaces []string, from time.Time) ([]Entry, error) {
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	var out []Entry
	for _, ns := range namespaces {
		opts := metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("source", audit.Component).String(),
			Limit:         pageSize,
		}
		for {
			list, err := client.CoreV1().Events(ns).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list the provider's events in %s: %w", nsName(ns), err)
			}
			for i := range list.Items {
				if e, ok := fromEvent(&list.Items[i]); ok && !e.Time.Before(from) {
					out = append(out, e)
				}
			}
			if opts.Continue = list.Continue; opts.Continue == "" {
				break
			}
		}
	}
	return out, nil
}

// auditMessage is audit.Entry.Message's form.
var auditMessage = regexp.MustCompile(`^keptn remediation (\S+): (.*) \(shkeptncontext ([^,]*), triggeredid ([^,)]*)`)

func fromEvent(ev *corev1.Event) (Entry, bool) {
	if ev.Source.Component != audit.Component && ev.ReportingController != audit.Component {
		return Entry{}, false
	}
	e := Entry{
		Time: eventTime(ev), Source: SourceEvent, Namespace: ev.InvolvedObject.Namespace,
		Target: ev.InvolvedObject.Kind + "/" + ev.InvolvedObject.Name,
		Action: ev.Action, What: ev.Reason, Result: ev.Type, Message: ev.Message,
		Replica: ev.ReportingInstance,
	}
	if e.Namespace == "" {
		e.Namespace = ev.Namespace
	}
	if m := auditMessage.FindStringSubmatch(ev.Message); m != nil {
		e.Action, e.Message, e.Context, e.TriggeredID = m[1], m[2], m[3], m[4]
	}
	return e, true
}

// eventTime is when the Event last happened, by whichever field was set.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

// readLedger lists the claimed events' Leases claimed since from.
func readLedger(ctx context.Context, client kube.Interface, ns string, from time.Time) ([]Entry, error) {
	opts := metav1.ListOptions{LabelSelector: recordLabel + "=" + recordEvent, Limit: pageSize}
	var out []Entry
	for {
		list, err := client.CoordinationV1().Leases(ns).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list the ledger's records in %s: %w", ns, err)
		}
		for i := range list.Items {
			if e := fromLease(&list.Items[i], ns); !e.Time.Before(from) {
				out = append(out, e)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

func fromLease(l *coordinationv1.Lease, ns string) Entry {
	e := Entry{
		Source: SourceLedger, Namespace: ns, What: l.Labels[stateLabel],
		TriggeredID: l.Annotations[triggeredIDKey], Time: l.CreationTimestamp.Time,
	}
	if e.What == "" {
		e.What = StateClaimed
	}
	if l.Spec.AcquireTime != nil {
		e.Time = l.Spec.AcquireTime.Time
	}
	if l.Spec.HolderIdentity != nil {
		e.Replica = *l.Spec.HolderIdentity
	}
	var o audit.Outcome
	if s := l.Annotations[audit.OutcomeAnnotation]; s != "" {
		_ = json.Unmarshal([]byte(s), &o) // a garbled one tells nothing
	} else if s := audit.Summarize([]byte(l.Annotations[recordKey]), []byte(l.Annotations[finishedKey])); s != "" {
		_ = json.Unmarshal([]byte(s), &o)
	}
	e.Action, e.Context, e.Result, e.Message = o.Action, o.ShKeptnContext, o.Result, o.Message
	if e.Message == "" && o.Service != "" {
		e.Message = fmt.Sprintf("%s/%s/%s", o.Project, o.Stage, o.Service)
	}
	return e
}

func nsName(ns string) string {
	if ns == metav1.NamespaceAll {
		return "all namespaces"
	}
	return "namespace " + ns
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

package audit

// The audit stream: besides the Kubernetes Events, one JSON line per action
// that was reported finished, on its own file or standard stream (AUDIT_LOG),
// for shipping to a log store. Its format is documented in
// docs/observability-audit.md and versioned by the "v" field: a field is
// never renamed or given another meaning within one version; new optional
// fields may appear.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// StreamVersion is the value of every line's "v".
const StreamVersion = 1

// Destinations of OpenStream besides a file path.
const (
	StreamOff    = ""
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Line is one line of the stream. The JSON names are the stable format.
type Line struct {
	V              int    `json:"v"`
	Time           string `json:"time"` // RFC 3339, nanoseconds, UTC: when the action ended
	ShKeptnContext string `json:"shkeptncontext"`
	TriggeredID    string `json:"triggeredid"`
	Project        string `json:"project"`
	Stage          string `json:"stage"`
	Service        string `json:"service"`
	Action         string `json:"action"`
	Status         string `json:"status"` // succeeded or errored
	Result         string `json:"result"` // pass, warning or fail
	Message        string `json:"message"`
	DurationMS     int64  `json:"duration_ms"`
	RefusedRule    string `json:"refused_rule,omitempty"`
	Target         string `json:"target,omitempty"` // "deployment ns/name"
	Before         string `json:"before,omitempty"`
	After          string `json:"after,omitempty"`
	Approver       string `json:"approver,omitempty"`
	Replica        string `json:"replica,omitempty"`
	DryRun         bool   `json:"dry_run,omitempty"`
}

// Stream writes the lines. A nil *Stream writes nothing, so that the
// lifecycle calls it whether or not AUDIT_LOG is set. It is safe for
// concurrent use: each line is one Write, under a lock.
type Stream struct {
	mu      sync.Mutex
	w       io.Writer
	closer  io.Closer // the file OpenStream opened, or nil
	masker  *secret.Masker
	replica string
	now     func() time.Time
}

// OpenStream opens the stream dest names: "" (off: a nil Stream, no
// error), "stdout", "stderr", or a file path, opened for appending and
// created with mode 0600. masker masks every secret the catalog resolved,
// in every text field; replica names this process in the lines.
func OpenStream(dest, replica string, masker *secret.Masker) (*Stream, error) {
	switch dest {
	case StreamOff:
		return nil, nil
	case StreamStdout:
		return NewStream(os.Stdout, replica, masker), nil
	case StreamStderr:
		return NewStream(os.Stderr, replica, masker), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the audit log AUDIT_LOG=%s: %w", dest, err)
	}
	s := NewStream(f, replica, masker)
	s.closer = f
	return s, nil
}

// NewStream writes the lines to w.
func NewStream(w io.Writer, replica string, masker *secret.Masker) *Stream {
	return &Stream{w: w, masker: masker, replica: replica, now: time.Now}
}

// Close closes the file OpenStream opened; the standard streams stay open.
func (s *Stream) Close() error {
	if s == nil || s.closer == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.closer.Close(); err != nil {
		return fmt.Errorf("close the audit log: %w", err)
	}
	s.closer, s.w = nil, io.Discard
	return nil
}

// Finish is what the lifecycle knows of an action when it ends.
type Finish struct {
	Event    keptnevent.Triggered
	Action   string // the catalog's canonical name
	Status   string
	Result   string
	Message  string // as the finished event says it
	Duration time.Duration
	Err      error // the handler's error: a *action.Refusal names its rule
	Note     *Note // what the pipeline and the gates noted, or nil
	DryRun   bool
}

// Finished writes f's line. A failed write is returned for the caller to
// log; it never changes the action's report.
func (s *Stream) Finished(f Finish) error {
	if s == nil {
		return nil
	}
	l := Line{
		V: StreamVersion, Time: s.now().UTC().Format(time.RFC3339Nano),
		ShKeptnContext: f.Event.KeptnContext, TriggeredID: f.Event.ID,
		Project: f.Event.Data.Project, Stage: f.Event.Data.Stage, Service: f.Event.Data.Service,
		Action: f.Action, Status: f.Status, Result: f.Result, Message: f.Message,
		DurationMS: f.Duration.Milliseconds(), Replica: s.replica, DryRun: f.DryRun,
	}
	if l.Action == "" {
		l.Action = f.Event.Data.Action.Action
	}
	var r *action.Refusal
	if errors.As(f.Err, &r) {
		l.RefusedRule = r.Rule
	}
	l.Target, l.Before, l.After, l.Approver = f.Note.values()
	return s.Write(l)
}

// Write writes one line as it is, but for the version, a missing time and
// the masking of every text field.
func (s *Stream) Write(l Line) error {
	if s == nil {
		return nil
	}
	if l.V == 0 {
		l.V = StreamVersion
	}
	if l.Time == "" {
		l.Time = s.now().UTC().Format(time.RFC3339Nano)
	}
	for _, f := range []*string{&l.Message, &l.Target, &l.Before, &l.After, &l.Approver,
		&l.Project, &l.Stage, &l.Service, &l.Action, &l.ShKeptnContext, &l.TriggeredID} {
		*f = s.masker.String(*f)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("audit line of %s: %w", l.TriggeredID, err)
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write the audit line of %s: %w", l.TriggeredID, err)
	}
	return nil
}

// Note is what the pipeline and the gates learn while one action runs and
// the lifecycle does not: the target, its state before and after, and who
// approved. The lifecycle makes one per action with WithNote; the others
// find it with NoteFrom. Its methods are safe for concurrent use, and do
// nothing on a nil Note (no stream, or a test's bare context).
type Note struct {
	mu                             sync.Mutex
	target, before, after, approve string
}

type noteKey struct{}

// WithNote returns ctx carrying a new Note, and the Note.
func WithNote(ctx context.Context) (context.Context, *Note) {
	n := &Note{}
	return context.WithValue(ctx, noteKey{}, n), n
}

// NoteFrom returns the Note ctx carries, or nil.
func NoteFrom(ctx context.Context) *Note {
	n, _ := ctx.Value(noteKey{}).(*Note)
	return n
}

// Target notes the object acted on, e.g. "deployment ns/carts".
func (n *Note) Target(target string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.target = target
}

// Change notes the target's state before and after, e.g. "replicas 1", "replicas 3".
func (n *Note) Change(before, after string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.before, n.after = before, after
}

// Approver notes who approved the action.
func (n *Note) Approver(who string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.approve = who
}

func (n *Note) values() (target, before, after, approver string) {
	if n == nil {
		return "", "", "", ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.target, n.before, n.after, n.approve
}

// OutcomeAnnotation is where the ledger may keep, on a finished event's
// Lease, what became of the action (an Outcome's JSON), so that
// action-provider history can tell a refusal, which changes nothing and
// leaves no Event, from a success.
const OutcomeAnnotation = action.AnnotationPrefix + "outcome"

// maxOutcomeMessage bounds the message an Outcome keeps: the annotations
// of a Lease share 256 KiB with the records in flight.
const maxOutcomeMessage = 512

// Outcome is an action's end as the ledger keeps it.
type Outcome struct {
	Action         string `json:"action,omitempty"`
	ShKeptnContext string `json:"shkeptncontext,omitempty"`
	Project        string `json:"project,omitempty"`
	Stage          string `json:"stage,omitempty"`
	Service        string `json:"service,omitempty"`
	Status         string `json:"status,omitempty"`
	Result         string `json:"result,omitempty"`
	Message        string `json:"message,omitempty"`
}

// Summarize makes the Outcome annotation's value from what a claimed
// event's Lease holds before it is marked finished: record, the triggered
// event in flight, and finished, the finished CloudEvent's body. Either may
// be empty; what cannot be decoded is left out. It returns "" when nothing
// is known.
func Summarize(record, finished []byte) string {
	var o Outcome
	var t keptnevent.Triggered
	if json.Unmarshal(record, &t) == nil {
		o.Action, o.ShKeptnContext = t.Data.Action.Action, t.KeptnContext
		o.Project, o.Stage, o.Service = t.Data.Project, t.Data.Stage, t.Data.Service
	}
	var fin struct {
		Context string `json:"shkeptncontext"`
		Data    struct {
			Project string `json:"project"`
			Stage   string `json:"stage"`
			Service string `json:"service"`
			Status  string `json:"status"`
			Result  string `json:"result"`
			Message string `json:"message"`
		} `json:"data"`
	}
	if json.Unmarshal(finished, &fin) == nil {
		d := fin.Data
		o.Status, o.Result, o.Message = d.Status, d.Result, truncate(d.Message, maxOutcomeMessage)
		o.ShKeptnContext = first(o.ShKeptnContext, fin.Context)
		o.Project, o.Stage, o.Service = first(o.Project, d.Project), first(o.Stage, d.Stage), first(o.Service, d.Service)
	}
	if o == (Outcome{}) {
		return ""
	}
	b, _ := json.Marshal(o) // strings only: cannot fail
	return string(b)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

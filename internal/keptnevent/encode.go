package keptnevent

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// Outgoing is an encoded event ready to be delivered: the structured-mode
// CloudEvent JSON plus what a log line or a transport needs to know of it.
type Outgoing struct {
	ID   string
	Type string
	Body []byte
	// The triggered event it answers, for log lines about its delivery.
	KeptnContext string
	TriggeredID  string
	Action       string
}

// Replier builds the events that answer a triggered event. Both events of
// one action carry the same source.
type Replier struct {
	Source string
	// MaxBytes bounds an encoded event; a longer finished message is cut.
	MaxBytes int
	// Now stamps the events; nil means time.Now.
	Now func() time.Time
	// Masker hides secret values in finished messages; nil hides none.
	Masker *secret.Masker
}

// truncatedMark ends a message that was cut to fit MaxBytes.
const truncatedMark = " …[truncated]"

// Started builds the action.started event for t.
func (r Replier) Started(t Triggered) (Outgoing, error) {
	return r.encode(t, StartedType, keptnv2.ActionStartedEventData{EventData: eventData(t)})
}

// Finished builds the action.finished event for t. When the event would be
// larger than MaxBytes the message is shortened, never the identifying
// fields Keptn needs to match the event to its sequence: it keeps the
// longest start of the message that fits, marked as cut.
func (r Replier) Finished(t Triggered, status keptnv2.StatusType, result keptnv2.ResultType, message string) (Outgoing, error) {
	data := keptnv2.ActionFinishedEventData{EventData: eventData(t)}
	data.Status, data.Result, data.Message = status, result, r.Masker.String(message)
	out, err := r.encode(t, FinishedType, data)
	if err != nil || r.MaxBytes <= 0 || len(out.Body) <= r.MaxBytes {
		return out, err
	}
	// Escaping makes the encoded length of a message hard to predict, so
	// search for the longest start that fits: a few encodings, and only
	// for an event that is too long.
	full := data.Message
	fits := func(n int) (Outgoing, bool) {
		data.Message = cut(full, n) + truncatedMark
		o, err := r.encode(t, FinishedType, data)
		return o, err == nil && len(o.Body) <= r.MaxBytes
	}
	best, ok := fits(0)
	if !ok {
		return Outgoing{}, fmt.Errorf("finished event for %s is over the limit of %d bytes even without its message", t.ID, r.MaxBytes)
	}
	lo, hi := 0, len(full) // cut(full, lo) fits; cut(full, hi) does not
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if o, ok := fits(mid); ok {
			lo, best = mid, o
		} else {
			hi = mid
		}
	}
	return best, nil
}

// Answerable says whether t can be answered within MaxBytes: whether its
// smallest finished event, with no message, fits. The started event is
// smaller still. It is checked before anything is sent, because a started
// event with no finished one leaves Keptn's sequence waiting for ever.
func (r Replier) Answerable(t Triggered) error {
	if r.MaxBytes <= 0 {
		return nil
	}
	data := keptnv2.ActionFinishedEventData{EventData: eventData(t)}
	data.Status, data.Result = keptnv2.StatusErrored, keptnv2.ResultFailed
	out, err := r.encode(t, FinishedType, data)
	if err != nil {
		return err
	}
	// Room for a short reason, such as "interrupted: replica … stopped",
	// so that every finished event the provider may have to send fits.
	if need := len(out.Body) + minMessageBytes; need > r.MaxBytes {
		return fmt.Errorf("a finished event for %s needs at least %d bytes (its labels and names alone take %d), over the limit of %d (MAX_EVENT_BYTES)",
			t.ID, need, len(out.Body), r.MaxBytes)
	}
	return nil
}

// minMessageBytes is the room a finished event must have for its message.
const minMessageBytes = 256

func eventData(t Triggered) keptnv2.EventData {
	return keptnv2.EventData{
		Project: t.Data.Project,
		Stage:   t.Data.Stage,
		Service: t.Data.Service,
		Labels:  t.Data.Labels,
	}
}

// envelope is a structured-mode CloudEvent with Keptn's extensions. Encoding
// it in one pass costs a third of building a cloudevents event.Event, which
// encodes the data once on its own and then again inside the envelope; the
// tests decode what it writes with the SDK and validate it.
type envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	KeptnContext    string    `json:"shkeptncontext"`
	TriggeredID     string    `json:"triggeredid"`
	SpecVersionKT   string    `json:"shkeptnspecversion"`
	GitCommitID     string    `json:"gitcommitid,omitempty"`
	TraceParent     string    `json:"traceparent,omitempty"`
	TraceState      string    `json:"tracestate,omitempty"`
	Data            any       `json:"data"`
}

func (r Replier) encode(t Triggered, eventType string, data any) (Outgoing, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	id := uuid.NewString()
	body, err := json.Marshal(envelope{
		SpecVersion:     event.CloudEventsVersionV1,
		ID:              id,
		Source:          r.Source,
		Type:            eventType,
		Time:            now().UTC(),
		DataContentType: event.ApplicationJSON,
		KeptnContext:    t.KeptnContext,
		TriggeredID:     t.ID,
		SpecVersionKT:   t.SpecVersion,
		GitCommitID:     t.GitCommitID,
		TraceParent:     t.TraceParent,
		TraceState:      t.TraceState,
		Data:            data,
	})
	if err != nil {
		return Outgoing{}, fmt.Errorf("encode %s for %s: %w", eventType, t.ID, err)
	}
	return Outgoing{ID: id, Type: eventType, Body: body,
		KeptnContext: t.KeptnContext, TriggeredID: t.ID, Action: t.Data.Action.Action}, nil
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Package keptnevent translates between the wire and the provider: it decodes
// sh.keptn.event.action.triggered CloudEvents into Triggered values, and
// builds the action.started and action.finished events that answer them.
//
// The data types are go-utils' pkg/lib/v0_2_0, the Keptn spec 0.2.x types
// that Keptn's control plane itself uses.
package keptnevent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// Event types of the action task, and the Keptn CloudEvents extensions the
// provider reads and writes.
var (
	TriggeredType = keptnv2.GetTriggeredEventType(keptnv2.ActionTaskName)
	StartedType   = keptnv2.GetStartedEventType(keptnv2.ActionTaskName)
	FinishedType  = keptnv2.GetFinishedEventType(keptnv2.ActionTaskName)
)

const (
	extKeptnContext = "shkeptncontext"
	extTriggeredID  = "triggeredid"
	extGitCommitID  = "gitcommitid"
	extSpecVersion  = "shkeptnspecversion"
	// The CloudEvents distributed-tracing extension (W3C Trace Context),
	// which go-utils' sdk-go client sets on the events Keptn sends.
	extTraceParent = "traceparent"
	extTraceState  = "tracestate"

	// defaultSpecVersion is the Keptn spec version go-utils v0.20.4 writes;
	// used when the triggered event does not name one.
	defaultSpecVersion = "0.2.4"
)

// Triggered is a decoded, validated action.triggered event.
type Triggered struct {
	ID           string
	KeptnContext string
	GitCommitID  string
	SpecVersion  string
	Data         keptnv2.ActionTriggeredEventData
	// Value is data.action.value as the sender wrote it (compacted), for
	// the action to decode; Data.Action.Value is left nil, so that no
	// second, rounded copy of it exists.
	Value json.RawMessage
	// TraceParent and TraceState are the event's distributed-tracing
	// extension, empty when it has none. The started and finished events
	// carry them onward (the lifecycle puts its own span's there when it
	// traces).
	TraceParent string `json:",omitempty"`
	TraceState  string `json:",omitempty"`
}

// Request is what the action handler gets from this event.
func (t Triggered) Request(dryRun bool) action.Request {
	return action.Request{
		Action:       t.Data.Action.Action,
		Value:        t.Value,
		Project:      t.Data.Project,
		Stage:        t.Data.Stage,
		Service:      t.Data.Service,
		Labels:       t.Data.Labels,
		Problem:      t.Data.Problem,
		KeptnContext: t.KeptnContext,
		TriggeredID:  t.ID,
		DryRun:       dryRun,
	}
}

// InvalidError says why an incoming event was refused. Its message is one
// line, meant for the sender (as the HTTP answer) and for the log.
type InvalidError struct {
	// ID is the event id when it could be read, for the log line.
	ID     string
	Reason string
	Err    error
}

func (e *InvalidError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + oneLine(e.Err.Error())
	}
	return e.Reason
}

func (e *InvalidError) Unwrap() error { return e.Err }

// Decode reads an action.triggered event in structured mode (what the Keptn
// distributor sends) or binary mode (ce-* headers) and validates it. Every
// error it returns is an *InvalidError.
func Decode(header http.Header, body []byte) (Triggered, error) {
	ev, err := parse(header, body)
	if err != nil {
		return Triggered{}, err
	}
	// The SDK copies the extensions on each call of Extensions: once.
	ext := ev.Extensions()
	t := Triggered{
		ID:           ev.ID(),
		KeptnContext: stringExtension(ext, extKeptnContext),
		GitCommitID:  stringExtension(ext, extGitCommitID),
		SpecVersion:  stringExtension(ext, extSpecVersion),
		TraceParent:  stringExtension(ext, extTraceParent),
		TraceState:   stringExtension(ext, extTraceState),
	}
	if ev.Type() != TriggeredType {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: fmt.Sprintf("event type %q is not %s", ev.Type(), TriggeredType)}
	}
	if t.Data, t.Value, err = decodeData(ev.Data()); err != nil {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: "invalid data", Err: err}
	}
	if missing := t.missing(); len(missing) > 0 {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: "missing required " + strings.Join(missing, ", ")}
	}
	if t.SpecVersion == "" {
		t.SpecVersion = defaultSpecVersion
	}
	return t, nil
}

func parse(header http.Header, body []byte) (*event.Event, error) {
	var ev event.Event
	if header.Get("Ce-Specversion") != "" {
		msg := cehttp.NewMessage(header, io.NopCloser(bytes.NewReader(body)))
		got, err := binding.ToEvent(context.Background(), msg)
		if err != nil {
			return nil, &InvalidError{Reason: "not a binary-mode CloudEvent", Err: err}
		}
		ev = *got
	} else {
		// Structured mode. The content type is not insisted on: the
		// distributor sends application/cloudevents+json, hand-written
		// tests often send application/json.
		// The SDK's parser reads the first JSON value and ignores what
		// follows, and says little about broken JSON: one scan, which
		// allocates nothing, catches both; the reason is worked out only
		// on that slow path.
		if !json.Valid(body) {
			if err := single(body); err != nil {
				return nil, err
			}
			return nil, &InvalidError{Reason: "malformed JSON body"}
		}
		if err := ev.UnmarshalJSON(body); err != nil {
			return nil, &InvalidError{Reason: "not a structured-mode CloudEvent", Err: err}
		}
	}
	if err := ev.Validate(); err != nil {
		return nil, &InvalidError{ID: ev.ID(), Reason: "not a valid CloudEvent", Err: err}
	}
	return &ev, nil
}

// single says why a body that is not valid JSON was refused when its first
// value is whole: something follows the event, which the SDK's parser would
// silently drop (`{event} {other event}`, `{event} garbage`). It returns nil
// when the first value itself is broken.
func single(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var first json.RawMessage
	if err := dec.Decode(&first); err != nil {
		return nil
	}
	rest := bytes.TrimSpace(body[dec.InputOffset():])
	if len(rest) == 0 {
		return nil
	}
	// The first value's id, if it has one, for the log line.
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(first, &head)
	var second json.RawMessage
	if err := dec.Decode(&second); err == nil {
		return &InvalidError{ID: head.ID, Reason: fmt.Sprintf(
			"more than one JSON value in the body: a structured-mode body is exactly one event, and %d more byte(s) follow it", len(rest))}
	}
	return &InvalidError{ID: head.ID, Reason: fmt.Sprintf(
		"trailing data after the event: a structured-mode body is exactly one event, and %d byte(s) that are not JSON follow it", len(rest))}
}

func stringExtension(ext map[string]any, name string) string {
	v, ok := ext[name]
	if !ok {
		return ""
	}
	s, err := types.ToString(v)
	if err != nil {
		return ""
	}
	return s
}

// triggeredData is keptnv2.ActionTriggeredEventData with its action's
// value kept as raw JSON: go-utils holds it as an interface{}, where every
// number becomes a float64 (9007199254740993 would come back as …992), and
// the actions promise numbers kept as written. The outer Action shadows the
// embedded one, so data is decoded once.
type triggeredData struct {
	keptnv2.ActionTriggeredEventData
	Action struct {
		Name        string          `json:"name"`
		Action      string          `json:"action"`
		Description string          `json:"description,omitempty"`
		Value       json.RawMessage `json:"value,omitempty"`
	} `json:"action"`
}

// decodeData decodes data, turning encoding/json's type errors into the
// path a Keptn user recognises, e.g. "data.action must be an object". The
// value comes back apart, compacted, nil when there is none.
func decodeData(data []byte) (keptnv2.ActionTriggeredEventData, json.RawMessage, error) {
	var none keptnv2.ActionTriggeredEventData
	if len(bytes.TrimSpace(data)) == 0 {
		return none, nil, errors.New("the event has no data")
	}
	var d triggeredData
	err := json.Unmarshal(data, &d)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
	case errors.As(err, &typeErr) && typeErr.Field != "":
		// Fields of the embedded structs are reported with their names in
		// the path; the JSON has no such levels.
		field := strings.ReplaceAll(strings.ReplaceAll(typeErr.Field, "ActionTriggeredEventData.", ""), "EventData.", "")
		return none, nil, fmt.Errorf("data.%s must be %s, not %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &typeErr):
		return none, nil, fmt.Errorf("data must be an object, not %s", typeErr.Value)
	default:
		return none, nil, fmt.Errorf("decode data: %w", err)
	}
	out := d.ActionTriggeredEventData
	out.Action = keptnv2.ActionInfo{Name: d.Action.Name, Action: d.Action.Action, Description: d.Action.Description}
	v := bytes.TrimSpace(d.Action.Value)
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return out, nil, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return none, nil, fmt.Errorf("decode data.action.value: %w", err) // cannot happen: Unmarshal checked it
	}
	return out, b.Bytes(), nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "an object"
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	default:
		return "a " + goKind
	}
}

func (t Triggered) missing() []string {
	var m []string
	for _, f := range []struct{ name, value string }{
		{"id", t.ID},
		{extKeptnContext, t.KeptnContext},
		{"data.project", t.Data.Project},
		{"data.stage", t.Data.Stage},
		{"data.service", t.Data.Service},
		{"data.action.action", t.Data.Action.Action},
	} {
		if strings.TrimSpace(f.value) == "" {
			m = append(m, f.name)
		}
	}
	return m
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

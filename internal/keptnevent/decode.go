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
	// Value is Data.Action.Value as raw JSON, for the action to decode.
	Value json.RawMessage
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
	t := Triggered{
		ID:           ev.ID(),
		KeptnContext: stringExtension(ev, extKeptnContext),
		GitCommitID:  stringExtension(ev, extGitCommitID),
		SpecVersion:  stringExtension(ev, extSpecVersion),
	}
	if ev.Type() != TriggeredType {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: fmt.Sprintf("event type %q is not %s", ev.Type(), TriggeredType)}
	}
	if err := decodeData(ev.Data(), &t.Data); err != nil {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: "invalid data", Err: err}
	}
	if missing := t.missing(); len(missing) > 0 {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: "missing required " + strings.Join(missing, ", ")}
	}
	value, err := rawValue(ev.Data())
	if err != nil {
		return Triggered{}, &InvalidError{ID: t.ID, Reason: "invalid data", Err: err}
	}
	t.Value = value
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
		if err := single(body); err != nil {
			return nil, err
		}
		if err := ev.UnmarshalJSON(body); err != nil {
			// The SDK's parser says little about broken JSON; tell the
			// two failures apart only on this slow path.
			if !json.Valid(body) {
				return nil, &InvalidError{Reason: "malformed JSON body"}
			}
			return nil, &InvalidError{Reason: "not a structured-mode CloudEvent", Err: err}
		}
	}
	if err := ev.Validate(); err != nil {
		return nil, &InvalidError{ID: ev.ID(), Reason: "not a valid CloudEvent", Err: err}
	}
	return &ev, nil
}

// single refuses a structured-mode body that holds more than the event:
// the SDK's parser reads the first JSON value and ignores what follows, so
// that `{event} {other event}` or `{event} garbage` would pass as the first
// event, and what a sender meant by the rest would be silently dropped. A
// body whose first value is broken is left to the parser's own errors.
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

func stringExtension(ev *event.Event, name string) string {
	v, ok := ev.Extensions()[name]
	if !ok {
		return ""
	}
	s, err := types.ToString(v)
	if err != nil {
		return ""
	}
	return s
}

// rawValue is data.action.value exactly as the sender wrote it, compacted,
// or nil when there is none. go-utils' type holds it as an interface{},
// where every number is a float64: 9007199254740993 would come back as
// 9007199254740992, and the actions promise numbers kept as written. So
// the value is taken from the data's bytes, not re-encoded from go-utils'.
func rawValue(data []byte) (json.RawMessage, error) {
	// encoding/json, as for keptnv2.ActionTriggeredEventData: the same key
	// matching and the same winner among repeated keys.
	var raw struct {
		Action struct {
			Value json.RawMessage `json:"value"`
		} `json:"action"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode data.action.value: %w", err)
	}
	v := bytes.TrimSpace(raw.Action.Value)
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return nil, fmt.Errorf("decode data.action.value: %w", err)
	}
	return b.Bytes(), nil
}

// decodeData decodes data into out, turning encoding/json's type errors into
// the path a Keptn user recognises, e.g. "data.action must be an object".
func decodeData(data []byte, out *keptnv2.ActionTriggeredEventData) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("the event has no data")
	}
	err := json.Unmarshal(data, out)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr) && typeErr.Field != "":
		// Fields of the embedded keptnv2.EventData are reported with its
		// name in the path; the JSON has no such level.
		field := strings.ReplaceAll(typeErr.Field, "EventData.", "")
		return fmt.Errorf("data.%s must be %s, not %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Errorf("data must be an object, not %s", typeErr.Value)
	default:
		return fmt.Errorf("decode data: %w", err)
	}
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

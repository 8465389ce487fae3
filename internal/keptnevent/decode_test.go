package keptnevent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/examples/events"
)

func example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(events.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// structured turns a JSON object literal into a structured-mode body with
// the fields every valid triggered event has, overridden by fields.
func structured(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	ev := map[string]any{
		"specversion":    "1.0",
		"id":             "trig-1",
		"source":         "shipyard-controller",
		"type":           TriggeredType,
		"shkeptncontext": "ctx-1",
		"data": map[string]any{
			"project": "sockshop", "stage": "production", "service": "carts",
			"action": map[string]any{"action": "scale", "value": map[string]any{"replicas": "2"}},
		},
	}
	for k, v := range fields {
		if v == nil {
			delete(ev, k)
		} else {
			ev[k] = v
		}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var ceJSON = http.Header{"Content-Type": {"application/cloudevents+json"}}

func TestDecodeRealPayloads(t *testing.T) {
	got, err := Decode(ceJSON, example(t, "01-scale-up.json"))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.ID != "6de83495-4f83-481c-8dbe-fcceb2e0243b" || got.KeptnContext != "08735340-6f9e-4b32-97ff-3b6c292bc509" {
		t.Errorf("id/context = %q/%q", got.ID, got.KeptnContext)
	}
	if got.GitCommitID != "c3a1e7d9f2b64a0b8e5d1f7c9a2b4e6d8f0a1c3e" || got.SpecVersion != "0.2.4" {
		t.Errorf("gitcommitid/specversion = %q/%q", got.GitCommitID, got.SpecVersion)
	}
	d := got.Data
	if d.Project != "sockshop" || d.Stage != "production" || d.Service != "carts" || d.Labels["owner"] != "team-carts" {
		t.Errorf("data = %+v", d.EventData)
	}
	if d.Action.Action != "scale" || d.Problem.ProblemTitle != "Response time degradation" {
		t.Errorf("action/problem = %+v / %+v", d.Action, d.Problem)
	}
	if string(got.Value) != `{"replicas":"+1"}` {
		t.Errorf("value = %s", got.Value)
	}

	legacy, err := Decode(ceJSON, example(t, "02-scaling-legacy.json"))
	if err != nil {
		t.Fatalf("Decode legacy: %v", err)
	}
	if legacy.Data.Action.Action != "scaling" || string(legacy.Value) != `"1"` || legacy.SpecVersion != "0.2.3" {
		t.Errorf("legacy = %q %s %q", legacy.Data.Action.Action, legacy.Value, legacy.SpecVersion)
	}
}

func TestDecodeBinaryMode(t *testing.T) {
	h := http.Header{
		"Ce-Specversion":    {"1.0"},
		"Ce-Id":             {"bin-1"},
		"Ce-Source":         {"shipyard-controller"},
		"Ce-Type":           {TriggeredType},
		"Ce-Shkeptncontext": {"ctx-bin"},
		"Ce-Gitcommitid":    {"abc"},
		"Content-Type":      {"application/json"},
	}
	body := `{"project":"p","stage":"s","service":"svc","action":{"action":"scale","value":{"replicas":"3"}}}`
	got, err := Decode(h, []byte(body))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.ID != "bin-1" || got.KeptnContext != "ctx-bin" || got.GitCommitID != "abc" || got.SpecVersion != defaultSpecVersion {
		t.Errorf("got %+v", got)
	}
	if string(got.Value) != `{"replicas":"3"}` {
		t.Errorf("value = %s", got.Value)
	}
}

func TestDecodeRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   []byte
		header http.Header
		reason string // a part of the one-line error
		id     string // the id the log line can name
	}{
		{"not JSON", []byte(`{"specversion": "1.0", `), ceJSON, "malformed JSON body", ""},
		{"empty body", nil, ceJSON, "malformed JSON body", ""},
		{"JSON but not a CloudEvent", []byte(`{"hello": "world"}`), ceJSON, "CloudEvent", ""},
		{"array", []byte(`[1,2]`), ceJSON, "CloudEvent", ""},
		{"wrong type", structured(t, map[string]any{"type": "sh.keptn.event.deployment.triggered"}), ceJSON,
			`event type "sh.keptn.event.deployment.triggered" is not sh.keptn.event.action.triggered`, "trig-1"},
		{"missing id", structured(t, map[string]any{"id": nil}), ceJSON, "id", ""},
		{"missing shkeptncontext", structured(t, map[string]any{"shkeptncontext": nil}), ceJSON, "missing required shkeptncontext", "trig-1"},
		{"missing data", structured(t, map[string]any{"data": nil}), ceJSON, "the event has no data", "trig-1"},
		{"missing project and stage", structured(t, map[string]any{"data": map[string]any{
			"service": "carts", "action": map[string]any{"action": "scale"}}}), ceJSON,
			"missing required data.project, data.stage", "trig-1"},
		{"missing service", structured(t, map[string]any{"data": map[string]any{
			"project": "p", "stage": "s", "action": map[string]any{"action": "scale"}}}), ceJSON,
			"missing required data.service", "trig-1"},
		{"missing action name", structured(t, map[string]any{"data": map[string]any{
			"project": "p", "stage": "s", "service": "c", "action": map[string]any{"value": "1"}}}), ceJSON,
			"missing required data.action.action", "trig-1"},
		{"data.action a string", example(t, "04-malformed.json"), ceJSON,
			"data.action must be an object, not string", "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b"},
		{"data.labels an array", structured(t, map[string]any{"data": map[string]any{
			"project": "p", "stage": "s", "service": "c", "labels": []string{"x"}, "action": map[string]any{"action": "scale"}}}), ceJSON,
			"data.labels must be an object, not array", "trig-1"},
		{"data a string", structured(t, map[string]any{"data": "hello"}), ceJSON, "data must be an object, not string", "trig-1"},
		{"binary mode without source", []byte(`{}`), http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"x"}, "Ce-Type": {TriggeredType}},
			"CloudEvent", "x"},
		{"a second event after the first", append(structured(t, nil), structured(t, map[string]any{"id": "trig-2"})...), ceJSON,
			"more than one JSON value in the body: a structured-mode body is exactly one event", "trig-1"},
		{"a second value after the first, on its own line", append(structured(t, nil), "\n{}\n"...), ceJSON,
			"more than one JSON value in the body", "trig-1"},
		{"trailing garbage", append(structured(t, nil), " garbage"...), ceJSON,
			"trailing data after the event: a structured-mode body is exactly one event, and 7 byte(s) that are not JSON follow it", "trig-1"},
		{"trailing brace", append(structured(t, nil), '}'), ceJSON, "trailing data after the event", "trig-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.header, tc.body)
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("Decode error = %v, want an *InvalidError", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if invalid.ID != tc.id {
				t.Errorf("error names event id %q, want %q", invalid.ID, tc.id)
			}
		})
	}
}

func TestDecodeToleratesMergedTaskData(t *testing.T) {
	// Keptn merges earlier tasks' data into the triggered event's data.
	body := structured(t, map[string]any{"data": map[string]any{
		"project": "p", "stage": "s", "service": "c",
		"action":     map[string]any{"action": "scale", "value": map[string]any{"replicas": "+1"}, "extra": true},
		"getAction":  map[string]any{"actionIndex": 1},
		"evaluation": map[string]any{"score": 42, "result": "fail"},
		"deployment": map[string]any{"deploymentURIsLocal": []string{"http://carts"}},
	}})
	got, err := Decode(ceJSON, body)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Data.Action.Action != "scale" {
		t.Errorf("action = %q", got.Data.Action.Action)
	}
}

// TestDecodeKeepsValueAsWritten: data.action.value reaches the action as
// the sender wrote it. go-utils decodes it into an interface{}, where a
// number is a float64, so re-encoding its copy turns 9007199254740993 into
// 9007199254740992 and 1.50 into 1.5.
func TestDecodeKeepsValueAsWritten(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
	}{
		{"a large integer", `{"replicas": 9007199254740993}`, `{"replicas":9007199254740993}`},
		{"a bare large integer", `9007199254740993`, `9007199254740993`},
		{"a decimal as written", `{"maxPods": 1.50}`, `{"maxPods":1.50}`},
		{"an exponent as written", `{"toRevision": 1e2}`, `{"toRevision":1e2}`},
		{"keys in the sender's order", `{"b": 1, "a": "x<y"}`, `{"b":1,"a":"x<y"}`},
		{"a string", `"-1"`, `"-1"`},
		{"null is no value", `null`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := `{"project":"p","stage":"s","service":"c","action":{"action":"scale","value":` + tc.value + `}}`
			structuredBody := []byte(`{"specversion":"1.0","id":"x","source":"s","type":"` + TriggeredType +
				`","shkeptncontext":"c","datacontenttype":"application/json","data":` + data + `}`)
			binary := http.Header{
				"Ce-Specversion": {"1.0"}, "Ce-Id": {"x"}, "Ce-Source": {"s"},
				"Ce-Type": {TriggeredType}, "Ce-Shkeptncontext": {"c"}, "Content-Type": {"application/json"},
			}
			for mode, in := range map[string]struct {
				header http.Header
				body   []byte
			}{"structured": {ceJSON, structuredBody}, "binary": {binary, []byte(data)}} {
				got, err := Decode(in.header, in.body)
				if err != nil {
					t.Fatalf("%s: Decode: %v", mode, err)
				}
				if string(got.Value) != tc.want {
					t.Errorf("%s: value = %s, want %s", mode, got.Value, tc.want)
				}
			}
		})
	}
	t.Run("no value", func(t *testing.T) {
		got, err := Decode(ceJSON, structured(t, map[string]any{"data": map[string]any{
			"project": "p", "stage": "s", "service": "c", "action": map[string]any{"action": "restart"}}}))
		if err != nil || got.Value != nil {
			t.Fatalf("Decode = %s, %v; want no value", got.Value, err)
		}
	})
}

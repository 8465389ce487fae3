package keptnevent

import (
	"encoding/json"
	"net/http"
	"testing"
)

const (
	testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testTraceState  = "keptn=1"
)

// The distributed-tracing extension that go-utils' sdk-go client writes is
// read from the event in either mode, and carried onward on started and
// finished.
func TestTraceParentCarriedOnward(t *testing.T) {
	body := structured(t, map[string]any{"traceparent": testTraceParent, "tracestate": testTraceState})
	tr, err := Decode(ceJSON, body)
	if err != nil {
		t.Fatal(err)
	}
	if tr.TraceParent != testTraceParent || tr.TraceState != testTraceState {
		t.Fatalf("decoded traceparent/tracestate %q/%q", tr.TraceParent, tr.TraceState)
	}

	bin, err := Decode(http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"bin-1"}, "Ce-Source": {"s"}, "Ce-Type": {TriggeredType},
		"Ce-Shkeptncontext": {"ctx"}, "Ce-Traceparent": {testTraceParent}, "Content-Type": {"application/json"},
	}, []byte(`{"project":"p","stage":"s","service":"svc","action":{"action":"scale"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if bin.TraceParent != testTraceParent {
		t.Errorf("binary mode: traceparent %q", bin.TraceParent)
	}

	r := Replier{Source: "test"}
	started, err := r.Started(tr)
	if err != nil {
		t.Fatal(err)
	}
	finished, err := r.Finished(tr, "succeeded", "pass", "done")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Outgoing{started, finished} {
		decodeWire(t, o) // still a valid CloudEvent
		var ext struct{ TraceParent, TraceState string }
		if err := json.Unmarshal(o.Body, &ext); err != nil {
			t.Fatal(err)
		}
		if ext.TraceParent != testTraceParent || ext.TraceState != testTraceState {
			t.Errorf("%s carries traceparent/tracestate %q/%q", o.Type, ext.TraceParent, ext.TraceState)
		}
	}

	// Without the extension, no empty attributes are written.
	plain := triggered(t)
	o, err := r.Started(plain)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(o.Body, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["traceparent"]; ok {
		t.Errorf("started event of an untraced event has a traceparent: %s", o.Body)
	}
}

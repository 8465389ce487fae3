package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x"}, false},
	} {
		if got := Enabled(env(tc.env)); got != tc.want {
			t.Errorf("Enabled(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// Off costs nothing: the round tripper is the one given, spans are no-ops,
// a context is returned as it was, and nothing is allocated.
func TestOffIsFree(t *testing.T) {
	tr, err := New(context.Background(), env(nil), "test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.On() {
		t.Fatal("on without OTEL_* variables")
	}
	rt := http.DefaultTransport
	if tr.Transport(rt) != rt {
		t.Error("Transport wrapped the round tripper while off")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := tr.Start(ctx, "x")
		c2, child := Child(c, "y")
		if span.IsRecording() || child.IsRecording() || c2 != ctx {
			t.Fatal("recording while off")
		}
		End(child, nil)
		End(span, nil)
		_ = tr.Extract(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	})
	if allocs != 0 {
		t.Errorf("%v allocations per event while off, want 0", allocs)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	var none *Tracing
	if none.On() || none.Transport(rt) != rt {
		t.Error("a nil Tracing is not off")
	}
}

// On, a span continues an extracted traceparent, Child links under it,
// Inject writes it back, and the transport sends it only for requests made
// within a trace.
func TestOnContinuesTheTrace(t *testing.T) {
	// An endpoint nobody listens on: nothing is exported in this test, the
	// exporter only has to be built.
	tr, err := New(context.Background(), env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // do not wait for the unreachable endpoint
		_ = tr.Shutdown(ctx)
	}()
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := tr.Extract(context.Background(), parent, "k=v")
	ctx, span := tr.Start(ctx, "receive")
	defer span.End()
	sc := span.SpanContext()
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %s does not continue the traceparent", sc.TraceID())
	}
	_, child := Child(ctx, "resolve")
	if !child.IsRecording() || child.SpanContext().TraceID() != sc.TraceID() {
		t.Error("Child did not make a recording span of the same trace")
	}
	child.End()
	tp, ts := Inject(sc)
	if tp != "00-4bf92f3577b34da6a3ce929d0e0e4736-"+sc.SpanID().String()+"-01" || ts != "k=v" {
		t.Errorf("Inject = %q, %q", tp, ts)
	}
	if tp, _ := Inject(trace.SpanContext{}); tp != "" {
		t.Errorf("Inject of no span = %q", tp)
	}

	got := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	defer srv.Close()
	client := &http.Client{Transport: tr.Transport(nil)}
	for _, c := range []context.Context{ctx, context.Background()} {
		req, _ := http.NewRequestWithContext(c, http.MethodGet, srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if in := <-got; in == "" || in[3:35] != sc.TraceID().String() {
		t.Errorf("request within the trace sent traceparent %q", in)
	}
	if out := <-got; out != "" {
		t.Errorf("request outside any trace sent traceparent %q", out)
	}
}

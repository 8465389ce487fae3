package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// otelcolEnv names the collector binary that test/otelcol/otelcol.sh
// builds; make test sets it.
const otelcolEnv = "OTELCOL_BIN"

// TestTracingToCollector runs the built binary with OTLP export to a real
// OpenTelemetry Collector (test/otelcol: the OTLP receiver and the file
// exporter) and checks the trace of one event: it continues the triggered
// event's traceparent; receive → run → the pipeline's stages → the
// Kubernetes API calls are linked parent to child; the spans carry the
// event's names and the result; and the finished event that Keptn gets
// carries a traceparent of the same trace.
func TestTracingToCollector(t *testing.T) {
	cp := requireCluster(t)
	bin := os.Getenv(otelcolEnv)
	if bin == "" {
		testsupport.Skip(t, "no OpenTelemetry Collector: "+otelcolEnv+" is not set (the binary test/otelcol/otelcol.sh builds)")
	}
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)

	spansFile := filepath.Join(t.TempDir(), "traces.jsonl")
	endpoint := startCollector(ctx, t, bin, spansFile)

	sink := &eventsink.Sink{}
	broker := testsupport.ServeSink(t, sink)
	p := startProvider(ctx, t, map[string]string{
		"EVENTBROKER":                 broker,
		"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"OTEL_SERVICE_NAME":           "action-provider-itest",
	})

	const (
		incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		incomingSpan  = "00f067aa0ba902b7"
	)
	id, body := triggered(t, "01-scale-up.json", stage, map[string]string{"replicas": "+1"})
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	ev["traceparent"] = "00-" + incomingTrace + "-" + incomingSpan + "-01"
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
		t.Fatalf("POST = %d %q, want 202", code, answer)
	}
	fin := awaitFinished(ctx, t, sink, id)
	checkEvents(t, sink, id, stage)

	// Stopping the provider flushes its spans (SHUTDOWN_FLUSH).
	if err := p.terminate(t, 30*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, p.log)
	}
	var spans map[string]span // by span id
	if !testsupport.Poll(ctx, waitTimeout, func() bool {
		spans = readSpans(t, spansFile, incomingTrace)
		return hasSpan(spans, "finished") && hasSpan(spans, "receive")
	}) {
		t.Fatalf("the collector's file has no finished and receive spans of trace %s within %s; spans: %v", incomingTrace, waitTimeout, names(spans))
	}
	t.Logf("trace %s:\n%s", incomingTrace, tree(spans))

	// The chain from the incoming span down to a call to the API server.
	receive := only(t, spans, "receive", "")
	if receive.Parent != incomingSpan {
		t.Errorf("receive's parent = %q, want the incoming traceparent's span %s", receive.Parent, incomingSpan)
	}
	only(t, spans, "decode", receive.ID)
	for _, name := range []string{"claim", "started", "finished"} {
		only(t, spans, name, receive.ID)
	}
	run := only(t, spans, "run", receive.ID)
	stages := map[string]span{}
	for _, name := range []string{"resolve", "guard", "gates", "lock", "mutate", "audit", "verify", "release"} {
		stages[name] = only(t, spans, name, run.ID)
	}
	var kube []span
	for _, s := range spans {
		if s.Parent == stages["mutate"].ID && s.Kind == spanKindClient {
			kube = append(kube, s)
		}
	}
	if len(kube) == 0 {
		t.Errorf("no Kubernetes API call (an HTTP client span) under mutate; spans:\n%s", tree(spans))
	}

	// The event's names and the outcome.
	for _, name := range []string{"receive", "claim", "started", "run", "finished"} {
		s := only(t, spans, name, "")
		for k, want := range map[string]string{"shkeptncontext": "ctx-" + id, "triggeredid": id, "action": "scale"} {
			if s.Attrs[k] != want {
				t.Errorf("%s: %s = %q, want %q", name, k, s.Attrs[k], want)
			}
		}
	}
	if got, want := run.Attrs["target"], "deployment "+ns+"/carts"; !strings.EqualFold(got, want) {
		t.Errorf("run: target = %q, want %q", got, want)
	}
	for _, name := range []string{"run", "finished"} {
		if got := only(t, spans, name, "").Attrs["result"]; got != "pass" {
			t.Errorf("%s: result = %q, want pass", name, got)
		}
	}

	// Keptn's trace goes on from the finished event.
	var ext struct {
		TraceParent string `json:"traceparent"`
	}
	if err := json.Unmarshal(fin.Raw, &ext); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(ext.TraceParent, "-")
	if len(parts) != 4 || parts[1] != incomingTrace || parts[2] != only(t, spans, "finished", "").ID {
		t.Errorf("finished event's traceparent = %q, want trace %s and the finished span", ext.TraceParent, incomingTrace)
	}
}

// startCollector starts bin with the OTLP/HTTP receiver on a free loopback
// port and the file exporter writing to out, and returns the endpoint for
// OTEL_EXPORTER_OTLP_ENDPOINT once it is ready.
func startCollector(ctx context.Context, t *testing.T, bin, out string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := testsupport.FreePort(t)
		config := fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  file:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    logs:
      encoding: json
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`, port, out)
		cfgFile := filepath.Join(t.TempDir(), "otelcol.yaml")
		if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		proc, err := testsupport.Start(t, "otelcol", bin, []string{"--config", cfgFile}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ready := testsupport.Poll(ctx, waitTimeout, func() bool {
			return proc.Exited() || len(proc.Log.LogLines("Everything is ready. Begin running and processing data.")) > 0
		})
		switch {
		case ready && !proc.Exited():
			return fmt.Sprintf("http://127.0.0.1:%d", port)
		case proc.InUse() && attempt < 3:
			t.Logf("attempt %d: port %d in use; trying another", attempt, port)
		default:
			t.Fatalf("otelcol not ready (exited: %v) within %s:\n%s", proc.Exited(), waitTimeout, proc.Log)
		}
	}
}

const spanKindClient = 3 // OTLP's SPAN_KIND_CLIENT

// span is what the test reads of an OTLP span.
type span struct {
	ID, Parent, Name string
	Kind             int
	Start            uint64 // Unix ns
	Attrs            map[string]string
}

// readSpans reads the spans of trace from the file exporter's output: one
// OTLP/JSON ExportTraceServiceRequest per line. A line still being written
// is left for the next read.
func readSpans(t *testing.T, path, trace string) map[string]span {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	spans := map[string]span{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var req struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string `json:"traceId"`
						SpanID       string `json:"spanId"`
						ParentSpanID string `json:"parentSpanId"`
						Name         string `json:"name"`
						Kind         int    `json:"kind"`
						Start        uint64 `json:"startTimeUnixNano,string"`
						Attributes   []struct {
							Key   string         `json:"key"`
							Value map[string]any `json:"value"`
						} `json:"attributes"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			continue // a partial last line
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if !strings.EqualFold(s.TraceID, trace) {
						continue
					}
					attrs := map[string]string{}
					for _, a := range s.Attributes {
						for _, v := range a.Value {
							attrs[a.Key] = fmt.Sprint(v)
						}
					}
					spans[s.SpanID] = span{ID: s.SpanID, Parent: s.ParentSpanID, Name: s.Name, Kind: s.Kind, Start: s.Start, Attrs: attrs}
				}
			}
		}
	}
	return spans
}

func hasSpan(spans map[string]span, name string) bool {
	for _, s := range spans {
		if s.Name == name {
			return true
		}
	}
	return false
}

// only returns the one span named name, which must have parent as its
// parent unless parent is "".
func only(t *testing.T, spans map[string]span, name, parent string) span {
	t.Helper()
	var found []span
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %q, want 1; spans:\n%s", len(found), name, tree(spans))
	}
	if parent != "" && found[0].Parent != parent {
		t.Errorf("%s's parent is %s (%s), want %s (%s)", name, found[0].Parent, spans[found[0].Parent].Name, parent, spans[parent].Name)
	}
	return found[0]
}

func names(spans map[string]span) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

// tree draws the spans from their roots, each one's children in the order
// they started, for the log.
func tree(spans map[string]span) string {
	children := map[string][]span{}
	for _, s := range spans {
		p := s.Parent
		if _, ok := spans[p]; !ok {
			p = ""
		}
		children[p] = append(children[p], s)
	}
	var b strings.Builder
	var draw func(parent string, depth int)
	draw = func(parent string, depth int) {
		kids := children[parent]
		sort.Slice(kids, func(i, j int) bool { return kids[i].Start < kids[j].Start })
		for _, s := range kids {
			fmt.Fprintf(&b, "%s%s %s\n", strings.Repeat("  ", depth), s.Name, s.ID)
			draw(s.ID, depth+1)
		}
	}
	draw("", 0)
	return b.String()
}

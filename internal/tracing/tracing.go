// Package tracing sets up OpenTelemetry traces for the provider: one trace
// per event, joined to Keptn's when the triggered event carries a W3C
// traceparent (the CloudEvents distributed-tracing extension, which
// go-utils' sdk-go client writes), exported with OTLP over HTTP.
//
// It is configured only by the standard OTEL_* variables. Tracing is on
// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set and OTEL_SDK_DISABLED is not true; the exporter and the batch span
// processor read the rest (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// OTEL_BSP_SCHEDULE_DELAY, …), the resource OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES. Otherwise the Tracing is off: its tracer is the
// no-op one, Transport returns the round tripper it is given, and nothing
// is exported or allocated for traces.
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName names the provider's tracer.
const ScopeName = "github.com/keptn-action-provider/action-provider"

// Span attribute keys; the Keptn ones are named as on the events.
const (
	KeptnContext = attribute.Key("shkeptncontext")
	TriggeredID  = attribute.Key("triggeredid")
	Action       = attribute.Key("action")
	Target       = attribute.Key("target")
	Result       = attribute.Key("result")
	Status       = attribute.Key("status")
)

// Tracing is the provider's tracer provider, tracer and propagator. The
// zero value and Off() are off. Pass it down from the composition root;
// there is no global one.
type Tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	sdk      *sdktrace.TracerProvider // nil when off
}

// Off is tracing turned off: the no-op tracer.
func Off() *Tracing {
	p := noop.NewTracerProvider()
	return &Tracing{provider: p, tracer: p.Tracer(ScopeName)}
}

// Enabled says whether the OTEL_* variables, read through lookup, turn
// tracing on.
func Enabled(lookup func(string) (string, bool)) bool {
	if v, _ := lookup("OTEL_SDK_DISABLED"); strings.EqualFold(strings.TrimSpace(v), "true") {
		return false
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if v, _ := lookup(name); strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// New returns Off() unless Enabled(lookup); then a tracer provider that
// batches spans to the OTLP/HTTP exporter, which reads its settings from
// the process environment. version is the provider's, for the resource.
func New(ctx context.Context, lookup func(string) (string, bool), version string) (*Tracing, error) {
	if !Enabled(lookup) {
		return Off(), nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Default first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, read
	// by resource.Default, override the name given here.
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName("action-provider"), semconv.ServiceVersion(version)),
		resource.Default(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return &Tracing{provider: sdk, tracer: sdk.Tracer(ScopeName), sdk: sdk}, nil
}

// On says whether spans are recorded and exported.
func (t *Tracing) On() bool { return t != nil && t.sdk != nil }

// Provider is the tracer provider, the no-op one when off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil || t.provider == nil {
		return noop.NewTracerProvider()
	}
	return t.provider
}

// Tracer is the provider's tracer, the no-op one when off.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil || t.tracer == nil {
		return noop.NewTracerProvider().Tracer(ScopeName)
	}
	return t.tracer
}

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx's deadline. It does nothing when off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.On() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// Transport wraps rt so that a request made within an event's trace (its
// context has a recording span) is a client span, which carries the
// traceparent header onward. Requests outside any trace (heartbeats, the
// ledger's sweeps, watches) go straight to rt: they would each be a trace
// of their own. When off it returns rt itself: nothing is paid per
// request. A nil rt means http.DefaultTransport.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.On() {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &inTrace{plain: rt, traced: otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(propagation.TraceContext{}),
	)}
}

type inTrace struct{ plain, traced http.RoundTripper }

func (rt *inTrace) RoundTrip(r *http.Request) (*http.Response, error) {
	if trace.SpanFromContext(r.Context()).IsRecording() {
		return rt.traced.RoundTrip(r)
	}
	return rt.plain.RoundTrip(r)
}

// Child starts a span named name under ctx's span, with that span's tracer
// provider, so that a package deep down needs no Tracing of its own. When
// ctx's span is not recording (tracing is off, or the trace was not
// sampled) it returns ctx and a no-op span without allocating.
func Child(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noopSpan
	}
	return parent.TracerProvider().Tracer(ScopeName).Start(ctx, name, opts...)
}

// End ends span, recording err, if any, as its error status.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Start starts a span named name under ctx's span. When off it returns ctx
// and a no-op span without allocating; callers set attributes only when
// span.IsRecording().
func (t *Tracing) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !t.On() {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, opts...)
}

var noopSpan = trace.SpanFromContext(context.Background()) // immutable no-op span

// Extract returns ctx with the remote span context that traceparent and
// tracestate (W3C Trace Context) name; ctx itself when they are empty or
// invalid, or tracing is off.
func (t *Tracing) Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	if !t.On() || traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, &carrier{traceparent: traceparent, tracestate: tracestate})
}

// Inject returns the W3C traceparent and tracestate of the span context
// sc; empty when it is not valid.
func Inject(sc trace.SpanContext) (traceparent, tracestate string) {
	if !sc.IsValid() {
		return "", ""
	}
	c := carrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), &c)
	return c.traceparent, c.tracestate
}

// carrier is a propagation.TextMapCarrier of the two W3C fields only.
type carrier struct{ traceparent, tracestate string }

func (c *carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.traceparent = value
	case "tracestate":
		c.tracestate = value
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

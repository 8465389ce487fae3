// Package receiver is the HTTP endpoint the Keptn distributor POSTs
// action.triggered events to. It answers before any action runs, and is
// shaped by how the distributor of Keptn 1.4.5 sends:
//
//   - It forwards one event at a time, so a slow answer holds up every
//     other event; and it gives all the attempts at one event a single 5 s
//     context, so an answer later than that loses the event (it is
//     abandoned, never re-POSTed).
//   - It re-POSTs a non-2xx answer up to 3 times, about 0.75, 1.5 and
//     2.25 s apart, within that same 5 s, and ignores Retry-After.
//   - It treats a refused connection or a timeout as delivered.
//
// So an event that can never be accepted (malformed, too large, not
// answerable) gets a 2xx whose body says why: a 4xx would only be re-POSTed
// three times and hold the distributor's single lane for seconds. And a
// full queue is waited out for up to QueueWait, well under 5 s, before the
// event is refused with 503, which the distributor does retry.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/tracing"
)

// Receiver is an http.Handler for triggered events.
type Receiver struct {
	Submitter intake.Submitter
	// MaxBodyBytes bounds a request body; a larger one is rejected.
	MaxBodyBytes int64
	// QueueWait is how long an event waits for room in a full queue before
	// it is refused with 503; 0 means DefaultQueueWait.
	QueueWait time.Duration
	Log       logrus.FieldLogger
	Metrics   *metrics.Metrics
	// Tracing makes a span of each POST, under the event's traceparent,
	// that the event's spans go under; nil is off.
	Tracing *tracing.Tracing
}

// DefaultQueueWait leaves the distributor time, within its 5 s, to re-POST
// an event refused as busy, and for that POST to wait as long again.
const DefaultQueueWait = 1500 * time.Millisecond

// Rejected starts the body of a 2xx answer to an event that was not
// accepted and never will be.
const Rejected = "rejected: "

// ServeHTTP answers:
//
//	202 accepted: the action will run
//	200 ignored: an action no handler is registered for, or a duplicate
//	200 "rejected: <reason>": a malformed, incomplete, oversized or
//	    unanswerable event, which no retry can mend
//	405 not a POST
//	503 the queue stayed full for QueueWait, or the provider is shutting
//	    down: retry later
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			rc.reject(w, metrics.TooLarge, "", fmt.Sprintf("body larger than %d bytes (MAX_BODY_BYTES)", rc.MaxBodyBytes))
			return
		}
		rc.reject(w, metrics.Invalid, "", "could not read body: "+err.Error())
		return
	}
	var began time.Time
	if rc.Tracing.On() {
		began = time.Now()
	}
	t, err := keptnevent.Decode(r.Header, body)
	ctx, span := rc.trace(r, t, began, err)
	defer span.End()
	if err != nil {
		var invalid *keptnevent.InvalidError
		id := ""
		if errors.As(err, &invalid) {
			id = invalid.ID
		}
		rc.reject(w, metrics.Invalid, id, err.Error())
		return
	}
	wait := rc.QueueWait
	if wait <= 0 {
		wait = DefaultQueueWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	received := rc.Metrics.EventsReceived.WithLabelValues
	disposition := rc.Submitter.Submit(ctx, t)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("disposition", dispositions[disposition]))
	}
	switch disposition {
	case intake.Accepted:
		received(keptnevent.TriggeredType, metrics.Accepted).Inc()
		answer(w, http.StatusAccepted, "accepted")
	case intake.Unknown:
		received(keptnevent.TriggeredType, metrics.UnknownAction).Inc()
		answer(w, http.StatusOK, fmt.Sprintf("ignored: no handler for action %q", t.Data.Action.Action))
	case intake.Duplicate:
		received(keptnevent.TriggeredType, metrics.Duplicate).Inc()
		answer(w, http.StatusOK, "ignored: duplicate of an accepted event")
	case intake.Unanswerable:
		// Logged by the lifecycle with the event's names.
		received(keptnevent.TriggeredType, metrics.Unanswerable).Inc()
		answer(w, http.StatusOK, Rejected+"its finished event would be larger than MAX_EVENT_BYTES; nothing is sent for it")
	case intake.Busy:
		received(keptnevent.TriggeredType, metrics.Busy).Inc()
		w.Header().Set("Retry-After", "1")
		answer(w, http.StatusServiceUnavailable, "busy: too many actions queued; retry later")
	case intake.Draining:
		received(keptnevent.TriggeredType, metrics.Draining).Inc()
		answer(w, http.StatusServiceUnavailable, "shutting down; retry on another replica")
	}
}

// dispositions name intake's dispositions on the receive span.
var dispositions = map[intake.Disposition]string{
	intake.Accepted: metrics.Accepted, intake.Unknown: metrics.UnknownAction, intake.Duplicate: metrics.Duplicate,
	intake.Busy: metrics.Busy, intake.Draining: metrics.Draining, intake.Unanswerable: metrics.Unanswerable,
}

// trace starts the span of a POST, under the event's traceparent (the
// CloudEvents extension), or the request's when the event has none, and
// the decode span under it, both from began. When tracing is off it
// returns the request's context and a no-op span.
func (rc *Receiver) trace(r *http.Request, t keptnevent.Triggered, began time.Time, decodeErr error) (context.Context, trace.Span) {
	if !rc.Tracing.On() {
		return r.Context(), trace.SpanFromContext(context.Background())
	}
	parent, state := t.TraceParent, t.TraceState
	if parent == "" {
		parent, state = r.Header.Get("traceparent"), r.Header.Get("tracestate")
	}
	ctx := rc.Tracing.Extract(r.Context(), parent, state)
	ctx, span := rc.Tracing.Start(ctx, "receive", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(began),
		trace.WithAttributes(
			tracing.KeptnContext.String(t.KeptnContext),
			tracing.TriggeredID.String(t.ID),
			tracing.Action.String(t.Data.Action.Action),
		))
	_, decode := rc.Tracing.Start(ctx, "decode", trace.WithTimestamp(began))
	tracing.End(decode, decodeErr)
	if decodeErr != nil {
		span.SetStatus(codes.Error, "rejected")
	}
	return ctx, span
}

// reject answers 200 to an event that can never be accepted, with the
// reason in the body, and logs and counts it.
func (rc *Receiver) reject(w http.ResponseWriter, outcome, id, reason string) {
	rc.Metrics.EventsReceived.WithLabelValues("", outcome).Inc()
	rc.Log.WithFields(logrus.Fields{"event_id": id, "outcome": outcome}).Warn("rejected event: " + reason)
	answer(w, http.StatusOK, Rejected+reason)
}

func answer(w http.ResponseWriter, code int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, line+"\n")
}

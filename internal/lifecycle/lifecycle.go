// Package lifecycle is the life of one action.triggered event, from the
// moment it is decoded to the moment its finished event is delivered:
//
//	decode → dedup → queue → claim → started → run → finished
//
// Dedup happens twice: Submit's in-memory window turns away a redelivery
// to this replica while the sender waits; the claim, a record on the
// cluster, turns away one that reached another replica, before anything
// is sent, because Keptn waits for a finished event for every started one.
//
// Submit does the first half while the sender waits for its answer, and
// returns within microseconds; a worker does the rest. Whatever happens
// after a started event was delivered (an error, a panic, a timeout, a
// shutdown), exactly one finished event follows it.
package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/tracing"
)

// Config tunes a Lifecycle.
type Config struct {
	Workers       int
	QueueSize     int
	ActionTimeout time.Duration
	DryRun        bool
	// Tracing makes spans of claim, started, run and finished, under the
	// span the intake's context carries or the event's traceparent; nil
	// is off.
	Tracing *tracing.Tracing
	// Audit gets one line per action that ends here (AUDIT_LOG); nil: none.
	Audit *audit.Stream
}

// Claimer keeps, where every process sees it, which events were taken and
// how far each got, so that a redelivery to another replica is not run
// twice, and an action whose process died still gets its finished event.
// internal/ledger implements it on the cluster.
type Claimer interface {
	// Claim returns false when another process, or this one earlier,
	// took the event.
	Claim(ctx context.Context, triggeredID string) (first bool, err error)
	// Started records, before the started event is sent, what a finished
	// event needs. Finishing records the finished event before it is
	// sent, or fails with ErrTakenOver when another process took
	// the event over; Finished records that it was delivered.
	Started(ctx context.Context, triggeredID string, record []byte) error
	Finishing(ctx context.Context, triggeredID string, finished []byte) error
	Finished(ctx context.Context, triggeredID string) error
	// Heartbeat says this process is alive.
	Heartbeat(ctx context.Context) error
	// Orphans takes over the actions that were started and will never be
	// finished: their process died.
	Orphans(ctx context.Context) ([]Orphan, error)
	// Sweep deletes the records nobody needs any more.
	Sweep(ctx context.Context) (int, error)
}

// Orphan is an action a process started and will never finish: the process
// died. Claimer.Orphans hands it over to this one.
type Orphan struct {
	ID string
	// Record is what Started was given: what a finished event needs.
	Record []byte
	// Finished is the finished event the process was sending when it
	// stopped, when it got that far; empty when it stopped mid-action.
	Finished []byte
	// Replica is the process that started it; Since, when.
	Replica string
	Since   time.Time
}

// ErrTakenOver is what Claimer.Finishing returns when another process took
// the event over as an orphan (this one's heartbeat lapsed, say, under
// load) and reports it: this one must not report it again.
var ErrTakenOver = errors.New("another process took the event over and reports it")

// claimTimeout bounds the claim; the API server answers in milliseconds,
// and the ledger retries transient errors within this.
const claimTimeout = 10 * time.Second

// RecordReserve is how long a record write may still take after deliveries
// were abandoned at shutdown: the write that says a delivered finished
// event was delivered must not be cut short, or another process would send
// it again. The provider keeps it out of SHUTDOWN_FLUSH.
const RecordReserve = 5 * time.Second

// Lifecycle runs handled actions on a bounded pool of workers.
type Lifecycle struct {
	cfg       Config
	registry  *action.Registry
	seen      *dedup.Window
	claims    Claimer // nil: in-memory dedup only
	replier   keptnevent.Replier
	publisher delivery.Publisher
	log       logrus.FieldLogger
	metrics   *metrics.Metrics

	// mu orders Submit's sends against Close's close of queue; closing
	// wakes the Submits waiting for room.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
	queue   chan job
	wg      sync.WaitGroup

	// pending holds the finished events not yet delivered, or delivered and
	// not yet recorded as such, by triggered id; Recover retries them
	// until they are. A process that dies with some leaves them on the
	// cluster, where another process finds them.
	pendingMu sync.Mutex
	pending   map[string]*pendingFinish

	// Actions run under actionCtx and deliveries under deliveryCtx, both
	// set by Start. On shutdown actions are cancelled first, so that their
	// finished events can still go out.
	actionCtx      context.Context
	cancelActions  context.CancelFunc
	deliveryCtx    context.Context
	cancelDelivery context.CancelFunc
}

type job struct {
	event   keptnevent.Triggered
	action  string // canonical name
	handler action.Handler
	log     logrus.FieldLogger
	// parent is the span the event's spans go under; not valid when
	// tracing is off, or the event came with no trace and no intake span.
	parent trace.SpanContext
}

// New returns a Lifecycle; Start sets its workers going. claims may be nil.
func New(cfg Config, registry *action.Registry, seen *dedup.Window, claims Claimer, replier keptnevent.Replier,
	publisher delivery.Publisher, log logrus.FieldLogger, m *metrics.Metrics) *Lifecycle {
	m.QueueCapacity.Set(float64(cfg.QueueSize))
	return &Lifecycle{
		cfg: cfg, registry: registry, seen: seen, claims: claims, replier: replier,
		publisher: publisher, log: log, metrics: m,
		queue: make(chan job, cfg.QueueSize), closing: make(chan struct{}),
		pending: map[string]*pendingFinish{},
	}
}

// Submit decides what becomes of a decoded event and, when it is ours and
// new, queues it. When the queue is full it waits for room until ctx is
// done, and then answers Busy: the sender's deadline, not ours, says how
// long an event may wait to be taken.
func (l *Lifecycle) Submit(ctx context.Context, t keptnevent.Triggered) intake.Disposition {
	log := l.log.WithFields(logrus.Fields{
		"shkeptncontext": t.KeptnContext, "triggeredid": t.ID, "action": t.Data.Action.Action,
	})
	handler, name, ok := l.registry.Lookup(t.Data.Action.Action)
	if !ok {
		log.Debug("no handler for this action; leaving it to other providers")
		return intake.Unknown
	}
	if err := l.replier.Answerable(t); err != nil {
		log.WithError(err).Error("event not answered: its finished event would not fit the size limit, so no started event is sent either")
		return intake.Unanswerable
	}
	if !l.seen.Add(t.ID) {
		log.Info("duplicate delivery of an accepted event; not running it again")
		return intake.Duplicate
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.seen.Forget(t.ID)
		return intake.Draining
	}
	j := job{event: t, action: name, handler: handler, log: log}
	if l.cfg.Tracing.On() {
		j.parent = trace.SpanContextFromContext(ctx)
		if !j.parent.IsValid() {
			j.parent = trace.SpanContextFromContext(l.cfg.Tracing.Extract(ctx, t.TraceParent, t.TraceState))
		}
	}
	select {
	case l.queue <- j:
		l.metrics.QueueDepth.Inc()
		return intake.Accepted
	default:
	}
	waited := time.Now()
	select {
	case l.queue <- j:
		l.metrics.QueueDepth.Inc()
		log.WithField("waited", time.Since(waited).String()).Info("queue was full; the event waited for room")
		return intake.Accepted
	case <-l.closing:
		l.seen.Forget(t.ID)
		return intake.Draining
	case <-ctx.Done():
		// Not accepted after all: a redelivery must count as new.
		l.seen.Forget(t.ID)
		log.WithFields(logrus.Fields{"queue_size": cap(l.queue), "waited": time.Since(waited).String()}).
			Warn("queue stayed full; refusing the event so that the sender retries")
		return intake.Busy
	}
}

// Start sets the workers going. Their contexts keep ctx's values but not its
// cancellation: a signal must not cut a running action short; Cancel and
// Abandon do that, in that order.
func (l *Lifecycle) Start(ctx context.Context) {
	l.actionCtx, l.cancelActions = context.WithCancel(context.WithoutCancel(ctx))
	l.deliveryCtx, l.cancelDelivery = context.WithCancel(context.WithoutCancel(ctx))
	for range l.cfg.Workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for j := range l.queue {
				l.metrics.QueueDepth.Dec()
				l.handle(j)
			}
		}()
	}
}

// Close stops accepting events. Queued events are still handled.
func (l *Lifecycle) Close() {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return
	}
	close(l.closing) // wake the Submits waiting for room, which hold mu
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	close(l.queue)
}

// Cancel cancels running actions and makes queued ones finish without
// running. Each still reports a finished event.
func (l *Lifecycle) Cancel() { l.cancelActions() }

// Abandon cancels actions and gives up on deliveries still being retried;
// those are logged with the whole event as failed.
func (l *Lifecycle) Abandon() {
	l.cancelActions()
	l.cancelDelivery()
}

// Wait blocks until every accepted event has been handled, or ctx is done.
func (l *Lifecycle) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handle is the second half of the lifecycle, on a worker.
func (l *Lifecycle) handle(j job) {
	if l.cfg.Tracing.On() && !j.parent.IsValid() {
		// No trace came with the event: it gets one of its own.
		_, root := l.span(context.Background(), &j, "event")
		defer root.End()
		j.parent = root.SpanContext()
	}
	if !l.claim(j) {
		return
	}
	// The record goes before the started event: a process killed between
	// the two then leaves an action another process reports, rather than
	// a started event no process ever finishes. The cost is that, killed
	// just before sending started, it may be reported finished without one.
	ctx, span := l.span(l.deliveryCtx, &j, "started")
	l.record(j.log, "started", func(ctx context.Context) error {
		return l.claims.Started(ctx, j.event.ID, inFlight(j.event))
	})
	started, err := l.replier.Started(carry(j.event, span))
	if err == nil {
		err = l.publisher.Publish(ctx, started)
	}
	tracing.End(span, err)
	if err != nil {
		// Nothing was started as far as Keptn knows, so nothing may be
		// finished, and production must not change unreported.
		j.log.WithError(err).WithField("event", string(started.Body)).
			Error("started event not delivered; the action was not run")
		l.record(j.log, "finished", func(ctx context.Context) error { return l.claims.Finished(ctx, j.event.ID) })
		return
	}
	l.metrics.ActionsInFlight.Inc()
	defer l.metrics.ActionsInFlight.Dec()

	begin := time.Now()
	ctx, span = l.span(l.actionCtx, &j, "run")
	actx, note := audit.WithNote(ctx)
	outcome, err := l.run(actx, j)
	status, result, message := Report(outcome, err)
	elapsed := time.Since(begin)
	if span.IsRecording() {
		span.SetAttributes(tracing.Status.String(string(status)), tracing.Result.String(string(result)))
	}
	tracing.End(span, err)
	if werr := l.cfg.Audit.Finished(audit.Finish{Event: j.event, Action: j.action, Status: string(status), Result: string(result),
		Message: message, Duration: elapsed, Err: err, Note: note, DryRun: l.cfg.DryRun}); werr != nil {
		j.log.WithError(werr).Warn("audit line not written")
	}

	l.metrics.Actions.WithLabelValues(j.action, string(status), string(result)).Inc()
	l.metrics.ActionDuration.WithLabelValues(j.action).Observe(elapsed.Seconds())
	if r := refusal(err); r != nil {
		l.metrics.Refusals.WithLabelValues(r.Rule).Inc()
	}

	log := j.log.WithFields(logrus.Fields{
		"status": status, "result": result, "duration": elapsed.String(), "message": message,
	})
	ctx, span = l.span(l.deliveryCtx, &j, "finished")
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(tracing.Status.String(string(status)), tracing.Result.String(string(result)))
	}
	finished, err := l.replier.Finished(carry(j.event, span), status, result, message)
	if err != nil {
		// Submit checked that a finished event fits; this cannot happen.
		log.WithError(err).Error("finished event could not be built; Keptn will not learn how the action ended")
		return
	}
	// Record the finished event before sending it. The write fails when
	// another process took the event for an orphan (this one's heartbeat
	// lapsed) and reported it: then it is that process's to report.
	if l.claims != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(l.deliveryCtx), RecordReserve)
		err := l.claims.Finishing(ctx, j.event.ID, finished.Body)
		cancel()
		switch {
		case errors.Is(err, ErrTakenOver):
			log.Warn("another process took this action for an orphan and reports it; not sending a second finished event")
			return
		case err != nil:
			// One finished event too many is better than none.
			log.WithError(err).Warn("could not record the finished event on the cluster; sending it all the same")
		}
	}
	l.finish(ctx, &pendingFinish{event: finished, log: log})
}

// span starts a span of the event's trace under parent's cancellation;
// when tracing is off it returns parent and a no-op span, allocating
// nothing.
func (l *Lifecycle) span(parent context.Context, j *job, name string) (context.Context, trace.Span) {
	if !l.cfg.Tracing.On() {
		return parent, trace.SpanFromContext(context.Background())
	}
	ctx := parent
	if j.parent.IsValid() {
		ctx = trace.ContextWithSpanContext(parent, j.parent)
	}
	return l.cfg.Tracing.Start(ctx, name, trace.WithAttributes(
		tracing.KeptnContext.String(j.event.KeptnContext),
		tracing.TriggeredID.String(j.event.ID),
		tracing.Action.String(j.event.Data.Action.Action),
	))
}

// carry puts span's traceparent on the event it answers t with, so that
// Keptn's trace goes on from this one; t's own is kept when span is not
// recording.
func carry(t keptnevent.Triggered, span trace.Span) keptnevent.Triggered {
	if span.IsRecording() {
		t.TraceParent, t.TraceState = tracing.Inject(span.SpanContext())
	}
	return t
}

// pendingFinish is a finished event on its way: delivered, then recorded.
type pendingFinish struct {
	event     keptnevent.Outgoing
	delivered bool
	log       logrus.FieldLogger
}

// finish delivers a finished event and records that it was delivered. What
// fails is kept for Recover to retry; the record on the cluster keeps it
// for another process if this one dies first.
func (l *Lifecycle) finish(ctx context.Context, p *pendingFinish) bool {
	if !p.delivered {
		if err := l.publisher.Publish(ctx, p.event); err != nil {
			p.log.WithError(err).WithField("event", string(p.event.Body)).
				Error("finished event not delivered yet; it is tried again every HEARTBEAT_PERIOD, and by another replica if this one stops")
			l.keep(p)
			return false
		}
		p.delivered = true
	}
	if l.claims != nil {
		// Not cut short by a shutdown: a delivered event whose record
		// still says "finishing" would be sent again by another process.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RecordReserve)
		err := l.claims.Finished(wctx, p.event.TriggeredID)
		cancel()
		if err != nil {
			p.log.WithError(err).Warn("finished event delivered, but not yet recorded as such; trying again every HEARTBEAT_PERIOD")
			l.keep(p)
			return false
		}
	}
	l.forget(p.event.TriggeredID)
	p.log.Info("action finished")
	return true
}

func (l *Lifecycle) keep(p *pendingFinish) {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	l.pending[p.event.TriggeredID] = p
}

func (l *Lifecycle) forget(id string) {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	delete(l.pending, id)
}

// Pending is how many finished events wait to be delivered or recorded.
func (l *Lifecycle) Pending() int {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	return len(l.pending)
}

// record writes to the cluster's record of the event, if one is kept. A
// failure costs only recovery after a crash, so it is logged, not fatal.
// The write is not cut short by a shutdown, only bounded.
func (l *Lifecycle) record(log logrus.FieldLogger, state string, write func(context.Context) error) {
	if l.claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.deliveryCtx), RecordReserve)
	defer cancel()
	if err := write(ctx); err != nil {
		log.WithError(err).WithField("state", state).Warn("could not update the event's record on the cluster")
	}
}

// inFlight is what a finished event needs of a triggered one, as kept on
// the cluster while its action runs: the value and the problem are left
// out, they are large and a finished event does not carry them.
func inFlight(t keptnevent.Triggered) []byte {
	t.Value = nil
	t.Data.Action.Value = nil
	t.Data.Problem = keptnv2.ProblemDetails{}
	b, _ := json.Marshal(t) // plain strings and maps: cannot fail
	return b
}

// Beat says this process is alive. The provider calls it periodically, on
// its own, so that a slow look for orphans never delays it: a late
// heartbeat makes another process take this one's actions for orphans.
func (l *Lifecycle) Beat(ctx context.Context) {
	if l.claims == nil {
		return
	}
	if err := l.claims.Heartbeat(ctx); err != nil {
		l.log.WithError(err).Warn("heartbeat not recorded; other replicas may take this one's actions for orphans")
	}
}

// Sweep deletes the cluster's records that nobody needs any more.
func (l *Lifecycle) Sweep(ctx context.Context) {
	if l.claims == nil {
		return
	}
	n, err := l.claims.Sweep(ctx)
	if err != nil {
		l.log.WithError(err).Warn("could not clean up old records; trying again later")
	}
	if n > 0 {
		l.log.WithField("deleted", n).Debug("old records cleaned up")
	}
}

// Recover retries the finished events not yet delivered or recorded, then
// reports the actions whose process died: each gets the finished event
// that process was sending, or, when it died mid-action, one that says
// errored, since nobody knows how far it got. Everything is sent under
// ctx: the provider calls it periodically, and cancels ctx at shutdown.
func (l *Lifecycle) Recover(ctx context.Context) {
	l.pendingMu.Lock()
	retry := make([]*pendingFinish, 0, len(l.pending))
	for _, p := range l.pending {
		retry = append(retry, p)
	}
	l.pendingMu.Unlock()
	for _, p := range retry {
		if ctx.Err() != nil {
			return
		}
		l.finish(ctx, p)
	}
	if l.claims == nil {
		return
	}
	orphans, err := l.claims.Orphans(ctx)
	if err != nil {
		l.log.WithError(err).Warn("could not look for orphaned actions")
	}
	for _, o := range orphans {
		p, ok := l.adopt(o)
		if !ok {
			continue
		}
		if l.finish(ctx, p) {
			p.log.Warn("reported an action orphaned by a replica that stopped")
		}
	}
}

// adopt turns an orphan into the finished event to send for it.
func (l *Lifecycle) adopt(o Orphan) (*pendingFinish, bool) {
	var t keptnevent.Triggered
	if err := json.Unmarshal(o.Record, &t); err != nil || t.ID == "" {
		l.log.WithField("triggeredid", o.ID).WithError(err).Error("orphaned action has no usable record; its finished event cannot be sent")
		return nil, false
	}
	log := l.log.WithFields(logrus.Fields{
		"shkeptncontext": t.KeptnContext, "triggeredid": t.ID, "action": t.Data.Action.Action, "replica": o.Replica,
	})
	if len(o.Finished) > 0 {
		// It got as far as its finished event: send that one, as it was.
		l.metrics.OrphansRecovered.Inc()
		return &pendingFinish{log: log, event: keptnevent.Outgoing{
			Type: keptnevent.FinishedType, Body: o.Finished,
			KeptnContext: t.KeptnContext, TriggeredID: t.ID, Action: t.Data.Action.Action,
		}}, true
	}
	message := fmt.Sprintf("interrupted: replica %s stopped (killed or crashed) while running this action, started at %s; "+
		"it may or may not have changed the target: check it before retrying", o.Replica, o.Since.UTC().Format(time.RFC3339))
	finished, err := l.replier.Finished(t, keptnv2.StatusErrored, keptnv2.ResultFailed, message)
	if err != nil {
		log.WithError(err).Error("finished event of an orphaned action could not be built")
		return nil, false
	}
	l.metrics.Actions.WithLabelValues(t.Data.Action.Action, string(keptnv2.StatusErrored), string(keptnv2.ResultFailed)).Inc()
	l.metrics.OrphansRecovered.Inc()
	return &pendingFinish{event: finished, log: log}, true
}

// claim takes the event on the cluster. If the record cannot be written
// (the API server is unreachable, or RBAC forbids it), the event is run
// anyway: the in-memory window still holds, and refusing every action
// because bookkeeping failed would be the worse failure. But a provider
// that gave up on its deliveries at shutdown takes nothing more: it could
// answer nothing.
func (l *Lifecycle) claim(j job) bool {
	if l.claims == nil {
		return true
	}
	if l.deliveryCtx.Err() != nil {
		j.log.Error("not run and not answered: the provider gave up on deliveries at shutdown before the event was claimed")
		return false
	}
	// Under the delivery context, not the actions': cancelling actions at
	// shutdown must not turn a claim into "run anyway" for an event that
	// another replica may own.
	ctx, span := l.span(l.deliveryCtx, &j, "claim")
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	first, err := l.claims.Claim(ctx, j.event.ID)
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("first", first))
	}
	tracing.End(span, err)
	switch {
	case err != nil && l.deliveryCtx.Err() != nil:
		j.log.WithError(err).Error("not run and not answered: the provider gave up on deliveries at shutdown while claiming the event")
		return false
	case err != nil:
		j.log.WithError(err).Warn("could not record the event on the cluster; running it without cross-replica dedup")
		return true
	case !first:
		l.metrics.EventsReceived.WithLabelValues(keptnevent.TriggeredType, metrics.ClaimedElsewhere).Inc()
		j.log.Info("event already taken by another replica; sending nothing")
		return false
	}
	return true
}

// run calls the handler under the action's deadline, and turns a panic, a
// timeout or a shutdown into an error a person can read.
func (l *Lifecycle) run(parent context.Context, j job) (out action.Outcome, err error) {
	if parent.Err() != nil {
		return action.Outcome{}, errors.New("not run: the provider shut down before the action could start")
	}
	ctx, cancel := context.WithTimeout(parent, l.cfg.ActionTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			j.log.WithField("stack", string(debug.Stack())).Errorf("action panicked: %v", r)
			err = fmt.Errorf("action %s crashed (panic: %v); see the provider's log", j.action, r)
		}
	}()
	out, err = j.handler.Run(ctx, j.event.Request(l.cfg.DryRun))
	switch {
	case err == nil:
		return out, nil
	case isRefusal(err):
		return out, err // the refusal is the whole story
	case parent.Err() != nil:
		return out, fmt.Errorf("interrupted: the provider shut down while the action ran: %w", err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, fmt.Errorf("timed out after %s: %w", l.cfg.ActionTimeout, err)
	default:
		return out, err
	}
}

// Report maps a handler's answer onto Keptn's status and result. A refusal
// is the provider doing its job, so it is "succeeded" with result "fail";
// "errored" means the provider could not do its job.
func Report(out action.Outcome, err error) (keptnv2.StatusType, keptnv2.ResultType, string) {
	if isRefusal(err) {
		return keptnv2.StatusSucceeded, keptnv2.ResultFailed, err.Error()
	}
	if err != nil {
		return keptnv2.StatusErrored, keptnv2.ResultFailed, err.Error()
	}
	result := out.Result
	if result == "" {
		result = keptnv2.ResultPass
	}
	return keptnv2.StatusSucceeded, result, out.Message
}

func isRefusal(err error) bool { return refusal(err) != nil }

// refusal is the rule's refusal err holds, or nil.
func refusal(err error) *action.Refusal {
	var r *action.Refusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

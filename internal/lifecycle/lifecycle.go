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

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
)

// Disposition is what Submit decided about an event.
type Disposition int

const (
	// Accepted: queued; it will get a started and a finished event.
	Accepted Disposition = iota
	// Unknown: no handler for the action. Another provider may own it, so
	// it gets no event at all.
	Unknown
	// Duplicate: the same triggered id was accepted recently.
	Duplicate
	// Busy: the queue is full; the sender should retry later.
	Busy
	// Draining: the provider is shutting down and accepts nothing new.
	Draining
)

// Config tunes a Lifecycle.
type Config struct {
	Workers       int
	QueueSize     int
	ActionTimeout time.Duration
	DryRun        bool
}

// Claimer keeps, where every replica sees it, which events were taken and
// which of them are running, so that a redelivery to another replica is
// not run twice, and an action whose replica died still gets its finished
// event. internal/ledger implements it on the cluster.
type Claimer interface {
	// Claim returns false when another replica, or this one earlier, took
	// the event.
	Claim(ctx context.Context, triggeredID string) (first bool, err error)
	// Started records that the started event was sent, with what a
	// finished event needs; Finished, that the finished one was.
	Started(ctx context.Context, triggeredID string, record []byte) error
	Finished(ctx context.Context, triggeredID string) error
	// Holds reports whether this replica still holds the event, or
	// another took it over and reported it.
	Holds(ctx context.Context, triggeredID string) (bool, error)
	// Heartbeat says this replica is alive.
	Heartbeat(ctx context.Context) error
	// Orphans takes over the actions that were started and will never be
	// finished: their replica died, or this one restarted.
	Orphans(ctx context.Context, running func(triggeredID string) bool) ([]ledger.Orphan, error)
}

// claimTimeout bounds the claim; the API server answers in milliseconds.
const claimTimeout = 10 * time.Second

// Lifecycle runs handled actions on a bounded pool of workers.
type Lifecycle struct {
	cfg      Config
	registry *action.Registry
	seen     *dedup.Window
	claims   Claimer // nil: in-memory dedup only
	// running holds the ids of the events whose action runs here, between
	// started and finished, so that Recover does not take them for orphans.
	running   sync.Map
	replier   keptnevent.Replier
	publisher delivery.Publisher
	log       logrus.FieldLogger
	metrics   *metrics.Metrics

	// mu orders Submit's sends against Close's close of queue.
	mu     sync.RWMutex
	closed bool
	queue  chan job
	wg     sync.WaitGroup

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
}

// New returns a Lifecycle; Start sets its workers going. claims may be nil.
func New(cfg Config, registry *action.Registry, seen *dedup.Window, claims Claimer, replier keptnevent.Replier,
	publisher delivery.Publisher, log logrus.FieldLogger, m *metrics.Metrics) *Lifecycle {
	return &Lifecycle{
		cfg: cfg, registry: registry, seen: seen, claims: claims, replier: replier,
		publisher: publisher, log: log, metrics: m,
		queue: make(chan job, cfg.QueueSize),
	}
}

// Submit decides what becomes of a decoded event and, when it is ours and
// new, queues it. It never blocks.
func (l *Lifecycle) Submit(t keptnevent.Triggered) Disposition {
	log := l.log.WithFields(logrus.Fields{
		"shkeptncontext": t.KeptnContext, "triggeredid": t.ID, "action": t.Data.Action.Action,
	})
	handler, name, ok := l.registry.Lookup(t.Data.Action.Action)
	if !ok {
		log.Debug("no handler for this action; leaving it to other providers")
		return Unknown
	}
	if !l.seen.Add(t.ID) {
		log.Info("duplicate delivery of an accepted event; not running it again")
		return Duplicate
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.seen.Forget(t.ID)
		return Draining
	}
	select {
	case l.queue <- job{event: t, action: name, handler: handler, log: log}:
		l.metrics.QueueDepth.Inc()
		return Accepted
	default:
		// Not accepted after all: a redelivery must count as new.
		l.seen.Forget(t.ID)
		log.WithField("queue_size", cap(l.queue)).Warn("queue full; refusing the event so that the sender retries")
		return Busy
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
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
	if !l.claim(j) {
		return
	}
	// Running here from now on, so that Recover never takes this event's
	// record for another replica's orphan.
	l.running.Store(j.event.ID, true)
	defer l.running.Delete(j.event.ID)
	// The record goes before the started event: a replica killed between
	// the two then leaves an action another replica reports, rather than
	// a started event no replica ever finishes. The cost is that, killed
	// just before sending started, it may be reported finished without one.
	l.record(j, func(ctx context.Context) error { return l.claims.Started(ctx, j.event.ID, inFlight(j.event)) })
	started, err := l.replier.Started(j.event)
	if err == nil {
		err = l.publisher.Publish(l.deliveryCtx, started)
	}
	if err != nil {
		// Nothing was started as far as Keptn knows, so nothing may be
		// finished, and production must not change unreported.
		j.log.WithError(err).WithField("event", string(started.Body)).
			Error("started event not delivered; the action was not run")
		l.record(j, func(ctx context.Context) error { return l.claims.Finished(ctx, j.event.ID) })
		return
	}
	l.metrics.ActionsInFlight.Inc()
	defer l.metrics.ActionsInFlight.Dec()

	begin := time.Now()
	outcome, err := l.run(l.actionCtx, j)
	status, result, message := Report(outcome, err)
	elapsed := time.Since(begin)

	l.metrics.Actions.WithLabelValues(j.action, string(status), string(result)).Inc()
	l.metrics.ActionDuration.WithLabelValues(j.action).Observe(elapsed.Seconds())

	log := j.log.WithFields(logrus.Fields{
		"status": status, "result": result, "duration": elapsed.String(), "message": message,
	})
	if !l.holds(j) {
		log.Warn("another replica took this action for an orphan and reported it interrupted; not sending a second finished event")
		return
	}
	finished, err := l.replier.Finished(j.event, status, result, message)
	if err == nil {
		err = l.publisher.Publish(l.deliveryCtx, finished)
	}
	if err != nil {
		log.WithError(err).WithField("event", string(finished.Body)).
			Error("finished event not delivered; Keptn will not learn how the action ended")
		return
	}
	l.record(j, func(ctx context.Context) error { return l.claims.Finished(ctx, j.event.ID) })
	log.Info("action finished")
}

// holds reports whether the finished event is still this replica's to
// send. When the record cannot be read, it is: one finished event too many
// is better than none.
func (l *Lifecycle) holds(j job) bool {
	if l.claims == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(l.deliveryCtx, claimTimeout)
	defer cancel()
	mine, err := l.claims.Holds(ctx, j.event.ID)
	if err != nil {
		j.log.WithError(err).Warn("could not read the event's record; sending its finished event")
		return true
	}
	return mine
}

// record writes to the cluster's record of the event, if one is kept. A
// failure costs only recovery after a crash, so it is logged, not fatal.
func (l *Lifecycle) record(j job, write func(context.Context) error) {
	if l.claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.deliveryCtx, claimTimeout)
	defer cancel()
	if err := write(ctx); err != nil {
		j.log.WithError(err).Warn("could not update the event's record on the cluster")
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

// Beat says this replica is alive. The provider calls it periodically, on
// its own, so that a slow look for orphans never delays it: a late
// heartbeat makes another replica take this one's actions for orphans.
func (l *Lifecycle) Beat(ctx context.Context) {
	if l.claims == nil {
		return
	}
	if err := l.claims.Heartbeat(ctx); err != nil {
		l.log.WithError(err).Warn("heartbeat not recorded; other replicas may take this one's actions for orphans")
	}
}

// Recover reports the actions that were started and never finished: each
// gets its finished event, errored, since nobody knows how far it got. The
// provider calls it periodically.
func (l *Lifecycle) Recover(ctx context.Context) {
	if l.claims == nil {
		return
	}
	orphans, err := l.claims.Orphans(ctx, func(id string) bool { _, ok := l.running.Load(id); return ok })
	if err != nil {
		l.log.WithError(err).Warn("could not look for orphaned actions")
	}
	for _, o := range orphans {
		var t keptnevent.Triggered
		if err := json.Unmarshal(o.Record, &t); err != nil || t.ID == "" {
			l.log.WithField("triggeredid", o.ID).WithError(err).Error("orphaned action has no usable record; its finished event cannot be sent")
			continue
		}
		log := l.log.WithFields(logrus.Fields{
			"shkeptncontext": t.KeptnContext, "triggeredid": t.ID, "action": t.Data.Action.Action, "replica": o.Replica,
		})
		message := fmt.Sprintf("interrupted: replica %s stopped (killed or crashed) while running this action, started at %s; "+
			"it may or may not have changed the target: check it before retrying", o.Replica, o.Since.UTC().Format(time.RFC3339))
		finished, err := l.replier.Finished(t, keptnv2.StatusErrored, keptnv2.ResultFailed, message)
		if err == nil {
			err = l.publisher.Publish(l.deliveryCtx, finished)
		}
		if err != nil {
			log.WithError(err).Error("finished event of an orphaned action not delivered")
			continue
		}
		l.metrics.Actions.WithLabelValues(t.Data.Action.Action, string(keptnv2.StatusErrored), string(keptnv2.ResultFailed)).Inc()
		l.record(job{event: t, log: log}, func(ctx context.Context) error { return l.claims.Finished(ctx, t.ID) })
		log.Warn("reported an action orphaned by a replica that stopped")
	}
}

// claim takes the event on the cluster. If the record cannot be written
// (the API server is unreachable, or RBAC forbids it), the event is run
// anyway: the in-memory window still holds, and refusing every action
// because bookkeeping failed would be the worse failure.
func (l *Lifecycle) claim(j job) bool {
	if l.claims == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(l.actionCtx, claimTimeout)
	defer cancel()
	first, err := l.claims.Claim(ctx, j.event.ID)
	switch {
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

func isRefusal(err error) bool {
	var r *action.Refusal
	return errors.As(err, &r)
}

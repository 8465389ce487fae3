// Package natsbus is the provider's direct NATS transport (TRANSPORT=nats):
// what the distributor sidecar does, done in-process, as integrations have
// done since Keptn 0.17, but without go-utils' registration with the
// control plane, which it cannot run without.
//
// Events come in through a queue subscription to
// sh.keptn.event.action.triggered, so that replicas sharing the group split
// the events; started and finished events go out as structured CloudEvents
// on the subject equal to their type, as the distributor publishes them.
// While NATS is away, the connection retries with back-off and buffers what
// is published (up to a bound), so that a finished event of an action that
// ran during the outage is sent after it.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/retry"
)

// Config says where NATS is and how to reach it.
type Config struct {
	URL   string // NATS_URL
	Group string // NATS_QUEUE_GROUP
	// Name names the connection in NATS' monitoring: the pod name.
	Name string
	// Credentials is a .creds file (NATS_CREDENTIALS); CA, Cert and Key
	// are PEM files for TLS (NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY).
	Credentials, CA, Cert, Key string
	// BufferBytes bounds what is kept for publishing while disconnected.
	BufferBytes int
	// PublishBound is how long one publish is retried once the buffer is
	// full (EVENTBROKER_RETRY_TIMEOUT).
	PublishBound time.Duration
}

// Bus is one NATS connection, shared by the intake and the publisher.
type Bus struct {
	nc      *nats.Conn
	cfg     Config
	log     logrus.FieldLogger
	metrics *metrics.Metrics
}

// Connect dials NATS. It does not wait for NATS to be up: the connection
// retries in the background, forever, with back-off and jitter, and the
// provider reports not ready until it is connected.
func Connect(cfg Config, log logrus.FieldLogger, m *metrics.Metrics) (*Bus, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(cfg.BufferBytes),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.WithError(err).Warn("disconnected from NATS; reconnecting, and buffering what is published meanwhile")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.WithField("server", nc.ConnectedUrlRedacted()).Info("reconnected to NATS")
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.WithField("server", nc.ConnectedUrlRedacted()).Info("connected to NATS")
		}),
	}
	if cfg.Credentials != "" {
		opts = append(opts, nats.UserCredentials(cfg.Credentials))
	}
	if cfg.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if cfg.Cert != "" || cfg.Key != "" {
		opts = append(opts, nats.ClientCert(cfg.Cert, cfg.Key))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.URL, err)
	}
	return &Bus{nc: nc, cfg: cfg, log: log, metrics: m}, nil
}

// reconnectDelay backs off from 250ms to 10s, with jitter, so that replicas
// do not all knock at once when NATS comes back.
func reconnectDelay(attempts int) time.Duration {
	d := 250 * time.Millisecond << min(attempts, 6)
	d = min(d, 10*time.Second)
	return d/2 + rand.N(d/2+1)
}

// Connected reports whether the connection is up: the provider's readiness.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Close flushes what is buffered, within ctx, and closes the connection.
func (b *Bus) Close(ctx context.Context) {
	if b.nc.IsConnected() {
		_ = b.nc.FlushWithContext(ctx)
	}
	b.nc.Close()
}

// Publish sends one event to the subject equal to its type, and returns
// nil only once the server has it: a publish only puts the event in the
// client's buffer, where a kill or a shutdown during an outage would lose
// it, so Publish then flushes, which waits for the server's answer to a
// ping sent after the event. While disconnected, the event waits in the
// reconnect buffer and the flush is retried; once the buffer is full, the
// publish itself is retried. Both within PublishBound.
func (b *Bus) Publish(ctx context.Context, ev keptnevent.Outgoing) error {
	published := false
	err := retry.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Bound: b.cfg.PublishBound}.Do(ctx,
		func(ctx context.Context) (bool, error) {
			if !published {
				if err := b.nc.Publish(ev.Type, ev.Body); err != nil {
					// A full reconnect buffer drains once NATS is back; a
					// closed connection does not come back.
					return errors.Is(err, nats.ErrReconnectBufExceeded), err
				}
				published = true
			}
			fctx, cancel := context.WithTimeout(ctx, flushTimeout)
			defer cancel()
			if err := b.nc.FlushWithContext(fctx); err != nil {
				return !b.nc.IsClosed(), fmt.Errorf("confirm delivery: %w", err)
			}
			return false, nil
		}, func(n int, err error) {
			b.log.WithFields(logrus.Fields{
				"shkeptncontext": ev.KeptnContext, "triggeredid": ev.TriggeredID, "action": ev.Action,
				"type": ev.Type, "attempt": n,
			}).WithError(err).Warn("NATS has not confirmed the event yet; retrying")
		})
	outcome := "delivered"
	if err != nil {
		outcome = "failed"
		err = fmt.Errorf("publish %s on NATS: %w", ev.Type, err)
	}
	if b.metrics != nil {
		b.metrics.Deliveries.WithLabelValues(ev.Type, outcome).Inc()
	}
	return err
}

// flushTimeout bounds one wait for the server's confirmation; a wait that
// began while disconnected is given up and begun again.
const flushTimeout = time.Second

// Intake is the queue subscription that feeds triggered events to the
// lifecycle.
type Intake struct {
	bus    *Bus
	submit intake.Submitter
	// stopped ends the wait of a message for room in a full queue, when
	// Stop's own deadline has passed.
	stopped context.Context
	stop    context.CancelFunc

	mu   sync.Mutex
	sub  *nats.Subscription
	done chan struct{}
	// confirmed is set once the server has acknowledged the subscription.
	confirmed atomic.Bool
}

// Intake returns the bus's intake, handing events to submit.
func (b *Bus) Intake(submit intake.Submitter) *Intake {
	stopped, stop := context.WithCancel(context.Background())
	return &Intake{bus: b, submit: submit, done: make(chan struct{}), stopped: stopped, stop: stop}
}

// Listen binds nothing: the connection is the bus's.
func (in *Intake) Listen() error { return nil }

// Serve subscribes and takes events until Stop.
func (in *Intake) Serve() error {
	sub, err := in.bus.nc.QueueSubscribe(keptnevent.TriggeredType, in.bus.cfg.Group, in.handle)
	if err != nil {
		return fmt.Errorf("subscribe to %s in queue group %s: %w", keptnevent.TriggeredType, in.bus.cfg.Group, err)
	}
	in.mu.Lock()
	in.sub = sub
	in.mu.Unlock()
	// Ready only once the server has the subscription: an event published
	// before that would reach no replica, and NATS core keeps nothing.
	for in.bus.nc.Flush() != nil {
		select {
		case <-in.done:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	in.confirmed.Store(true)
	<-in.done
	return nil
}

// subscribed reports whether Serve has subscribed.
func (in *Intake) subscribed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sub != nil
}

// Stop unsubscribes, so that the group's other replicas get the events
// from now on, and lets the messages already received be handed over.
func (in *Intake) Stop(ctx context.Context) error {
	in.mu.Lock()
	sub := in.sub
	in.mu.Unlock()
	defer close(in.done)
	defer in.stop()
	if sub == nil {
		return nil
	}
	// Messages waiting for room in the queue give up when ctx does.
	stopWaiting := context.AfterFunc(ctx, in.stop)
	defer stopWaiting()
	if err := sub.Drain(); err != nil {
		return fmt.Errorf("drain the NATS subscription: %w", err)
	}
	for sub.IsValid() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain the NATS subscription: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Describe names the intake for the provider's "ready" log line.
func (in *Intake) Describe() string {
	return fmt.Sprintf("nats %s, subject %s, queue group %s", in.bus.cfg.URL, keptnevent.TriggeredType, in.bus.cfg.Group)
}

// Ready reports whether events can arrive: connected, and the server has
// the subscription.
func (in *Intake) Ready() bool { return in.confirmed.Load() && in.bus.Connected() }

// handle decodes one message and hands it over. NATS core cannot take a
// message back, so a full queue is waited out here, which slows this
// subscription down rather than losing the event; only a provider that is
// shutting down, or cannot answer the event, drops one, and says so.
func (in *Intake) handle(m *nats.Msg) {
	log := in.bus.log
	t, err := keptnevent.Decode(http.Header{"Content-Type": []string{"application/cloudevents+json"}}, m.Data)
	if err != nil {
		log.WithError(err).Warn("invalid event on NATS; ignored")
		if in.bus.metrics != nil {
			in.bus.metrics.EventsReceived.WithLabelValues(keptnevent.TriggeredType, metrics.Invalid).Inc()
		}
		return
	}
	d := in.submit.Submit(in.stopped, t)
	if in.bus.metrics != nil {
		in.bus.metrics.EventsReceived.WithLabelValues(keptnevent.TriggeredType, outcome(d)).Inc()
	}
	switch d {
	case intake.Draining, intake.Busy:
		log.WithFields(logrus.Fields{"triggeredid": t.ID, "shkeptncontext": t.KeptnContext}).
			Error("event arrived while shutting down; NATS cannot take it back, so it is not run")
	}
}

func outcome(d intake.Disposition) string {
	switch d {
	case intake.Accepted:
		return metrics.Accepted
	case intake.Unknown:
		return metrics.UnknownAction
	case intake.Duplicate:
		return metrics.Duplicate
	case intake.Unanswerable:
		return metrics.Unanswerable
	case intake.Busy:
		return metrics.Busy
	default:
		return metrics.Draining
	}
}

// Package provider assembles the running service: the event receiver, the
// lifecycle's workers, delivery to the event broker, the health and metrics
// endpoints, and the order in which they stop.
package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/receiver"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// Provider is the assembled service. Listen, then Serve.
type Provider struct {
	cfg       config.Config
	log       logrus.FieldLogger
	lifecycle *lifecycle.Lifecycle
	intake    Intake
	http      *httpIntake // the intake in HTTP mode, else nil
	ops       *http.Server
	opsLn     net.Listener
	ready     atomic.Bool
}

// Deps are what a provider is assembled from besides its configuration.
type Deps struct {
	// Registry holds the actions served.
	Registry *action.Registry
	// Claims records taken events across replicas; nil means in-memory
	// dedup only.
	Claims lifecycle.Claimer
	// Masker hides secrets in finished messages; nil hides none.
	Masker *secret.Masker
	Log    logrus.FieldLogger
	// Prometheus is where the metrics are registered and served from.
	Prometheus *prometheus.Registry
	// Metrics are the collectors, when something made before the provider
	// (a NATS transport) records into them too; nil registers new ones on
	// Prometheus.
	Metrics *metrics.Metrics
	// Publisher sends the events; nil means HTTP to cfg.EventBroker.
	Publisher delivery.Publisher
	// Intake, when set, is where triggered events come from instead of the
	// HTTP receiver the distributor POSTs to; it is given the lifecycle to
	// submit them to.
	Intake func(receiver.Submitter) Intake
}

// Intake takes triggered events in and submits them to the lifecycle.
type Intake interface {
	// Serve takes events until Stop, and returns only then or on failure.
	Serve() error
	// Stop takes no new events; those already taken are submitted.
	Stop(ctx context.Context) error
	// Ready reports whether events can arrive.
	Ready() bool
	// Describe names the intake for the log: where events come from.
	Describe() string
}

// New assembles a provider.
func New(cfg config.Config, d Deps) *Provider {
	registry, claims, log, reg, publisher := d.Registry, d.Claims, d.Log, d.Prometheus, d.Publisher
	m := d.Metrics
	if m == nil {
		m = metrics.New(reg)
	}
	if publisher == nil {
		publisher = &delivery.HTTP{
			URL:     cfg.EventBroker,
			Client:  delivery.NewClient(cfg.Workers),
			Backoff: retry.Backoff{Bound: cfg.DeliveryRetryTime},
			Metrics: m,
			Log:     log,
		}
	}
	lc := lifecycle.New(
		lifecycle.Config{Workers: cfg.Workers, QueueSize: cfg.QueueSize, ActionTimeout: cfg.ActionTimeout, DryRun: cfg.DryRun},
		registry,
		dedup.New(cfg.DedupTTL, cfg.DedupCapacity, nil),
		claims,
		keptnevent.Replier{Source: cfg.EventSource, MaxBytes: cfg.MaxEventBytes, Masker: d.Masker},
		publisher, log, m,
	)
	p := &Provider{cfg: cfg, log: log, lifecycle: lc}

	if d.Intake != nil {
		p.intake = d.Intake(lc)
	} else {
		events := http.NewServeMux()
		events.Handle(cfg.RcvPath, &receiver.Receiver{
			Submitter: lc, MaxBodyBytes: cfg.MaxBodyBytes, QueueWait: cfg.QueueWait, Log: log, Metrics: m,
		})
		p.http = &httpIntake{srv: newServer(events), path: cfg.RcvPath}
		p.intake = p.http
	}

	ops := http.NewServeMux()
	ops.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ops.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() || !p.intake.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ops.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	p.ops = newServer(ops)
	return p
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Listen binds the receiver (in HTTP mode) and the ops port, so that their
// addresses are known (a port of 0 picks a free one) before Serve.
func (p *Provider) Listen() error {
	var err error
	if p.http != nil {
		if p.http.ln, err = net.Listen("tcp", net.JoinHostPort(p.cfg.RcvHost, strconv.Itoa(p.cfg.RcvPort))); err != nil {
			return fmt.Errorf("listen for events (RCV_HOST, RCV_PORT): %w", err)
		}
	}
	if p.opsLn, err = net.Listen("tcp", net.JoinHostPort(p.cfg.OpsHost, strconv.Itoa(p.cfg.OpsPort))); err != nil {
		if p.http != nil {
			p.http.ln.Close()
		}
		return fmt.Errorf("listen for health and metrics (OPS_HOST, OPS_PORT): %w", err)
	}
	return nil
}

// ReceiverURL is where triggered events are to be POSTed; empty when events
// come from elsewhere (NATS).
func (p *Provider) ReceiverURL() string {
	if p.http == nil || p.http.ln == nil {
		return ""
	}
	return p.http.url()
}

// OpsURL is the base URL of /healthz, /readyz and /metrics.
func (p *Provider) OpsURL() string {
	addr := p.opsLn.Addr().(*net.TCPAddr)
	host := "127.0.0.1"
	if !addr.IP.IsUnspecified() {
		host = addr.IP.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// Serve runs until ctx ends, then shuts down in order, within
// SHUTDOWN_GRACE + SHUTDOWN_FLUSH in all: readiness goes false and no new
// event is accepted; running and queued actions get what is left of
// SHUTDOWN_GRACE to finish; then they are cancelled, and their finished
// events get SHUTDOWN_FLUSH to be delivered and recorded.
func (p *Provider) Serve(ctx context.Context) error {
	if p.opsLn == nil {
		if err := p.Listen(); err != nil {
			return err
		}
	}
	p.lifecycle.Start(ctx)
	defer p.lifecycle.Abandon()

	var servers sync.WaitGroup
	serveErr := make(chan error, 2)
	for _, serve := range []func() error{
		p.intake.Serve,
		func() error {
			if err := p.ops.Serve(p.opsLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	} {
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := serve(); err != nil {
				serveErr <- err
			}
		}()
	}
	p.ready.Store(true)
	p.log.WithFields(logrus.Fields{"events": p.intake.Describe(), "ops": p.OpsURL()}).Info("ready")
	recovering, stopRecovery := context.WithCancel(context.WithoutCancel(ctx))
	recovered := make(chan struct{})
	go func() { defer close(recovered); p.recover(recovering) }()

	var failure error
	select {
	case <-ctx.Done():
		p.log.Info("shutting down: no new events are accepted; running actions get SHUTDOWN_GRACE to finish")
	case err := <-serveErr:
		failure = fmt.Errorf("serve: %w", err)
		p.log.WithError(err).Error("a listener failed; shutting down")
	}

	p.ready.Store(false)
	begin := time.Now()
	grace := begin.Add(p.cfg.ShutdownGrace)
	stopCtx, cancel := context.WithDeadline(context.Background(), grace)
	defer cancel()
	if err := p.intake.Stop(stopCtx); err != nil {
		p.log.WithError(err).Warn("the event intake did not stop cleanly")
	}
	p.lifecycle.Close()
	p.drain(grace, grace.Add(p.cfg.ShutdownFlush))
	// The heartbeat goes on while actions drain: a process that stopped
	// beating would have its running actions reported as orphans by
	// another, and then again by itself.
	stopRecovery()
	<-recovered
	if n := p.lifecycle.Pending(); n > 0 {
		p.log.WithField("pending", n).Error("finished events not delivered before the shutdown's bound; " +
			"they stay on the cluster's record, and another replica sends them")
	}
	opsCtx, cancelOps := context.WithTimeout(context.Background(), time.Second)
	defer cancelOps()
	if err := p.ops.Shutdown(opsCtx); err != nil {
		p.log.WithError(err).Warn("ops server did not stop cleanly")
	}
	servers.Wait()
	p.log.WithField("took", time.Since(begin).Round(time.Millisecond).String()).Info("stopped")
	return failure
}

// sweepPeriod is how often old records are cleaned up.
const sweepPeriod = time.Minute

// recover beats this process's heartbeat and retries and reports finished
// events not yet delivered (its own, and those of processes that died), at
// once and then every HEARTBEAT_PERIOD; and cleans up old records every
// minute; until ctx ends. Each runs on its own, so that a slow one never
// delays the heartbeat.
func (p *Provider) recover(ctx context.Context) {
	period := p.cfg.HeartbeatPeriod
	if period <= 0 {
		period = ledger.DefaultHeartbeat
	}
	var wg sync.WaitGroup
	for _, job := range []struct {
		run    func(context.Context)
		period time.Duration
	}{
		{p.lifecycle.Beat, period},
		{p.lifecycle.Recover, period},
		{p.lifecycle.Sweep, sweepPeriod},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(job.period)
			defer tick.Stop()
			for {
				job.run(ctx)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
}

// drain waits for the lifecycle in the two stages Serve describes: until
// grace, then, actions cancelled, until flush less the record reserve;
// then deliveries are abandoned, and the records of what was delivered
// get the reserve to be written.
func (p *Provider) drain(grace, flush time.Time) {
	graceCtx, cancel := context.WithDeadline(context.Background(), grace)
	defer cancel()
	if p.lifecycle.Wait(graceCtx) == nil {
		return
	}
	p.log.WithField("grace", p.cfg.ShutdownGrace.String()).
		Warn("grace period over; cancelling running actions, which still report finished")
	p.lifecycle.Cancel()
	reserve := min(lifecycle.RecordReserve, p.cfg.ShutdownFlush/2)
	flushCtx, cancelFlush := context.WithDeadline(context.Background(), flush.Add(-reserve))
	defer cancelFlush()
	if p.lifecycle.Wait(flushCtx) == nil {
		return
	}
	p.log.Error("event broker did not take the last finished events in time; they are reported as failed deliveries")
	p.lifecycle.Abandon()
	last, cancelLast := context.WithDeadline(context.Background(), flush)
	defer cancelLast()
	if p.lifecycle.Wait(last) != nil {
		p.log.Error("shutdown's bound reached with actions still recording; exiting")
	}
}

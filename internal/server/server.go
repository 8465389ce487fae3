// Package server runs the assembled service: the intake that takes events
// in (the HTTP receiver or the NATS subscription), the lifecycle's workers,
// the health and metrics endpoints, the periodic heartbeat, recovery and
// clean-up, and the order in which they stop. It builds none of them: the
// composition root (cmd/action-provider) hands it every part.
package server

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

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
)

// Server is the running service. Listen, then Serve.
type Server struct {
	cfg       config.Config
	log       logrus.FieldLogger
	lifecycle *lifecycle.Lifecycle
	intake    Intake
	maintain  func(context.Context)
	ops       *http.Server
	opsLn     net.Listener
	ready     atomic.Bool
}

// Parts are what a server runs, each built by the composition root.
type Parts struct {
	Lifecycle *lifecycle.Lifecycle
	// Intake takes events in and submits them to Lifecycle.
	Intake Intake
	// Prometheus is where the metrics are served from.
	Prometheus *prometheus.Registry
	// Maintain, if set, is the gates' own work between actions (resume a
	// suspended GitOps owner, unpause an autoscaler), run every
	// HEARTBEAT_PERIOD.
	Maintain func(context.Context)
	Log      logrus.FieldLogger
}

// Intake takes triggered events in and submits them to the lifecycle.
type Intake interface {
	// Listen binds what Serve serves on, so that its address is known
	// before Serve; an intake that binds nothing returns nil.
	Listen() error
	// Serve takes events until Stop, and returns only then or on failure.
	Serve() error
	// Stop takes no new events; those already taken are submitted.
	Stop(ctx context.Context) error
	// Ready reports whether events can arrive.
	Ready() bool
	// Describe names the intake for the log: where events come from.
	Describe() string
}

// New returns a server of parts.
func New(cfg config.Config, parts Parts) *Server {
	s := &Server{cfg: cfg, log: parts.Log, lifecycle: parts.Lifecycle, intake: parts.Intake, maintain: parts.Maintain}
	if s.maintain == nil {
		s.maintain = func(context.Context) {}
	}
	ops := http.NewServeMux()
	ops.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ops.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() || !s.intake.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ops.Handle("/metrics", promhttp.HandlerFor(parts.Prometheus, promhttp.HandlerOpts{Registry: parts.Prometheus}))
	s.ops = newServer(ops)
	return s
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

// Listen binds the intake and the ops port, so that their addresses are
// known (a port of 0 picks a free one) before Serve.
func (s *Server) Listen() error {
	if err := s.intake.Listen(); err != nil {
		return err
	}
	var err error
	if s.opsLn, err = net.Listen("tcp", net.JoinHostPort(s.cfg.OpsHost, strconv.Itoa(s.cfg.OpsPort))); err != nil {
		return fmt.Errorf("listen for health and metrics (OPS_HOST, OPS_PORT): %w", err)
	}
	return nil
}

// OpsURL is the base URL of /healthz, /readyz and /metrics.
func (s *Server) OpsURL() string {
	addr := s.opsLn.Addr().(*net.TCPAddr)
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
func (s *Server) Serve(ctx context.Context) error {
	if s.opsLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.lifecycle.Start(ctx)
	defer s.lifecycle.Abandon()

	var servers sync.WaitGroup
	serveErr := make(chan error, 2)
	for _, serve := range []func() error{
		s.intake.Serve,
		func() error {
			if err := s.ops.Serve(s.opsLn); !errors.Is(err, http.ErrServerClosed) {
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
	s.ready.Store(true)
	s.log.WithFields(logrus.Fields{"events": s.intake.Describe(), "ops": s.OpsURL()}).Info("ready")
	recovering, stopRecovery := context.WithCancel(context.WithoutCancel(ctx))
	recovered, stopping := make(chan struct{}), make(chan struct{})
	go func() { defer close(recovered); s.recover(recovering, stopping) }()

	var failure error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: no new events are accepted; running actions get SHUTDOWN_GRACE to finish")
	case err := <-serveErr:
		failure = fmt.Errorf("serve: %w", err)
		s.log.WithError(err).Error("a listener failed; shutting down")
	}

	s.ready.Store(false)
	begin := time.Now()
	grace := begin.Add(s.cfg.ShutdownGrace)
	stopCtx, cancel := context.WithDeadline(context.Background(), grace)
	defer cancel()
	if err := s.intake.Stop(stopCtx); err != nil {
		s.log.WithError(err).Warn("the event intake did not stop cleanly")
	}
	s.lifecycle.Close()
	flush := grace.Add(s.cfg.ShutdownFlush)
	s.drain(grace, flush)
	// The heartbeat goes on while actions drain: a process that stopped
	// beating would have its running actions reported as orphans by
	// another, and then again by itself. Then recovery makes one last pass
	// at what is undelivered, and a delivery under way finishes, within
	// what is left of SHUTDOWN_FLUSH: cut short, a finished event the
	// broker took would stay unrecorded, and be sent again by another
	// replica. Drained early, recovery still gets no more than
	// SHUTDOWN_FLUSH: the grace the actions did not use is not its, and
	// during an API server outage its writes would spend all of it.
	close(stopping)
	cut := time.AfterFunc(min(time.Until(flush), s.cfg.ShutdownFlush), stopRecovery)
	<-recovered
	cut.Stop()
	stopRecovery()
	if n := s.lifecycle.Pending(); n > 0 {
		s.log.WithField("pending", n).Error("finished events not delivered before the shutdown's bound; " +
			"they stay on the cluster's record, and another replica sends them")
	}
	opsCtx, cancelOps := context.WithTimeout(context.Background(), time.Second)
	defer cancelOps()
	if err := s.ops.Shutdown(opsCtx); err != nil {
		s.log.WithError(err).Warn("ops server did not stop cleanly")
	}
	servers.Wait()
	s.log.WithField("took", time.Since(begin).Round(time.Millisecond).String()).Info("stopped")
	return failure
}

// sweepPeriod is how often old records are cleaned up.
const sweepPeriod = time.Minute

// recover beats this process's heartbeat and retries and reports finished
// events not yet delivered (its own, and those of processes that died), at
// once and then every HEARTBEAT_PERIOD; and cleans up old records every
// minute; until stop is closed, when recovery makes one last pass, or ctx
// ends. Each runs on its own, so that a slow one never delays the
// heartbeat.
func (s *Server) recover(ctx context.Context, stop <-chan struct{}) {
	period := s.cfg.HeartbeatPeriod
	if period <= 0 {
		period = 10 * time.Second // HEARTBEAT_PERIOD's default
	}
	var wg sync.WaitGroup
	for _, job := range []struct {
		run    func(context.Context)
		period time.Duration
		last   bool // one more run once stop is closed
	}{
		{s.lifecycle.Beat, period, false},
		{s.lifecycle.Recover, period, true},
		{s.lifecycle.Sweep, sweepPeriod, false},
		{s.maintain, period, false},
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
				case <-stop:
					if job.last {
						job.run(ctx)
					}
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
func (s *Server) drain(grace, flush time.Time) {
	graceCtx, cancel := context.WithDeadline(context.Background(), grace)
	defer cancel()
	if s.lifecycle.Wait(graceCtx) == nil {
		return
	}
	s.log.WithField("grace", s.cfg.ShutdownGrace.String()).
		Warn("grace period over; cancelling running actions, which still report finished")
	s.lifecycle.Cancel()
	reserve := min(lifecycle.RecordReserve, s.cfg.ShutdownFlush/2)
	flushCtx, cancelFlush := context.WithDeadline(context.Background(), flush.Add(-reserve))
	defer cancelFlush()
	if s.lifecycle.Wait(flushCtx) == nil {
		return
	}
	s.log.Error("event broker did not take the last finished events in time; they are reported as failed deliveries")
	s.lifecycle.Abandon()
	last, cancelLast := context.WithDeadline(context.Background(), flush)
	defer cancelLast()
	if s.lifecycle.Wait(last) != nil {
		s.log.Error("shutdown's bound reached with actions still recording; exiting")
	}
}

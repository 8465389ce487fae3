package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/actionconfig"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/natsbus"
	"github.com/keptn-action-provider/action-provider/internal/receiver"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/server"
	"github.com/keptn-action-provider/action-provider/internal/tracing"
)

// service is the assembled provider: the server to run, and what must be
// closed after it.
type service struct {
	server *server.Server
	// receiver is the HTTP intake, nil with TRANSPORT=nats.
	receiver *server.HTTPIntake
	// close flushes and closes the NATS connection, if there is one.
	close func(context.Context)
}

// lockMargin is how much longer than an action a target's lock lasts, so
// that it outlives the action but not, by much, a replica that died
// holding it.
const lockMargin = 30 * time.Second

// buildTraced assembles the whole service from its configuration and the
// cluster, in the order an event needs it: the ledger on the cluster, the
// actions (the catalog), the publisher that answers Keptn, the lifecycle
// between them, the intake that takes events in, and the server that runs
// it all. Nothing is defaulted further down: each part gets what it uses
// from here. sandboxed says the cluster is this process's own in-memory
// one, which no other replica shares. Traces are made by tr (nil or off:
// none): the receiver's and the lifecycle's spans, and the delivery's HTTP
// calls; beats, when not nil, is the client of the ledger's heartbeats.
func buildTraced(cfg config.Config, client kube.Interface, dyn dynamic.Interface, beats kube.Interface, sandboxed bool, log logrus.FieldLogger, masker *secret.Masker, tr *tracing.Tracing) (*service, error) {
	identity := cfg.PodName
	if identity == "" {
		identity, _ = os.Hostname()
	}

	// The cluster's records: locks, cooldowns, claimed events, heartbeats.
	book, err := ledger.New(client, ledger.Config{
		Namespace: cfg.PodNamespace, Identity: identity,
		EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout + lockMargin, HeartbeatPeriod: cfg.HeartbeatPeriod,
		// A target's Lease carries its cooldowns: it must outlive them.
		IdleTTL:         max(ledger.DefaultIdleTTL, cfg.Cooldown),
		HeartbeatClient: beats,
	})
	if err != nil {
		return nil, err
	}

	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(prom)

	// The actions, from the catalog.
	catalog, err := actionconfig.Load(cfg, actionconfig.Deps{
		Client: client, Dynamic: dyn, Ledger: book, Audit: audit.New(client, identity), Log: log, Masker: masker,
		Metrics: prom, Identity: identity, JobLogs: jobLogs(client, sandboxed), WrapTransport: tr.Transport,
		// Set by the kubelet in every pod; webhooks may not call it.
		KubernetesServiceHost: os.Getenv("KUBERNETES_SERVICE_HOST"),
	})
	if err != nil {
		return nil, err
	}
	log.WithFields(logrus.Fields{
		"version": version, "catalog": catalog.Source, "actions": strings.Join(catalog.Registry.Names(), ","),
	}).Info("starting")

	// The publisher: the distributor's /event, or NATS.
	svc := &service{close: func(context.Context) {}}
	var (
		publisher delivery.Publisher
		bus       *natsbus.Bus
	)
	switch cfg.Transport {
	case config.TransportNATS:
		bus, err = natsbus.Connect(natsbus.Config{
			URL: cfg.NATSURL, Group: cfg.NATSQueueGroup, Name: cfg.PodName,
			Credentials: cfg.NATSCredentials, CA: cfg.NATSTLSCA, Cert: cfg.NATSTLSCert, Key: cfg.NATSTLSKey,
			BufferBytes: cfg.NATSBufferBytes, PublishBound: cfg.DeliveryRetryTime,
		}, log, m)
		if err != nil {
			return nil, err
		}
		publisher, svc.close = bus, bus.Close
	default:
		hc := delivery.NewClient(cfg.Workers)
		hc.Transport = tr.Transport(hc.Transport)
		publisher = &delivery.HTTP{
			URL: cfg.EventBroker, Client: hc,
			Backoff: retry.Backoff{Bound: cfg.DeliveryRetryTime}, Metrics: m, Log: log,
		}
	}

	// The lifecycle. The sandbox keeps no claims: claims kept there would
	// only cost memory under load.
	var claims lifecycle.Claimer = book
	if sandboxed {
		claims = nil
	}
	// The audit stream (AUDIT_LOG): one JSON line per action, closed last.
	stream, err := audit.OpenStream(cfg.AuditLog, identity, masker)
	if err != nil {
		return nil, err
	}
	closePublisher := svc.close
	svc.close = func(ctx context.Context) {
		closePublisher(ctx)
		if err := stream.Close(); err != nil {
			log.WithError(err).Warn("audit stream not closed cleanly")
		}
	}
	lc := lifecycle.New(
		lifecycle.Config{Workers: cfg.Workers, QueueSize: cfg.QueueSize, ActionTimeout: cfg.ActionTimeout, DryRun: cfg.DryRun, Tracing: tr, Audit: stream},
		catalog.Registry,
		dedup.New(cfg.DedupTTL, cfg.DedupCapacity, nil),
		claims,
		keptnevent.Replier{Source: cfg.EventSource, MaxBytes: cfg.MaxEventBytes, Masker: masker},
		publisher, log, m,
	)

	// The intake: the receiver the distributor POSTs to, or the NATS queue
	// subscription.
	var in server.Intake
	switch cfg.Transport {
	case config.TransportNATS:
		in = bus.Intake(lc)
	default:
		svc.receiver = server.NewHTTPIntake(cfg, &receiver.Receiver{
			Submitter: lc, MaxBodyBytes: cfg.MaxBodyBytes, QueueWait: cfg.QueueWait, Log: log, Metrics: m, Tracing: tr,
		})
		in = svc.receiver
	}

	svc.server = server.New(cfg, server.Parts{Lifecycle: lc, Intake: in, Prometheus: prom, Maintain: catalog.Maintain, Log: log})
	if cfg.DryRun {
		log.Warn("DRY_RUN=true: actions decide and report, and change nothing")
	}
	return svc, nil
}

// run listens and serves until ctx ends, then closes what build opened,
// its flush bounded by SHUTDOWN_FLUSH.
func (s *service) run(ctx context.Context, cfg config.Config) error {
	defer func() {
		flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownFlush)
		defer cancel()
		s.close(flush)
	}()
	if err := s.server.Listen(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return s.server.Serve(ctx)
}

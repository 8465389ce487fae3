package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/tracing"
)

const usageText = `action-provider: a Keptn action-provider.

Receives sh.keptn.event.action.triggered CloudEvents from the Keptn distributor,
runs the remediation action, and answers with action.started and action.finished.
With no Kubernetes cluster configured it runs in sandbox mode, on an in-memory
cluster seeded from examples/sandbox.

Usage:
  action-provider [serve]   run the service (the default)
  action-provider demo      run the service in sandbox mode, send it the example
                            events, print what Keptn would receive, and exit
  action-provider lint FILE...
                            check remediation.yaml files against the action
                            catalog (ACTIONS_CONFIG); exit 1 on any problem
  action-provider history [--since 24h] [--namespace NS] [--output table|json]
                            print what the provider did, read from the cluster:
                            its audit Events and its ledger's records
  action-provider --version print the version
  action-provider --help    print this help

Configuration is read from the environment:

`

// run is the whole program; main only supplies the process's context,
// arguments and output. Configuration comes from the environment through
// envconfig, which reads the process environment: tests set it with
// t.Setenv.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("action-provider", flag.ContinueOnError)
	flags.SetOutput(stderr)
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() {}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usage(stdout)
		}
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintf(stdout, "action-provider %s (%s, %s)\n", version, runtime.Version(), sandboxBuild)
		return err
	}
	switch cmd := flags.Arg(0); cmd {
	case "", "serve":
		return serve(ctx, stderr)
	case "demo":
		return demo(ctx, stdout, stderr)
	case "lint":
		return runLint(stdout, flags.Args()[1:])
	case "history":
		return runHistory(ctx, flags.Args()[1:], stdout, stderr)
	case "help":
		return usage(stdout)
	default:
		return fmt.Errorf("unknown command %q; see action-provider --help", cmd)
	}
}

func usage(w io.Writer) error {
	if _, err := io.WriteString(w, usageText); err != nil {
		return err
	}
	return config.Usage(w)
}

func serve(ctx context.Context, logOut io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	masker := &secret.Masker{}
	log := newLogger(cfg, logOut, masker)
	// Traces, when the OTEL_* variables ask for them; flushed last, within
	// SHUTDOWN_FLUSH, after the service stopped making spans.
	tr, err := tracing.New(ctx, os.LookupEnv, version)
	if err != nil {
		return err
	}
	defer func() {
		flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownFlush)
		defer cancel()
		if err := tr.Shutdown(flush); err != nil {
			log.WithError(err).Warn("spans not exported before shutdown")
		}
	}()
	if tr.On() {
		log.Info("tracing: exporting spans with OTLP (OTEL_EXPORTER_OTLP_*)")
	}
	client, dyn, beats, sandboxed, err := connectTraced(cfg, log, tr)
	if err != nil {
		return err
	}
	if sandboxed {
		sandboxPolicy(&cfg, log)
	}
	svc, err := buildTraced(cfg, client, dyn, beats, sandboxed, log, masker, tr)
	if err != nil {
		return err
	}
	return svc.run(ctx, cfg)
}

// sandboxPolicy lets actions into the sandbox's own namespaces when the
// operator configured no namespace at all: it turns the opt-in label on,
// which the seeded namespaces sockshop-production and sockshop-staging
// carry and monitoring does not. Deny by default holds everywhere else; the
// sandbox is an in-memory cluster that nothing real shares.
func sandboxPolicy(cfg *config.Config, log logrus.FieldLogger) {
	if len(cfg.AllowedNamespaces) > 0 || cfg.NamespaceOptIn != "" {
		return
	}
	cfg.NamespaceOptIn = guard.SuggestedOptInLabel
	log.WithField("NAMESPACE_OPT_IN_LABEL", cfg.NamespaceOptIn).
		Warn("sandbox: neither ALLOWED_NAMESPACES nor NAMESPACE_OPT_IN_LABEL is set, so actions may change the seeded namespaces labelled " + cfg.NamespaceOptIn + " and nothing else")
}

// newLogger writes every line through masker, so that no secret the
// catalog resolved reaches the log, whichever field carries it.
func newLogger(cfg config.Config, out io.Writer, masker *secret.Masker) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	level, _ := logrus.ParseLevel(cfg.LogLevel) // validated by config.Load
	log.SetLevel(level)
	var f logrus.Formatter = &logrus.JSONFormatter{}
	if cfg.LogFormat == config.FormatText {
		f = &logrus.TextFormatter{FullTimestamp: true}
	}
	log.SetFormatter(masker.Formatter(f))
	return log
}

// heartbeatRequests is how many requests the heartbeats' own token bucket
// allows each HEARTBEAT_PERIOD: a GET and a PUT (a create the first time),
// and a retry after a conflict.
const heartbeatRequests = 4

// connect finds the cluster: in-cluster config, KUBECONFIG or ~/.kube/config,
// else (with SANDBOX=auto) the in-memory sandbox.
// The dynamic client reads the objects of other tools (Argo CD, Flux, KEDA,
// Argo Rollouts).
func connect(cfg config.Config, log logrus.FieldLogger) (client kube.Interface, dyn dynamic.Interface, sandboxed bool, err error) {
	client, dyn, _, sandboxed, err = connectTraced(cfg, log, nil)
	return client, dyn, sandboxed, err
}

// connectTraced is connect with the Kubernetes API calls made within an
// event's trace as client spans of it (tr nil or off: none), and with
// beats, the client of the heartbeats (nil in the sandbox: client).
func connectTraced(cfg config.Config, log logrus.FieldLogger, tr *tracing.Tracing) (client kube.Interface, dyn dynamic.Interface, beats kube.Interface, sandboxed bool, err error) {
	home, _ := os.UserHomeDir()
	switch {
	case cfg.Sandbox == config.SandboxOn:
		client, dyn, err = startSandbox(cfg, log, "SANDBOX=true")
		return client, dyn, nil, true, err
	case cfg.Sandbox == config.SandboxAuto && !kube.Available(os.LookupEnv, home):
		client, dyn, err = startSandbox(cfg, log, "no in-cluster config, KUBECONFIG or ~/.kube/config")
		return client, dyn, nil, true, err
	}
	rc, source, err := kube.RESTConfig(os.LookupEnv, home)
	if err != nil {
		return nil, nil, nil, false, fmt.Errorf("connect to Kubernetes: %w", err)
	}
	if tr.On() {
		rc.Wrap(tr.Transport)
	}
	rc.QPS, rc.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
	// The heartbeats get a bucket of their own (a GET and a PUT a period),
	// so that actions queued behind the shared one never hold them back.
	beat := rest.CopyConfig(rc)
	beat.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(float32(heartbeatRequests/cfg.HeartbeatPeriod.Seconds()), heartbeatRequests)
	if beats, err = kube.NewForConfig(beat); err != nil {
		return nil, nil, nil, false, fmt.Errorf("connect to Kubernetes (%s): %w", source, err)
	}
	// One token bucket for the clientset and the dynamic client: left to
	// themselves they would each make one, and together send twice
	// KUBE_API_QPS (make bench-storm saw it).
	rc.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(rc.QPS, rc.Burst)
	if client, err = kube.NewForConfig(rc); err != nil {
		return nil, nil, nil, false, fmt.Errorf("connect to Kubernetes (%s): %w", source, err)
	}
	if dyn, err = dynamic.NewForConfig(rc); err != nil {
		return nil, nil, nil, false, fmt.Errorf("connect to Kubernetes (%s): %w", source, err)
	}
	log.WithFields(logrus.Fields{"cluster": rc.Host, "from": source}).Info("using Kubernetes cluster")
	return client, dyn, beats, false, nil
}

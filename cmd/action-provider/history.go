package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/history"
	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// historyTimeout bounds the reads of one history command.
const historyTimeout = 60 * time.Second

const historyUsage = `Usage: action-provider history [--since 24h] [--namespace NS[,NS]]... [--output table|json] [--kubeconfig FILE]

Prints what the provider did, read from the cluster: the audit Events it
recorded on the objects it changed (and the approval and budget Events), and
its ledger's records of the triggered events it claimed (in POD_NAMESPACE).
Oldest first; the newest last, above a summary line.

`

// runHistory is the history command.
func runHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("history", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var namespaces []string
	since := flags.String("since", "24h", "how far back: a duration such as 30m, 24h or 7d")
	flags.Func("namespace", "a target namespace, or a comma-separated list; repeatable (default: every namespace the provider may list)", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				namespaces = append(namespaces, ns)
			}
		}
		return nil
	})
	output := flags.String("output", "table", "table or json")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig file (default: in-cluster config, KUBECONFIG or ~/.kube/config)")
	flags.Usage = func() {
		fmt.Fprint(stderr, historyUsage)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("history: unexpected argument %q; see action-provider history --help", flags.Arg(0))
	}
	window, err := parseSince(*since)
	if err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("history: invalid --output %q: table or json", *output)
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetOutput(stderr)
	log.SetLevel(logrus.WarnLevel)
	log.SetFormatter(&logrus.TextFormatter{})
	client, err := historyClient(cfg, *kubeconfig, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	entries, err := history.Read(ctx, client, history.Options{
		Since: window, Namespaces: namespaces, LedgerNamespace: cfg.PodNamespace,
	})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if *output == "json" {
		return history.JSON(stdout, entries)
	}
	return history.Table(stdout, entries, time.Local)
}

// parseSince reads a Go duration, or a whole number of days ("7d").
func parseSince(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("history: invalid --since %q: a positive duration such as 30m, 24h or 7d", s)
	}
	return d, nil
}

// historyClient finds the cluster as serve does (connect), with --kubeconfig
// in place of KUBECONFIG when given. In sandbox mode it reads a fresh
// sandbox, which has no history: the demo reads its own with history.Read.
func historyClient(cfg config.Config, kubeconfig string, log logrus.FieldLogger) (kube.Interface, error) {
	if kubeconfig == "" {
		client, _, _, err := connect(cfg, log)
		return client, err
	}
	lookup := func(k string) (string, bool) {
		if k == "KUBECONFIG" {
			return kubeconfig, true
		}
		return os.LookupEnv(k)
	}
	rc, source, err := kube.RESTConfig(lookup, "")
	if err != nil {
		return nil, fmt.Errorf("connect to Kubernetes: %w", err)
	}
	client, err := kube.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("connect to Kubernetes (%s): %w", source, err)
	}
	return client, nil
}

package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/actionconfig"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/lint"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// runLint checks remediation.yaml files against the catalog the service
// would load (ACTIONS_CONFIG, or the built-in one). It needs no cluster and
// no secret: handlers are built against a client that is never called, and
// every secret reads as a placeholder.
func runLint(out io.Writer, files []string) error {
	if len(files) == 0 {
		return errors.New("lint: name at least one remediation.yaml; see action-provider --help")
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	offline, err := kube.NewForConfig(&rest.Config{Host: "https://lint.invalid"})
	if err != nil {
		return fmt.Errorf("lint: %w", err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	placeholder := "lint-placeholder"
	// Lint runs nothing: the ledger and the recorder are never called.
	book, err := ledger.New(offline, ledger.Config{Namespace: cfg.PodNamespace, Identity: "lint", EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout})
	if err != nil {
		return fmt.Errorf("lint: %w", err)
	}
	cat, err := actionconfig.Load(cfg, actionconfig.Deps{Client: offline, Ledger: book, Audit: audit.New(offline, "lint"), Log: log, Secrets: secret.Source{
		LookupEnv: func(string) (string, bool) { return placeholder, true },
		ReadFile:  func(string) ([]byte, error) { return []byte(placeholder), nil },
	}})
	if err != nil {
		return err
	}
	problems := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", file, err)
			problems++
			continue
		}
		found := lint.Check(file, data, cat.Registry)
		for _, p := range found {
			fmt.Fprintln(out, p)
		}
		if len(found) == 0 {
			fmt.Fprintf(out, "%s: ok (checked against the %s)\n", file, cat.Source)
		}
		problems += len(found)
	}
	if problems > 0 {
		return fmt.Errorf("lint: %d problem(s) in %d file(s)", problems, len(files))
	}
	return nil
}

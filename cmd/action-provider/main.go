// Command action-provider is a Keptn action-provider: it receives
// sh.keptn.event.action.triggered events from the Keptn distributor, carries
// out the remediation action, and reports action.started and
// action.finished.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "action-provider:", err)
		os.Exit(1)
	}
}

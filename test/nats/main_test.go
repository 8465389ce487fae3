package nats

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// natsServerVersion is what Keptn 1.4.5 runs (go-utils v0.20.4 pins it).
const natsServerVersion = "v2.10.7"

// Bounds of the waits: every wait is bounded, so that a broken process
// fails a test instead of hanging it until go test's -timeout.
const (
	waitTimeout  = 30 * time.Second // one condition: readiness, an event
	testTimeout  = time.Minute      // one top-level test
	buildTimeout = 10 * time.Minute // go build of the provider, cold cache
)

// Set once by TestMain, read-only afterwards.
var (
	natsServerBin string // "" when not installed: every test skips
	providerBin   string // the built action-provider
	setupErr      error  // nats-server is there, but the provider did not build
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	natsServerBin = findNATSServer()
	if natsServerBin == "" {
		return m.Run() // every test skips
	}
	if setupErr = checkNATSServer(natsServerBin); setupErr != nil {
		fmt.Fprintf(os.Stderr, "nats test setup failed: %v\n", setupErr)
		return m.Run() // every test fails with it
	}
	tmp, err := os.MkdirTemp("", "action-provider-nats-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	providerBin, setupErr = testsupport.BuildProvider(filepath.Join(tmp, "action-provider"), buildTimeout)
	if setupErr != nil {
		fmt.Fprintf(os.Stderr, "nats test setup failed: %v\n", setupErr)
	}
	return m.Run()
}

// findNATSServer returns NATS_SERVER_BIN, else the binary
// test/nats/nats-server.sh installs, else "".
func findNATSServer() string {
	if p := os.Getenv("NATS_SERVER_BIN"); p != "" {
		return p // a wrong path fails each test, with the path in the message
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(cache, "action-provider", "nats-server-"+natsServerVersion, "bin", "nats-server")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// checkNATSServer checks that bin runs and is the version Keptn 1.4.5 runs.
func checkNATSServer(bin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("nats-server %s (NATS_SERVER_BIN or test/nats/nats-server.sh): %w %s", bin, err, out)
	}
	if v := strings.TrimSpace(string(out)); !strings.HasSuffix(v, " "+natsServerVersion) {
		return fmt.Errorf("%s is %q, want nats-server %s, what Keptn 1.4.5 runs (test/nats/nats-server.sh installs it)", bin, v, natsServerVersion)
	}
	return nil
}

// requireSetup skips the test when nats-server is not installed and fails
// it when the provider could not be built.
func requireSetup(t *testing.T) {
	t.Helper()
	if natsServerBin == "" {
		testsupport.Skip(t, "nats-server "+natsServerVersion+" not found: NATS_SERVER_BIN is not set, nor installed by test/nats/nats-server.sh")
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// testContext bounds a whole test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// sleep waits d, or less if ctx ends first.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

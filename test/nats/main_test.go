package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// natsServerVersion is what Keptn 1.4.5 runs (go-utils v0.20.4 pins it).
const natsServerVersion = "v2.10.7"

// Bounds of the waits: every wait is bounded, so that a broken process
// fails a test instead of hanging it until go test's -timeout.
const (
	waitTimeout  = 30 * time.Second // one condition: readiness, an event
	testTimeout  = time.Minute      // one top-level test
	buildTimeout = 10 * time.Minute // go build of the provider, cold cache
	stopTimeout  = 10 * time.Second // a process's exit after a signal
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
	providerBin, setupErr = buildProvider(filepath.Join(tmp, "action-provider"))
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
		t.Skip("nats-server " + natsServerVersion + " not found: set NATS_SERVER_BIN, or install it with " +
			"test/nats/nats-server.sh (go install github.com/nats-io/nats-server/v2@" + natsServerVersion +
			" into ~/.cache/action-provider/nats-server-" + natsServerVersion + "/bin); make test installs it")
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

// buildProvider builds ./cmd/action-provider from the module root to out.
func buildProvider(out string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/action-provider")
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/action-provider: %w\n%s", err, b)
	}
	return out, nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects the output of a process while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sleep waits d, or less if ctx ends first.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Package testsupport is the one test harness of the module's tests: a
// log buffer safe to read while a process or a server writes it, child
// processes started and stopped by their PID, bounded waits on a
// condition, the skip policy of the tests that need a real component, and
// a handler made of a function. Only tests import it.
package testsupport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/examples/events"
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
)

// RequireEnv, set to anything but "", turns every Skip into a failure:
// make test sets it, since it starts every component the tests need, so
// a test that skips there did not run for a reason nobody meant.
const RequireEnv = "REQUIRE_INTEGRATION"

// Skip skips a test that needs a component that is not there, saying why
// and which command runs it; with RequireEnv set it fails the test instead.
func Skip(t testing.TB, why string) {
	t.Helper()
	msg := why + "; run make test, which starts it"
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s=%s (make test) requires every test to run, but: %s", RequireEnv, os.Getenv(RequireEnv), msg)
	}
	t.Skip(msg)
}

// SyncBuffer collects what a process or a logger writes while a test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LogLines returns the JSON log lines in s whose msg is msg.
func (s *SyncBuffer) LogLines(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// FreePort returns a port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// PollEvery is the pause between two looks at a condition that gives no
// signal of its own.
const PollEvery = 10 * time.Millisecond

// Poll looks at cond until it holds (true), ctx ends or timeout passes
// (false). It is the one polling loop of the tests: every wait is bounded.
func Poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(PollEvery):
		}
	}
	return true
}

// Eventually fails t unless cond holds within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(context.Background(), timeout, cond) {
		t.Fatalf("%s: not within %s", what, timeout)
	}
}

// Receive waits, at most timeout, for a value from ch.
func Receive[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("%s: not within %s", what, timeout)
		var zero T
		return zero
	}
}

// Handler is an action handler made of a function.
type Handler func(ctx context.Context, req action.Request) (action.Outcome, error)

// Run calls h(ctx, req).
func (h Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	return h(ctx, req)
}

// Passes is a handler that always passes with msg.
func Passes(msg string) Handler {
	return func(context.Context, action.Request) (action.Outcome, error) { return action.Pass(msg), nil }
}

// Example is the event examples/events/name, decoded for a test to change.
func Example(t testing.TB, name string) map[string]any {
	t.Helper()
	raw, err := fs.ReadFile(events.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ev
}

// ServeSink serves sink on 127.0.0.1 as an event broker, until the test
// ends, and returns its event URL.
func ServeSink(t testing.TB, sink *eventsink.Sink) string {
	t.Helper()
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	return srv.URL + "/event"
}

// EnvFile returns the value of envVar, the env file a component's start
// script writes (make test sets it); unset, the test skips (Skip), saying
// that it needs what.
func EnvFile(t testing.TB, envVar, what string) string {
	t.Helper()
	path := os.Getenv(envVar)
	if path == "" {
		Skip(t, "no "+what+": "+envVar+" is not set")
	}
	return path
}

// Component is a running component the tests share, named by the env file
// its start script writes: connected to once, by the first test that
// needs it.
type Component[T any] struct {
	EnvVar  string                          // names the env file
	What    string                          // the component, for the skip message
	Connect func(envPath string) (T, error) // reads the env file and connects

	once sync.Once
	v    T
	err  error
}

// Require returns the component; the test skips (EnvFile) when EnvVar is
// unset, and fails when the component cannot be used.
func (c *Component[T]) Require(t testing.TB) T {
	t.Helper()
	path := EnvFile(t, c.EnvVar, c.What)
	c.once.Do(func() { c.v, c.err = c.Connect(path) })
	if c.err != nil {
		t.Fatalf("%s=%s: %v", c.EnvVar, path, c.err)
	}
	return c.v
}

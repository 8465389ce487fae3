package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// token is the secret the tests send; it must never appear in a message.
const token = "s3cr3t-t0ken+with/escapes"

// env is the environment the tests' secrets are read from.
var env = map[string]string{"HOOK_TOKEN": token, "OTHER_KEY": "0ther-key-value"}

// options are fast: the back-off between attempts is a millisecond, so
// that retries cost the tests nothing but the attempts themselves.
func options() webhook.Options {
	return webhook.Options{
		Source: secret.Source{LookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		}},
		Backoff: retry.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		Masker:  &secret.Masker{},
	}
}

func newHandler(t *testing.T, cfg webhook.Config, opts webhook.Options) *webhook.Handler {
	t.Helper()
	h, err := webhook.New("notify", cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func intp(n int) *int { return &n }

// request is an action.triggered event's request for the webhook.
func request() action.Request {
	return action.Request{
		Action:  "notify",
		Value:   json.RawMessage(`{"channel": "#ops", "count": 3, "ratio": 1.50}`),
		Project: "sockshop", Stage: "production", Service: "carts",
		Labels:       map[string]string{"owner": "team-a", "severity": "critical"},
		Problem:      keptnv2.ProblemDetails{ProblemTitle: `Response time "degradation"`, RootCause: "carts: CPU throttling"},
		KeptnContext: "5b7c4f43-7a7e-4c3e-9a4b-2f3e4d5c6b7a",
		TriggeredID:  "0d8a5f6e-1c2b-4a3d-8e9f-7a6b5c4d3e2f",
	}
}

// run runs h with a test-sized deadline.
func run(t *testing.T, h *webhook.Handler, req action.Request) (action.Outcome, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.Run(ctx, req)
}

// server is an httptest server on 127.0.0.1 that records what it got.
type server struct {
	*httptest.Server
	conns atomic.Int32 // connections accepted
	mu    sync.Mutex
	got   []received
}

type received struct {
	at     time.Time
	method string
	uri    string
	header http.Header
	body   string
}

func newServer(t *testing.T, handler http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := readAll(r)
		s.mu.Lock()
		s.got = append(s.got, received{at: time.Now(), method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: b})
		s.mu.Unlock()
		handler(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

func (s *server) hits() int { return len(s.requests()) }

func readAll(r *http.Request) (string, error) {
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

// answer is a handler that always answers status with body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// refusal returns err's *action.Refusal or fails the test.
func refusal(t *testing.T, err error) *action.Refusal {
	t.Helper()
	var r *action.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if r.Rule != webhook.RefusalRule {
		t.Errorf("refusal rule = %q, want %q", r.Rule, webhook.RefusalRule)
	}
	return r
}

// noDNS is a resolver that answers no query and counts them, to show that
// a name was refused before it was looked up.
func noDNS(lookups *atomic.Int32) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		lookups.Add(1)
		return nil, errors.New("no DNS in this test")
	}}
}

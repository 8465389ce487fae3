package togglefeature_test

// Tests against a real Unleash server, started by test/unleash/unleash.sh:
//
//	test/unleash/unleash.sh start /tmp/unleash
//	UNLEASH_ENV=/tmp/unleash/env go test ./internal/action/togglefeature/
//
// Without UNLEASH_ENV they skip; with it set but the server unusable they
// fail. Every flag they create has a random name and is deleted at the end,
// so runs against the same server do not interfere.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/togglefeature"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/envfile"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/receiver"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/server"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// unleashEnvVar names the env file that unleash.sh start writes.
const unleashEnvVar = "UNLEASH_ENV"

// realUnleash is the server the tests run against, and a client of its
// admin API of their own, to set up flags and to check their state without
// going through the code under test.
type realUnleash struct {
	url, token string
	dir        string // unleash.sh's DIR, for its log when a request fails
	client     *http.Client
}

var (
	realOnce   sync.Once
	unleashSrv *realUnleash
	realErr    error
)

// requireUnleash skips the test when UNLEASH_ENV is unset and fails it when
// it is set but the server cannot be used.
func requireUnleash(t *testing.T) *realUnleash {
	t.Helper()
	path := os.Getenv(unleashEnvVar)
	if path == "" {
		testsupport.Skip(t, "no Unleash server: UNLEASH_ENV names the env file of test/unleash/unleash.sh start DIR")
	}
	realOnce.Do(func() { unleashSrv, realErr = connectUnleash(path) })
	if realErr != nil {
		t.Fatalf("%s=%s: %v", unleashEnvVar, path, realErr)
	}
	// unleash.sh starts the server again if it dies (it did once in CI):
	// each test waits for it to be healthy, not only the first.
	if err := unleashSrv.waitHealthy(30 * time.Second); err != nil {
		t.Fatalf("%v%s", err, unleashSrv.logTail())
	}
	return unleashSrv
}

func (r *realUnleash) waitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		status, _, err := r.do(http.MethodGet, "/health", nil)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Unleash at %s is not healthy (started by unleash.sh start?): status %d, %v", r.url, status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logTail returns the end of the server's log, to say why a request failed.
func (r *realUnleash) logTail() string {
	if r.dir == "" {
		return ""
	}
	b, err := os.ReadFile(r.dir + "/logs/unleash.log")
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-20):]
	return "\nlast lines of " + r.dir + "/logs/unleash.log:\n" + strings.Join(lines, "\n")
}

func connectUnleash(envPath string) (*realUnleash, error) {
	env, err := envfile.Read(envPath)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"UNLEASH_URL", "UNLEASH_ADMIN_TOKEN"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s sets no %s", envPath, k)
		}
	}
	u, err := url.Parse(env["UNLEASH_URL"])
	if err != nil {
		return nil, fmt.Errorf("UNLEASH_URL: %w", err)
	}
	// These tests create and delete flags: never anywhere but here.
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("UNLEASH_URL %s is not on loopback; these tests only run against the server unleash.sh starts", u)
	}
	r := &realUnleash{url: env["UNLEASH_URL"], token: env["UNLEASH_ADMIN_TOKEN"], dir: env["UNLEASH_DIR"], client: &http.Client{Timeout: 10 * time.Second}}
	if err := r.waitHealthy(30 * time.Second); err != nil {
		return nil, fmt.Errorf("%w%s", err, r.logTail())
	}
	status, body, err := r.do(http.MethodGet, "/api/admin/projects/default", nil)
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("Unleash at %s does not accept UNLEASH_ADMIN_TOKEN: %d %s %v", r.url, status, body, err)
	}
	return r, nil
}

func (r *realUnleash) do(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", r.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// must calls the admin API and fails the test unless the status is want.
func (r *realUnleash) must(t *testing.T, want int, method, path string, body any) []byte {
	t.Helper()
	status, b, err := r.do(method, path, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %s %v, want %d%s", method, path, status, b, err, want, r.logTail())
	}
	return b
}

// prefix returns a fresh random flag name prefix; flags made from it sort
// in the order of their suffixes.
func prefix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "itest-" + hex.EncodeToString(b)
}

// createFlag creates a release flag in project default with the given state
// in development and production, and deletes it (archive, then delete from
// the archive) when the test ends.
func (r *realUnleash) createFlag(t *testing.T, name string, dev, prod bool) {
	t.Helper()
	r.must(t, http.StatusCreated, http.MethodPost, "/api/admin/projects/default/features", map[string]string{"name": name, "type": "release"})
	t.Cleanup(func() {
		// Archiving an already archived flag answers 404 or similar: the
		// permanent delete is what matters.
		_, _, _ = r.do(http.MethodDelete, "/api/admin/projects/default/features/"+name, nil)
		if status, b, err := r.do(http.MethodDelete, "/api/admin/archive/"+name, nil); err != nil || status != http.StatusOK {
			t.Logf("delete flag %s: %d %s %v", name, status, b, err)
		}
	})
	r.setState(t, name, "development", dev)
	r.setState(t, name, "production", prod)
}

func (r *realUnleash) setState(t *testing.T, name, env string, on bool) {
	t.Helper()
	st := "off"
	if on {
		st = "on"
	}
	r.must(t, http.StatusOK, http.MethodPost, "/api/admin/projects/default/features/"+name+"/environments/"+env+"/"+st, nil)
}

// states reads a flag's state per environment from Unleash itself.
func (r *realUnleash) states(t *testing.T, name string) map[string]bool {
	t.Helper()
	var f struct {
		Environments []struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		} `json:"environments"`
	}
	if err := json.Unmarshal(r.must(t, http.StatusOK, http.MethodGet, "/api/admin/projects/default/features/"+name, nil), &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range f.Environments {
		out[e.Name] = e.Enabled
	}
	return out
}

func (r *realUnleash) wantStates(t *testing.T, name string, dev, prod bool) {
	t.Helper()
	if got := r.states(t, name); got["development"] != dev || got["production"] != prod || len(got) != 2 {
		t.Errorf("flag %s in Unleash: %v, want development %v, production %v", name, got, dev, prod)
	}
}

// archived reports whether a flag is in the archive.
func (r *realUnleash) archived(t *testing.T, name string) bool {
	t.Helper()
	var a struct {
		Features []struct {
			Name string `json:"name"`
		} `json:"features"`
	}
	if err := json.Unmarshal(r.must(t, http.StatusOK, http.MethodGet, "/api/admin/archive/features/default", nil), &a); err != nil {
		t.Fatal(err)
	}
	for _, f := range a.Features {
		if f.Name == name {
			return true
		}
	}
	return false
}

func (r *realUnleash) handler(t *testing.T, mod func(*togglefeature.Config), hc *http.Client) *togglefeature.Handler {
	t.Helper()
	cfg := togglefeature.Config{URL: r.url, Token: secret.Ref{Env: tokenEnv}}
	if mod != nil {
		mod(&cfg)
	}
	h, err := togglefeature.New(cfg, togglefeature.Options{Source: source(r.token), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func run(t *testing.T, h *togglefeature.Handler, req action.Request) action.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := h.Run(ctx, req)
	if err != nil {
		t.Fatalf("Run(%s in %s): %v", req.Value, req.Stage, err)
	}
	return out
}

func wantOutcome(t *testing.T, out action.Outcome, result keptnv2.ResultType, msg string) {
	t.Helper()
	if out.Result != result || out.Message != msg {
		t.Errorf("outcome = %s %q\n     want %s %q", out.Result, out.Message, result, msg)
	}
}

func TestUnleashOnOffAlready(t *testing.T) {
	u := requireUnleash(t)
	f := prefix(t)
	u.createFlag(t, f, false, false)
	h := u.handler(t, nil, nil)

	wantOutcome(t, run(t, h, request("production", `{"`+f+`": "on"}`)), keptnv2.ResultPass, "turned on "+f+" in production (project default)")
	u.wantStates(t, f, false, true)

	wantOutcome(t, run(t, h, request("production", `{"`+f+`": "on"}`)), keptnv2.ResultPass, f+" already on in production (project default)")
	u.wantStates(t, f, false, true)

	wantOutcome(t, run(t, h, request("development", `{"`+f+`": true}`)), keptnv2.ResultPass, "turned on "+f+" in development (project default)")
	u.wantStates(t, f, true, true)

	wantOutcome(t, run(t, h, request("production", `{"`+f+`": "OFF"}`)), keptnv2.ResultPass, "turned off "+f+" in production (project default)")
	u.wantStates(t, f, true, false)
}

func TestUnleashTwoFlags(t *testing.T) {
	u := requireUnleash(t)
	p := prefix(t)
	checkout, promo := p+"-NewCheckout", p+"-PromotionCampaign"
	u.createFlag(t, checkout, false, true)
	u.createFlag(t, promo, true, true)
	h := u.handler(t, nil, nil)

	out := run(t, h, request("production", `{"`+promo+`": "off", "`+checkout+`": "on"}`))
	wantOutcome(t, out, keptnv2.ResultPass, "turned off "+promo+" in production (project default); "+checkout+" already on")
	u.wantStates(t, promo, true, false)
	u.wantStates(t, checkout, false, true)
}

func TestUnleashStageMapping(t *testing.T) {
	u := requireUnleash(t)
	f := prefix(t)
	u.createFlag(t, f, false, false)
	h := u.handler(t, func(c *togglefeature.Config) {
		c.Environments = map[string]string{"prod": "production", "hardening": "development"}
	}, nil)

	wantOutcome(t, run(t, h, request("prod", `{"`+f+`": "on"}`)), keptnv2.ResultPass, "turned on "+f+" in production (project default)")
	u.wantStates(t, f, false, true)
	wantOutcome(t, run(t, h, request("hardening", `{"`+f+`": "on"}`)), keptnv2.ResultPass, "turned on "+f+" in development (project default)")
	u.wantStates(t, f, true, true)
}

func TestUnleashMissingFlag(t *testing.T) {
	u := requireUnleash(t)
	p := prefix(t)
	exists, missing := p+"-a-exists", p+"-b-missing"
	u.createFlag(t, exists, false, false)
	h := u.handler(t, nil, nil)

	out := run(t, h, request("production", `{"`+exists+`": "on", "`+missing+`": "on"}`))
	wantOutcome(t, out, keptnv2.ResultFailed,
		"feature flag "+missing+" does not exist in project default of Unleash at "+u.url+"; nothing was changed")
	u.wantStates(t, exists, false, false)
}

func TestUnleashMissingEnvironment(t *testing.T) {
	u := requireUnleash(t)
	f := prefix(t)
	u.createFlag(t, f, false, false)
	h := u.handler(t, nil, nil)

	// "staging" does not exist in Unleash; "default" exists but is not
	// enabled for the project.
	for _, stage := range []string{"staging", "default"} {
		out := run(t, h, request(stage, `{"`+f+`": "on"}`))
		want := fmt.Sprintf(`environment %q is not enabled for %s (it has development, production) in project default of Unleash at %s; `+
			`map stage %q to another environment with the action's "environments" setting, or add the environment to the project; nothing was changed`,
			stage, f, u.url, stage)
		wantOutcome(t, out, keptnv2.ResultFailed, want)
	}
	u.wantStates(t, f, false, false)
}

func TestUnleashDryRun(t *testing.T) {
	u := requireUnleash(t)
	f := prefix(t)
	u.createFlag(t, f, true, true)
	h := u.handler(t, nil, nil)
	req := request("production", `{"`+f+`": "off"}`)
	req.DryRun = true
	wantOutcome(t, run(t, h, req), keptnv2.ResultPass, "dry run, nothing changed: would turn off "+f+" in production (project default)")
	u.wantStates(t, f, true, true)
}

func TestUnleashWrongToken(t *testing.T) {
	u := requireUnleash(t)
	f := prefix(t)
	u.createFlag(t, f, false, false)
	wrong := "*:*.0000000000000000000000000000000000000000deadbeef"
	h, err := togglefeature.New(togglefeature.Config{URL: u.url, Token: secret.Ref{Env: tokenEnv}}, togglefeature.Options{Source: source(wrong)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(context.Background(), request("production", `{"`+f+`": "on"}`))
	want := "read feature flag " + f + ": Unleash at " + u.url + " refused the admin token from env UNLEASH_TOKEN: 401 Unauthorized"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), wrong) {
		t.Fatalf("error = %v\nwant it to start with %q, without the token", err, want)
	}
	u.wantStates(t, f, false, false)
}

// roundTripper lets a test act between the action's requests.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// archiveBefore returns a client that archives flag, through the test's
// own client, just before the action's write to it goes out: someone
// archived the flag between the action's read and its write.
func (r *realUnleash) archiveBefore(t *testing.T, flag string, next http.RoundTripper) *http.Client {
	return &http.Client{Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/features/"+flag+"/environments/") {
			if status, b, err := r.do(http.MethodDelete, "/api/admin/projects/default/features/"+flag, nil); err != nil || status != http.StatusAccepted {
				t.Errorf("archive %s: %d %s %v", flag, status, b, err)
			}
		}
		return next.RoundTrip(req)
	})}
}

// TestUnleashRollback: the second of three writes fails (Unleash refuses
// it: the flag was archived meanwhile); the first is put back and the
// third is never tried.
func TestUnleashRollback(t *testing.T) {
	u := requireUnleash(t)
	p := prefix(t)
	a, b, c := p+"-a", p+"-b", p+"-c"
	u.createFlag(t, a, false, false)
	u.createFlag(t, b, false, false)
	u.createFlag(t, c, true, false)
	h := u.handler(t, nil, u.archiveBefore(t, b, http.DefaultTransport))

	out := run(t, h, request("production", `{"`+a+`": "on", "`+b+`": "on", "`+c+`": "on"}`))
	wantOutcome(t, out, keptnv2.ResultFailed, "toggling feature flags in production (project default) failed part-way: "+
		a+": turned on; "+
		b+": failed to turn on (400 Bad Request: Cannot perform this operation on archived features), and it no longer exists; "+
		c+": not attempted, still off; "+
		"rolled back: "+a+" back to off")
	u.wantStates(t, a, false, false)
	u.wantStates(t, c, true, false)
	if !u.archived(t, b) {
		t.Errorf("flag %s is not in the archive", b)
	}
}

// TestUnleashRollbackFails: after the second write fails, Unleash stops
// answering (503, made up by the transport) before the first can be put
// back. The action must say so as an error, and the first flag really is
// left on.
func TestUnleashRollbackFails(t *testing.T) {
	u := requireUnleash(t)
	p := prefix(t)
	a, b := p+"-a", p+"-b"
	u.createFlag(t, a, false, false)
	u.createFlag(t, b, false, false)
	down := roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/features/"+a+"/environments/production/off") {
			return &http.Response{
				StatusCode: http.StatusServiceUnavailable, Header: http.Header{}, Request: req,
				Body: io.NopCloser(strings.NewReader(`{"message":"Unleash is restarting"}`)),
			}, nil
		}
		return http.DefaultTransport.RoundTrip(req)
	})
	h := u.handler(t, func(c *togglefeature.Config) { c.Retries = new(int) }, u.archiveBefore(t, b, down))

	_, err := h.Run(context.Background(), request("production", `{"`+a+`": "on", "`+b+`": "on"}`))
	want := "toggling feature flags in production (project default) failed part-way: " +
		a + ": turned on; " +
		b + ": failed to turn on (400 Bad Request: Cannot perform this operation on archived features), and it no longer exists; " +
		"ROLLBACK FAILED, fix by hand: " + a + " is still on (turning it back off failed: 503 Service Unavailable: Unleash is restarting)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
	u.wantStates(t, a, false, true)
}

// TestUnleashThroughProvider runs the action the way Keptn does: a
// triggered event to a provider, a finished event back.
func TestUnleashThroughProvider(t *testing.T) {
	u := requireUnleash(t)
	p := prefix(t)
	checkout, promo := p+"-NewCheckout", p+"-PromotionCampaign"
	u.createFlag(t, checkout, false, false)
	u.createFlag(t, promo, true, true)

	masker := &secret.Masker{}
	h, err := togglefeature.New(togglefeature.Config{URL: u.url, Token: secret.Ref{Env: tokenEnv}},
		togglefeature.Options{Source: source(u.token), Masker: masker})
	if err != nil {
		t.Fatal(err)
	}
	var reg action.Registry
	if err := reg.Register(togglefeature.Name, h, togglefeature.Aliases...); err != nil {
		t.Fatal(err)
	}
	sink := &eventsink.Sink{}
	broker := httptestServer(t, sink)
	cfg := config.Config{
		RcvHost: "127.0.0.1", RcvPort: 0, RcvPath: "/", OpsPort: 0,
		DeliveryRetryTime: 5 * time.Second, MaxEventBytes: 64 << 10, EventSource: "action-provider",
		MaxBodyBytes: 1 << 20, Workers: 2, QueueSize: 8,
		ActionTimeout: 30 * time.Second, ShutdownGrace: 5 * time.Second, ShutdownFlush: 2 * time.Second,
		DedupTTL: time.Minute, DedupCapacity: 100, EventBroker: broker + "/event",
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	// As the composition root assembles it with TRANSPORT=http.
	prom := prometheus.NewRegistry()
	m := metrics.New(prom)
	publisher := &delivery.HTTP{URL: cfg.EventBroker, Client: delivery.NewClient(cfg.Workers), Metrics: m, Log: log}
	lc := lifecycle.New(lifecycle.Config{Workers: cfg.Workers, QueueSize: cfg.QueueSize, ActionTimeout: cfg.ActionTimeout},
		&reg, dedup.New(cfg.DedupTTL, cfg.DedupCapacity, nil), nil,
		keptnevent.Replier{Source: cfg.EventSource, MaxBytes: cfg.MaxEventBytes, Masker: masker}, publisher, log, m)
	in := server.NewHTTPIntake(cfg, &receiver.Receiver{Submitter: lc, MaxBodyBytes: cfg.MaxBodyBytes, Log: log, Metrics: m})
	prov := server.New(cfg, server.Parts{Lifecycle: lc, Intake: in, Prometheus: prom, Log: log})
	if err := prov.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- prov.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Error("provider did not stop within 30s")
		}
	})

	// The alias, as a remediation.yaml written for unleash-service has it.
	for i, name := range []string{"featuretoggle", togglefeature.Name} {
		id := fmt.Sprintf("%s-%d", p, i)
		value := map[string]string{promo: "off", checkout: "on"}
		ev, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": id, "source": "shipyard-controller", "type": keptnevent.TriggeredType,
			"shkeptncontext": "ctx-" + id, "shkeptnspecversion": "0.2.3",
			"data": map[string]any{
				"project": "sockshop", "stage": "production", "service": "carts",
				"action":  map[string]any{"action": name, "value": value},
				"problem": map[string]any{"problemTitle": "Response time degradation"},
			},
		})
		postEvent(t, in.URL(), ev)
		actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
		fin, err := sink.AwaitFinished(actx, id)
		acancel()
		if err != nil {
			t.Fatal(err)
		}
		want := "turned on " + checkout + ", turned off " + promo + " in production (project default)"
		if i > 0 {
			want = checkout + " already on, " + promo + " already off in production (project default)"
		}
		if fin.Data.Status != keptnv2.StatusSucceeded || fin.Data.Result != keptnv2.ResultPass || fin.Data.Message != want {
			t.Errorf("%s: finished %s/%s %q\nwant succeeded/pass %q", name, fin.Data.Status, fin.Data.Result, fin.Data.Message, want)
		}
		if bytes.Contains(fin.Raw, []byte(u.token)) {
			t.Errorf("%s: the finished event holds the token", name)
		}
		u.wantStates(t, checkout, false, true)
		u.wantStates(t, promo, true, false)
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func postEvent(t *testing.T, url string, ev []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/cloudevents+json", bytes.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST triggered event: %d %s", resp.StatusCode, b)
	}
}

package togglefeature_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/togglefeature"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// tokenEnv is where the tests' handlers read the token from.
const tokenEnv = "UNLEASH_TOKEN"

func source(token string) secret.Source {
	return secret.Source{LookupEnv: func(name string) (string, bool) {
		if name == tokenEnv {
			return token, true
		}
		return "", false
	}}
}

func newHandler(t *testing.T, url string, token string, mod func(*togglefeature.Config)) (*togglefeature.Handler, *secret.Masker) {
	t.Helper()
	cfg := togglefeature.Config{URL: url, Token: secret.Ref{Env: tokenEnv}}
	if mod != nil {
		mod(&cfg)
	}
	m := &secret.Masker{}
	h, err := togglefeature.New(cfg, togglefeature.Options{Source: source(token), Masker: m})
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

func request(stage, value string) action.Request {
	req := action.Request{Action: togglefeature.Name, Project: "sockshop", Stage: stage, Service: "carts"}
	if value != "" {
		req.Value = json.RawMessage(value)
	}
	return req
}

func retries(n int) func(*togglefeature.Config) {
	return func(c *togglefeature.Config) { c.Retries = &n }
}

// both is a flag's environments in the fake: development and production.
func both(dev, prod bool) map[string]bool {
	return map[string]bool{"development": dev, "production": prod}
}

func post(flag, env, st string) string {
	return "POST /api/admin/projects/default/features/" + flag + "/environments/" + env + "/" + st
}

// fail503 answers POSTs to one flag with 503, every time.
func fail503(flag string) func(*fakeUnleash, *http.Request, int) (int, string) {
	return func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/features/"+flag+"/") {
			return http.StatusServiceUnavailable, `{"message":"down for maintenance"}`
		}
		return 0, ""
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		flags     map[string]map[string]bool
		cfg       func(*togglefeature.Config)
		req       action.Request
		intercept func(*fakeUnleash, *http.Request, int) (int, string)

		want       string // the outcome's message; {url} stands for the fake's URL
		wantResult keptnv2.ResultType
		wantErr    string // substring of the error, when one is expected
		final      map[string]map[string]bool
		wantWrites []string // nil: not checked; []string{}: none
	}{
		{
			name:  "turn off",
			flags: map[string]map[string]bool{"PromotionCampaign": both(true, true)},
			req:   request("production", `{"PromotionCampaign": "off"}`),
			want:  "turned off PromotionCampaign in production (project default)", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"PromotionCampaign": both(true, false)},
			wantWrites: []string{post("PromotionCampaign", "production", "off")},
		},
		{
			name:  "turn on, one already on",
			flags: map[string]map[string]bool{"PromotionCampaign": both(false, true), "NewCheckout": both(false, true)},
			req:   request("production", `{"PromotionCampaign": "off", "NewCheckout": "on"}`),
			want:  "turned off PromotionCampaign in production (project default); NewCheckout already on", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"PromotionCampaign": both(false, false), "NewCheckout": both(false, true)},
			wantWrites: []string{post("PromotionCampaign", "production", "off")},
		},
		{
			name:  "already in state",
			flags: map[string]map[string]bool{"PromotionCampaign": both(true, false)},
			req:   request("production", `{"PromotionCampaign": "off"}`),
			want:  "PromotionCampaign already off in production (project default)", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"PromotionCampaign": both(true, false)},
			wantWrites: []string{},
		},
		{
			name:  "several flags in name order; booleans and any case",
			flags: map[string]map[string]bool{"b": both(false, true), "a": both(false, false), "c": both(true, true)},
			req:   request("production", `{"c": false, "a": "ON", "b": "Off"}`),
			want:  "turned on a, turned off b, turned off c in production (project default)", wantResult: keptnv2.ResultPass,
			final: map[string]map[string]bool{"a": both(false, true), "b": both(false, false), "c": both(true, false)},
			wantWrites: []string{
				post("a", "production", "on"), post("b", "production", "off"), post("c", "production", "off"),
			},
		},
		{
			name:  "missing flag: nothing is changed",
			flags: map[string]map[string]bool{"NewCheckout": both(false, false)},
			req:   request("production", `{"NewCheckout": "on", "Nope": "on", "Gone": "off"}`),
			want:  "feature flags Gone, Nope do not exist in project default of Unleash at {url}; nothing was changed", wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"NewCheckout": both(false, false)},
			wantWrites: []string{},
		},
		{
			name:  "missing environment: nothing is changed",
			flags: map[string]map[string]bool{"NewCheckout": both(false, false)},
			req:   request("staging", `{"NewCheckout": "on"}`),
			want: `environment "staging" is not enabled for NewCheckout (it has development, production) in project default of Unleash at {url}; ` +
				`map stage "staging" to another environment with the action's "environments" setting, or add the environment to the project; nothing was changed`,
			wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"NewCheckout": both(false, false)},
			wantWrites: []string{},
		},
		{
			name:  "stage mapped to an environment",
			flags: map[string]map[string]bool{"NewCheckout": both(false, false)},
			cfg: func(c *togglefeature.Config) {
				c.Environments = map[string]string{"prod": "production", "dev": "development"}
			},
			req:  request("prod", `{"NewCheckout": "on"}`),
			want: "turned on NewCheckout in production (project default)", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"NewCheckout": both(false, true)},
			wantWrites: []string{post("NewCheckout", "production", "on")},
		},
		{
			name:  "unmapped stage uses its own name",
			flags: map[string]map[string]bool{"NewCheckout": both(false, false)},
			cfg:   func(c *togglefeature.Config) { c.Environments = map[string]string{"prod": "production"} },
			req:   request("development", `{"NewCheckout": "on"}`),
			want:  "turned on NewCheckout in development (project default)", wantResult: keptnv2.ResultPass,
			final: map[string]map[string]bool{"NewCheckout": both(true, false)},
		},
		{
			name:      "partial failure is rolled back",
			flags:     map[string]map[string]bool{"A": both(false, false), "B": both(false, false), "C": both(false, false)},
			cfg:       retries(0),
			req:       request("production", `{"A": "on", "B": "on", "C": "on"}`),
			intercept: fail503("B"),
			want: "toggling feature flags in production (project default) failed part-way: " +
				"A: turned on; B: failed to turn on (503 Service Unavailable: down for maintenance), left off; C: not attempted, still off; " +
				"rolled back: A back to off",
			wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"A": both(false, false), "B": both(false, false), "C": both(false, false)},
			wantWrites: []string{post("A", "production", "on"), post("B", "production", "on"), post("A", "production", "off")},
		},
		{
			name:      "partial failure: rollback in reverse order, flags already in state untouched",
			flags:     map[string]map[string]bool{"A": both(false, true), "B": both(true, true), "C": both(false, true), "D": both(false, false)},
			cfg:       retries(0),
			req:       request("production", `{"A": "off", "B": "on", "C": "off", "D": "on"}`),
			intercept: fail503("D"),
			want: "toggling feature flags in production (project default) failed part-way: " +
				"A: turned off; B: already on; C: turned off; D: failed to turn on (503 Service Unavailable: down for maintenance), left off; " +
				"rolled back: A back to on, C back to on",
			wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"A": both(false, true), "B": both(true, true), "C": both(false, true), "D": both(false, false)},
			wantWrites: []string{
				post("A", "production", "off"), post("C", "production", "off"), post("D", "production", "on"),
				post("C", "production", "on"), post("A", "production", "on"),
			},
		},
		{
			name:  "rollback fails",
			flags: map[string]map[string]bool{"A": both(false, false), "B": both(false, false)},
			cfg:   retries(0),
			req:   request("production", `{"A": "on", "B": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
				if r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/B/environments/production/on") || strings.HasSuffix(r.URL.Path, "/A/environments/production/off")) {
					return http.StatusBadGateway, `<html><body>Bad gateway</body></html>`
				}
				return 0, ""
			},
			wantErr: "toggling feature flags in production (project default) failed part-way: " +
				"A: turned on; B: failed to turn on (502 Bad Gateway: <html><body>Bad gateway</body></html>), left off; " +
				"ROLLBACK FAILED, fix by hand: A is still on (turning it back off failed: 502 Bad Gateway: <html><body>Bad gateway</body></html>)",
			final: map[string]map[string]bool{"A": both(false, true), "B": both(false, false)},
		},
		{
			name:  "a write that failed but was applied is rolled back too",
			flags: map[string]map[string]bool{"A": both(false, false), "B": both(false, false)},
			cfg:   retries(0),
			req:   request("production", `{"A": "on", "B": "on"}`),
			intercept: func(f *fakeUnleash, r *http.Request, _ int) (int, string) {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/B/environments/production/on") {
					f.set("B", "production", true) // applied, then the answer is lost
					return http.StatusGatewayTimeout, ""
				}
				return 0, ""
			},
			want: "toggling feature flags in production (project default) failed part-way: " +
				"A: turned on; B: failed to turn on (504 Gateway Timeout), yet it was on when read again; rolled back: A back to off, B back to off",
			wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"A": both(false, false), "B": both(false, false)},
		},
		{
			name:  "retries a 503, then succeeds",
			flags: map[string]map[string]bool{"A": both(false, false)},
			req:   request("production", `{"A": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, n int) (int, string) {
				if r.Method == http.MethodPost && n < 2 {
					return http.StatusServiceUnavailable, `{"message":"busy"}`
				}
				return 0, ""
			},
			want: "turned on A in production (project default)", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"A": both(false, true)},
			wantWrites: []string{post("A", "production", "on"), post("A", "production", "on"), post("A", "production", "on")},
		},
		{
			name:  "retries a 429 on a read",
			flags: map[string]map[string]bool{"A": both(false, false)},
			req:   request("production", `{"A": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, n int) (int, string) {
				if r.Method == http.MethodGet && n == 0 {
					return http.StatusTooManyRequests, `{"message":"slow down"}`
				}
				return 0, ""
			},
			want: "turned on A in production (project default)", wantResult: keptnv2.ResultPass,
			final: map[string]map[string]bool{"A": both(false, true)},
		},
		{
			name:  "gives up after the retries; nothing is changed",
			flags: map[string]map[string]bool{"A": both(false, false)},
			cfg:   retries(1),
			req:   request("production", `{"A": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
				return http.StatusServiceUnavailable, `{"message":"busy"}`
			},
			wantErr:    "read feature flag A in production (project default) from Unleash at {url}: 503 Service Unavailable: busy (2 attempts); nothing was changed",
			final:      map[string]map[string]bool{"A": both(false, false)},
			wantWrites: []string{},
		},
		{
			name:  "a 4xx is not retried",
			flags: map[string]map[string]bool{"A": both(false, false)},
			req:   request("production", `{"A": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
				return http.StatusBadRequest, `{"name":"BadDataError","message":"Request validation failed","details":[{"message":"\"name\" must be URL friendly"}]}`
			},
			wantErr:    `read feature flag A in production (project default) from Unleash at {url}: 400 Bad Request: Request validation failed ("name" must be URL friendly); nothing was changed`,
			wantWrites: []string{},
		},
		{
			name:  "wrong token",
			flags: map[string]map[string]bool{"A": both(false, false)},
			cfg:   func(c *togglefeature.Config) { c.Token = secret.Ref{Env: "WRONG_TOKEN"} },
			req:   request("production", `{"A": "on"}`),
			wantErr: "read feature flag A: Unleash at {url} refused the admin token from env WRONG_TOKEN: " +
				"401 Unauthorized: You must log in to use Unleash.; nothing was changed",
			wantWrites: []string{},
		},
		{
			name:  "legacy API",
			flags: map[string]map[string]bool{"A": {"*": false}, "B": {"*": true}, "C": {"*": true}},
			cfg:   func(c *togglefeature.Config) { c.Legacy = true },
			req:   request("production", `{"A": "on", "B": "off", "C": "on"}`),
			want:  "turned on A, turned off B in all environments (legacy API); C already on", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"A": {"*": true}, "B": {"*": false}, "C": {"*": true}},
			wantWrites: []string{"POST /api/admin/features/A/toggle/on", "POST /api/admin/features/B/toggle/off"},
		},
		{
			name:  "legacy API, missing flag",
			flags: map[string]map[string]bool{"A": {"*": false}},
			cfg:   func(c *togglefeature.Config) { c.Legacy = true },
			req:   request("production", `{"A": "on", "Nope": "on"}`),
			want:  "feature flag Nope does not exist in Unleash at {url}; nothing was changed", wantResult: keptnv2.ResultFailed,
			wantWrites: []string{},
		},
		{
			name:  "legacy API, rollback",
			flags: map[string]map[string]bool{"A": {"*": false}, "B": {"*": false}},
			cfg:   func(c *togglefeature.Config) { c.Legacy = true; c.Retries = new(int) },
			req:   request("production", `{"A": "on", "B": "on"}`),
			intercept: func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
				if r.URL.Path == "/api/admin/features/B/toggle/on" {
					return http.StatusInternalServerError, `{"message":"database is gone"}`
				}
				return 0, ""
			},
			want: "toggling feature flags in all environments (legacy API) failed part-way: " +
				"A: turned on; B: failed to turn on (500 Internal Server Error: database is gone), left off; rolled back: A back to off",
			wantResult: keptnv2.ResultFailed,
			final:      map[string]map[string]bool{"A": {"*": false}, "B": {"*": false}},
		},
		{
			name:  "dry run reads but writes nothing",
			flags: map[string]map[string]bool{"PromotionCampaign": both(true, true), "NewCheckout": both(true, true)},
			req: func() action.Request {
				r := request("production", `{"PromotionCampaign": "off", "NewCheckout": "on"}`)
				r.DryRun = true
				return r
			}(),
			want: "dry run, nothing changed: would turn off PromotionCampaign in production (project default); NewCheckout already on", wantResult: keptnv2.ResultPass,
			final:      map[string]map[string]bool{"PromotionCampaign": both(true, true), "NewCheckout": both(true, true)},
			wantWrites: []string{},
		},
		{
			name:  "dry run still fails on a missing flag",
			flags: map[string]map[string]bool{},
			req:   func() action.Request { r := request("production", `{"Nope": "off"}`); r.DryRun = true; return r }(),
			want:  "feature flag Nope does not exist in project default of Unleash at {url}; nothing was changed", wantResult: keptnv2.ResultFailed,
		},
		{
			name:  "other project",
			flags: map[string]map[string]bool{"A": both(false, false)},
			cfg:   func(c *togglefeature.Config) { c.Project = "checkout" },
			req:   request("production", `{"A": "on"}`),
			want:  "feature flag A does not exist in project checkout of Unleash at {url}; nothing was changed", wantResult: keptnv2.ResultFailed,
		},
		{
			name:       "invalid value",
			flags:      map[string]map[string]bool{"A": both(false, false)},
			req:        request("production", `{"A": "disable"}`),
			wantErr:    `invalid value for action "toggle-feature": "A": "disable" is not a flag state; accepted forms: {"FlagName": "on"} or {"FlagName": "off"}`,
			wantWrites: []string{},
		},
		{
			name:    "no stage",
			flags:   map[string]map[string]bool{"A": both(false, false)},
			req:     request("", `{"A": "on"}`),
			wantErr: "the event names no stage",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, tt.flags)
			f.intercept = tt.intercept
			cfg := tt.cfg
			if cfg == nil {
				cfg = func(*togglefeature.Config) {}
			}
			h, err := togglefeature.New(func() togglefeature.Config {
				c := togglefeature.Config{URL: f.URL, Token: secret.Ref{Env: tokenEnv}}
				cfg(&c)
				return c
			}(), togglefeature.Options{Source: secret.Source{LookupEnv: func(name string) (string, bool) {
				switch name {
				case tokenEnv:
					return fakeToken, true
				case "WRONG_TOKEN":
					return "*:*.not-the-right-one", true
				}
				return "", false
			}}})
			if err != nil {
				t.Fatal(err)
			}
			out, err := h.Run(context.Background(), tt.req)
			expand := func(s string) string { return strings.ReplaceAll(s, "{url}", f.URL) }
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), expand(tt.wantErr)) {
					t.Fatalf("error = %v\nwant it to contain %q (outcome %+v)", err, expand(tt.wantErr), out)
				}
			} else {
				if err != nil {
					t.Fatalf("error = %v, want outcome %q", err, tt.want)
				}
				if out.Message != expand(tt.want) || out.Result != tt.wantResult {
					t.Errorf("outcome = %s %q\n     want %s %q", out.Result, out.Message, tt.wantResult, expand(tt.want))
				}
			}
			if tt.final != nil {
				if got := f.state(); !reflect.DeepEqual(got, tt.final) {
					t.Errorf("flags in Unleash = %v, want %v", got, tt.final)
				}
			}
			if tt.wantWrites != nil {
				if got := f.writes(); !reflect.DeepEqual(got, tt.wantWrites) && !(len(got) == 0 && len(tt.wantWrites) == 0) {
					t.Errorf("writes = %q\n  want %q", got, tt.wantWrites)
				}
			}
		})
	}
}

// slow delays answers until the client gives up or d passes.
func slow(d time.Duration, match func(r *http.Request, n int) bool) func(*fakeUnleash, *http.Request, int) (int, string) {
	return func(_ *fakeUnleash, r *http.Request, n int) (int, string) {
		if match(r, n) {
			select {
			case <-r.Context().Done():
			case <-time.After(d):
			}
		}
		return 0, ""
	}
}

func TestTimeoutPerRequest(t *testing.T) {
	timeout := func(c *togglefeature.Config) {
		c.Timeout = action.Duration(100 * time.Millisecond)
		c.Retries = new(int)
	}

	t.Run("a slow answer is retried", func(t *testing.T) {
		f := newFake(t, map[string]map[string]bool{"A": both(false, false)})
		f.intercept = slow(5*time.Second, func(r *http.Request, n int) bool { return r.Method == http.MethodPost && n == 0 })
		h, _ := newHandler(t, f.URL, fakeToken, func(c *togglefeature.Config) { timeout(c); *c.Retries = 1 })
		out, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
		if err != nil || out.Result != keptnv2.ResultPass {
			t.Fatalf("Run = %+v, %v; want a pass after one retry", out, err)
		}
	})

	t.Run("no answer at all", func(t *testing.T) {
		f := newFake(t, map[string]map[string]bool{"A": both(false, false)})
		f.intercept = slow(5*time.Second, func(r *http.Request, _ int) bool { return r.Method == http.MethodGet })
		h, _ := newHandler(t, f.URL, fakeToken, timeout)
		start := time.Now()
		_, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
		want := "read feature flag A in production (project default) from Unleash at " + f.URL +
			": GET /api/admin/projects/default/features/A: no answer within 100ms; nothing was changed"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v\nwant %s", err, want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run took %s with a 100ms timeout", d)
		}
	})
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	h, _ := newHandler(t, url, fakeToken, retries(1))
	_, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
	if err == nil || !strings.Contains(err.Error(), "cannot reach Unleash at "+url+": dial tcp") || !strings.Contains(err.Error(), "(2 attempts)") {
		t.Fatalf("error = %v, want that Unleash cannot be reached, after 2 attempts", err)
	}
}

// TestRollbackOutlivesTheAction: when the action's deadline ends it
// mid-way, the flags already changed are put back all the same.
func TestRollbackOutlivesTheAction(t *testing.T) {
	f := newFake(t, map[string]map[string]bool{"A": both(false, false), "B": both(false, false)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.intercept = func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/B/") {
			cancel() // the action's deadline passes while B is being written
			return http.StatusServiceUnavailable, `{"message":"busy"}`
		}
		return 0, ""
	}
	h, _ := newHandler(t, f.URL, fakeToken, nil)
	out, err := h.Run(ctx, request("production", `{"A": "on", "B": "on"}`))
	if err != nil || out.Result != keptnv2.ResultFailed || !strings.Contains(out.Message, "rolled back: A back to off") {
		t.Fatalf("Run = %+v, %v; want a failure with A rolled back", out, err)
	}
	if got := f.state()["A"]["production"]; got {
		t.Error("A is still on in production")
	}
}

// TestTokenMasked: a server that echoes the token back must not get it
// into the outcome, the error or anything else the provider shows.
func TestTokenMasked(t *testing.T) {
	echo := func(_ *fakeUnleash, r *http.Request, _ int) (int, string) {
		b, _ := json.Marshal(map[string]string{"message": "token " + r.Header.Get("Authorization") + " is not allowed here"})
		if r.Method == http.MethodPost {
			return http.StatusInternalServerError, string(b)
		}
		return 0, ""
	}
	t.Run("in a failed outcome", func(t *testing.T) {
		f := newFake(t, map[string]map[string]bool{"A": both(false, false)})
		f.intercept = echo
		h, m := newHandler(t, f.URL, fakeToken, retries(0))
		out, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.Message, fakeToken) || !strings.Contains(out.Message, "token *** is not allowed") {
			t.Errorf("message = %q, want the token masked", out.Message)
		}
		if got := m.String("x " + fakeToken); got != "x "+secret.Mask {
			t.Errorf("the provider's masker does not know the token: %q", got)
		}
	})
	t.Run("in an error", func(t *testing.T) {
		f := newFake(t, map[string]map[string]bool{"A": both(false, false)})
		f.intercept = func(f *fakeUnleash, r *http.Request, n int) (int, string) {
			if r.Method == http.MethodGet {
				return http.StatusForbidden, `{"message":"` + r.Header.Get("Authorization") + ` lacks permission"}`
			}
			return 0, ""
		}
		h, _ := newHandler(t, f.URL, fakeToken, nil)
		_, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
		if err == nil || strings.Contains(err.Error(), fakeToken) || !strings.Contains(err.Error(), "*** lacks permission") {
			t.Errorf("error = %v, want the token masked", err)
		}
	})
	t.Run("with no masker given", func(t *testing.T) {
		f := newFake(t, map[string]map[string]bool{"A": both(false, false)})
		f.intercept = echo
		h, err := togglefeature.New(togglefeature.Config{URL: f.URL, Token: secret.Ref{Env: tokenEnv}, Retries: new(int)},
			togglefeature.Options{Source: source(fakeToken)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := h.Run(context.Background(), request("production", `{"A": "on"}`))
		if err != nil || strings.Contains(out.Message, fakeToken) {
			t.Errorf("Run = %+v, %v; want the token masked", out, err)
		}
	})
}

func TestNew(t *testing.T) {
	ok := togglefeature.Config{URL: "http://unleash:4242", Token: secret.Ref{Env: tokenEnv}}
	tests := []struct {
		name    string
		mod     func(*togglefeature.Config)
		token   string
		wantErr string
	}{
		{name: "valid", mod: func(*togglefeature.Config) {}},
		{name: "path prefix", mod: func(c *togglefeature.Config) { c.URL = "https://flags.example.com/unleash/" }},
		{name: "no url", mod: func(c *togglefeature.Config) { c.URL = "" }, wantErr: `toggle-feature action: "url": is empty`},
		{name: "not http", mod: func(c *togglefeature.Config) { c.URL = "unleash:4242" }, wantErr: `"url": "unleash:4242" is not an http or https URL`},
		{name: "no host", mod: func(c *togglefeature.Config) { c.URL = "http:///api" }, wantErr: `"url": "http:///api" has no host`},
		{name: "credentials", mod: func(c *togglefeature.Config) { c.URL = "http://admin:secret@unleash:4242" }, wantErr: `"url": has a user or password in it`},
		{name: "query", mod: func(c *togglefeature.Config) { c.URL = "http://unleash:4242/?x=1" }, wantErr: `"url": "http://unleash:4242/?x=1" has a query`},
		{name: "token unset", mod: func(c *togglefeature.Config) { c.Token = secret.Ref{Env: "NOPE"} }, wantErr: `"token": environment variable NOPE is not set`},
		{name: "token empty", mod: func(*togglefeature.Config) {}, token: " ", wantErr: `"token": secret env UNLEASH_TOKEN is empty`},
		{name: "token missing", mod: func(c *togglefeature.Config) { c.Token = secret.Ref{} }, wantErr: `"token": a secret needs "env" or "file"`},
		{name: "token two lines", mod: func(*togglefeature.Config) {}, token: "a\nb", wantErr: `"token": the token (env UNLEASH_TOKEN) spans more than one line`},
		{name: "negative retries", mod: func(c *togglefeature.Config) { n := -1; c.Retries = &n }, wantErr: `"retries": -1 is not between 0 and 10`},
		{name: "too many retries", mod: func(c *togglefeature.Config) { n := 11; c.Retries = &n }, wantErr: `"retries": 11 is not between 0 and 10`},
		{name: "empty environment", mod: func(c *togglefeature.Config) { c.Environments = map[string]string{"prod": ""} }, wantErr: `"environments": "prod": ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			token := tt.token
			if token == "" {
				token = fakeToken
			}
			_, err := togglefeature.New(cfg, togglefeature.Options{Source: source(token)})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestConfigFromJSON: the catalog's YAML reaches Config through JSON.
func TestConfigFromJSON(t *testing.T) {
	var c togglefeature.Config
	err := json.Unmarshal([]byte(`{"url": "http://unleash:4242", "token": {"env": "UNLEASH_TOKEN"}, "project": "shop",
		"environments": {"prod": "production"}, "legacy": true, "timeout": "3s", "retries": 0}`), &c)
	if err != nil {
		t.Fatal(err)
	}
	want := togglefeature.Config{URL: "http://unleash:4242", Token: secret.Ref{Env: "UNLEASH_TOKEN"}, Project: "shop",
		Environments: map[string]string{"prod": "production"}, Legacy: true, Timeout: action.Duration(3 * time.Second), Retries: new(int)}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

// TestPathEscaping: a flag or project name is one path segment however it
// is spelt.
func TestPathEscaping(t *testing.T) {
	f := newFake(t, map[string]map[string]bool{"a/b c": both(false, false)})
	h, _ := newHandler(t, f.URL, fakeToken, nil)
	out, err := h.Run(context.Background(), request("production", `{"a/b c": "on"}`))
	if err != nil || out.Result != keptnv2.ResultPass {
		t.Fatalf("Run = %+v, %v", out, err)
	}
	if got := f.writes(); len(got) != 1 || got[0] != "POST /api/admin/projects/default/features/a%2Fb%20c/environments/production/on" {
		t.Errorf("writes = %q", got)
	}
}

func TestRegistersAsAction(t *testing.T) {
	var reg action.Registry
	h, _ := newHandler(t, "http://unleash:4242", fakeToken, nil)
	if err := reg.Register(togglefeature.Name, h, togglefeature.Aliases...); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"toggle-feature", "featuretoggle"} {
		if _, canonical, ok := reg.Lookup(name); !ok || canonical != togglefeature.Name {
			t.Errorf("Lookup(%q) = %q, %v", name, canonical, ok)
		}
	}
}

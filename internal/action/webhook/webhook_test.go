package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

func TestTemplating(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, "ok"))
	h := newHandler(t, webhook.Config{
		URL: srv.URL + "/hooks/{{.Project}}/{{.Stage}}?service={{.Service | urlquery}}&owner={{.Labels.owner}}&n={{.Value.count}}",
		Headers: map[string]string{
			"Authorization":   `Bearer {{secret "token"}}`,
			"X-Severity":      `{{.Labels.severity}}`,
			"X-Keptn-Context": `{{.KeptnContext}}`,
		},
		Body: `{"title": {{json .Problem.ProblemTitle}}, "cause": {{json .Problem.RootCause}},
 "value": {{json .Value}}, "channel": {{json .Value.channel}}, "team": {{json (index .Labels "no-such-label")}},
 "action": "{{.Action}}", "id": "{{.TriggeredID}}", "where": "{{.Project}}/{{.Stage}}/{{.Service}}"}`,
		Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
		Allow:   []string{"loopback"},
	}, options())

	out, err := run(t, h, request())
	if err != nil {
		t.Fatal(err)
	}
	wantURI := "/hooks/sockshop/production?service=carts&owner=team-a&n=3"
	if want := "POST " + srv.URL + wantURI + " answered 200 OK: ok"; out.Result != keptnv2.ResultPass || out.Message != want {
		t.Errorf("outcome = %+v, want pass %q", out, want)
	}
	got := srv.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	r := got[0]
	if r.method != http.MethodPost || r.uri != wantURI {
		t.Errorf("request = %s %s, want POST %s", r.method, r.uri, wantURI)
	}
	for k, want := range map[string]string{
		"Authorization": "Bearer " + token, "X-Severity": "critical",
		"X-Keptn-Context": "5b7c4f43-7a7e-4c3e-9a4b-2f3e4d5c6b7a", "Content-Type": "application/json",
		"User-Agent": "keptn-action-provider (webhook notify)",
	} {
		if v := r.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	want := map[string]any{
		"title": `Response time "degradation"`, "cause": "carts: CPU throttling",
		"value":   map[string]any{"channel": "#ops", "count": 3.0, "ratio": 1.5},
		"channel": "#ops", "team": "", "action": "notify", "id": "0d8a5f6e-1c2b-4a3d-8e9f-7a6b5c4d3e2f",
		"where": "sockshop/production/carts",
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body = %v\nwant %v", body, want)
	}
	// Numbers keep the digits they were written with.
	if !strings.Contains(r.body, `"ratio":1.50`) {
		t.Errorf("body %s: the value's 1.50 was not kept as written", r.body)
	}
}

func TestMethodsAndHeaders(t *testing.T) {
	tests := []struct {
		method, wantMethod string
		body               string
		headers            map[string]string
		wantType           string
	}{
		{method: "", wantMethod: "POST", body: "{}", wantType: "application/json"},
		{method: "put", wantMethod: "PUT", body: "x=1", headers: map[string]string{"content-type": "application/x-www-form-urlencoded"}, wantType: "application/x-www-form-urlencoded"},
		{method: "PATCH", wantMethod: "PATCH", body: "{}", wantType: "application/json"},
		{method: "GET", wantMethod: "GET", wantType: ""},
	}
	for _, tt := range tests {
		t.Run(tt.wantMethod, func(t *testing.T) {
			srv := newServer(t, answer(http.StatusNoContent, ""))
			h := newHandler(t, webhook.Config{Method: tt.method, URL: srv.URL, Body: tt.body, Headers: tt.headers, Allow: []string{"loopback"}}, options())
			out, err := run(t, h, request())
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.wantMethod + " " + srv.URL + " answered 204 No Content"; out.Message != want {
				t.Errorf("message = %q, want %q", out.Message, want)
			}
			r := srv.requests()[0]
			if r.method != tt.wantMethod || r.body != tt.body || r.header.Get("Content-Type") != tt.wantType {
				t.Errorf("got %s, body %q, Content-Type %q; want %s, %q, %q",
					r.method, r.body, r.header.Get("Content-Type"), tt.wantMethod, tt.body, tt.wantType)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	ok := "https://hooks.example.com/x"
	tests := []struct {
		name    string
		cfg     webhook.Config
		wantErr string // the start of the error
		want    string // a further substring
	}{
		{name: "no url", cfg: webhook.Config{}, wantErr: "url: missing"},
		{name: "unknown method", cfg: webhook.Config{URL: ok, Method: "DELETE"}, wantErr: `method: "DELETE" is not supported`},
		{name: "unparsable url", cfg: webhook.Config{URL: "{{.Project"}, wantErr: "url: template: url:1: unclosed action"},
		{name: "unknown function", cfg: webhook.Config{URL: ok + `/{{secrt "x"}}`}, wantErr: `url: template: url:1: function "secrt" not defined`},
		{
			name: "unknown field", cfg: webhook.Config{URL: ok + "/{{.Projet}}"},
			wantErr: "url: template: url:1:30: .Projet is not in the template data; the data has .Project, .Stage",
		},
		{
			name: "unknown field through $", cfg: webhook.Config{URL: ok, Body: `{{range .Labels}}{{$.Servce}}{{end}}`},
			wantErr: "body: template: body:1:", want: ".Servce is not in the template data",
		},
		{
			name: "unknown problem field", cfg: webhook.Config{URL: ok, Headers: map[string]string{"X-State": "{{.Problem.State}}"}},
			wantErr: "headers.X-State: template: headers.X-State:1:10: .Problem.State is not in the template data; .Problem has .ProblemTitle and .RootCause",
		},
		{
			name: "field of a string", cfg: webhook.Config{URL: ok, Body: "{{.Project.Name}}"},
			wantErr: "body: template: body:1:10: .Project is a string, which has no field Name",
		},
		{
			name: "unknown field inside with, found by the sample run", cfg: webhook.Config{URL: ok, Body: "{{with .Problem}}{{.Title}}{{end}}"},
			wantErr: "body: template: body:1:", want: "can't evaluate field Title",
		},
		{
			name:    "unknown secret",
			cfg:     webhook.Config{URL: ok, Headers: map[string]string{"Authorization": `Bearer {{secret "nope"}}`}, Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}}},
			wantErr: "headers.Authorization: template: headers.Authorization:1:", want: `no secret "nope" in settings.secrets (it has token)`,
		},
		{
			// A template that reads .Value does not run at start-up; its
			// secrets are checked all the same.
			name:    "unknown secret next to the value",
			cfg:     webhook.Config{URL: ok, Body: `{{json .Value}} {{secret "nope"}}`},
			wantErr: "body: template: body:1:", want: `no secret "nope" in settings.secrets (there are none)`,
		},
		{
			name:    "secret not set",
			cfg:     webhook.Config{URL: ok, Secrets: map[string]secret.Ref{"pagerToken": {Env: "PAGER_TOKEN"}}},
			wantErr: "secrets.pagerToken: environment variable PAGER_TOKEN is not set",
		},
		{name: "not http", cfg: webhook.Config{URL: "ftp://files.example.com/{{.Project}}"}, wantErr: `url: "ftp://files.example.com/sample-project" is not an absolute http or https URL`},
		{name: "relative url", cfg: webhook.Config{URL: "/hooks/{{.Project}}"}, wantErr: `url: "/hooks/sample-project" is not an absolute http or https URL`},
		{name: "retries", cfg: webhook.Config{URL: ok, Retries: intp(11)}, wantErr: "retries: 11 is out of range"},
		{name: "negative retries", cfg: webhook.Config{URL: ok, Retries: intp(-1)}, wantErr: "retries: -1 is out of range"},
		{name: "success status", cfg: webhook.Config{URL: ok, SuccessStatus: []int{200, 99}}, wantErr: "successStatus[1]: 99 is not a final HTTP status"},
		{name: "allow", cfg: webhook.Config{URL: ok, Allow: []string{"loopbak"}}, wantErr: `allow[0]: "loopbak" is not a rule; the rules are "loopback", "link-local", "private", "kubernetes-api" and "cluster-local"`},
		{name: "allowHosts url", cfg: webhook.Config{URL: ok, AllowHosts: []string{"hooks.example.com", "https://x.example.com/"}}, wantErr: `allowHosts[1]: "https://x.example.com/" is a URL`},
		{name: "allowHosts wildcard", cfg: webhook.Config{URL: ok, AllowHosts: []string{"hooks.*.com"}}, wantErr: `allowHosts[0]: "hooks.*.com": a wildcard may only lead a name`},
		{name: "header name", cfg: webhook.Config{URL: ok, Headers: map[string]string{"Bad Header": "x"}}, wantErr: `headers.Bad Header: "Bad Header" is not a valid header name`},
		{name: "host header", cfg: webhook.Config{URL: ok, Headers: map[string]string{"host": "kubernetes.default.svc"}}, wantErr: "headers.host: the host comes from url"},
		{name: "duplicate header", cfg: webhook.Config{URL: ok, Headers: map[string]string{"X-A": "1", "x-a": "2"}}, wantErr: "headers.x-a: the same header as headers.X-A"},
		{name: "line break in header", cfg: webhook.Config{URL: ok, Headers: map[string]string{"X-A": `{{"a\nb"}}`}}, wantErr: "headers.X-A: the value has a line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New("notify", tt.cfg, options())
			if err == nil {
				t.Fatalf("New succeeded, want %q", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant   %q…%q", err, tt.wantErr, tt.want)
			}
		})
	}
}

// TestNewAcceptsEventData checks that New does not refuse templates whose
// keys only an event can have.
func TestNewAcceptsEventData(t *testing.T) {
	for _, tmpl := range []string{
		"{{.Labels.anything}}",
		`{{index .Labels "team-name"}}`,
		"{{.Value.deep.path}}",
		"{{range .Value.items}}{{.name}}{{end}}",
		"{{with .Labels}}{{.severity}}{{end}}",
		"{{if .Value}}{{json .Value}}{{end}}",
		"{{$v := .Value}}{{$v.severity}}",
		`{{define "x"}}{{.whatever}}{{end}}{{template "x" .Labels}}`,
	} {
		t.Run(tmpl, func(t *testing.T) {
			if _, err := webhook.New("notify", webhook.Config{URL: "https://hooks.example.com/", Body: tmpl}, options()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewMasksSecrets(t *testing.T) {
	_, err := webhook.New("notify", webhook.Config{
		URL:     `{{secret "token"}}`,
		Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
	}, options())
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), `url: "***" is not`) {
		t.Errorf("error = %v; want the url error with the secret masked", err)
	}
}

func TestRunTemplateErrors(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, ""))
	tests := []struct {
		name    string
		cfg     webhook.Config
		req     func(*action.Request)
		wantErr string
	}{
		{
			name:    "missing label",
			cfg:     webhook.Config{URL: srv.URL + "/{{.Labels.team}}"},
			wantErr: `webhook "notify": url: template: url:1:` + fmt.Sprint(len(srv.URL)+10) + `: executing "url" at <.Labels.team>: map has no entry for key "team"`,
		},
		{
			name:    "missing value key",
			cfg:     webhook.Config{URL: srv.URL, Body: `{"to": {{json .Value.room}}}`},
			wantErr: `webhook "notify": body: template: body:1:20: executing "body" at <.Value.room>: map has no entry for key "room"`,
		},
		{
			name:    "no value",
			cfg:     webhook.Config{URL: srv.URL, Headers: map[string]string{"X-Channel": "{{.Value.channel}}"}},
			req:     func(r *action.Request) { r.Value = nil },
			wantErr: `webhook "notify": headers.X-Channel: template: headers.X-Channel:1:8: executing "headers.X-Channel" at <.Value.channel>: nil pointer evaluating interface {}.channel`,
		},
		{
			name:    "value not JSON",
			cfg:     webhook.Config{URL: srv.URL},
			req:     func(r *action.Request) { r.Value = json.RawMessage(`{"channel": `) },
			wantErr: `invalid value for action "notify": not valid JSON`,
		},
		{
			name:    "rendered url not http",
			cfg:     webhook.Config{URL: "{{.Value.url}}"},
			req:     func(r *action.Request) { r.Value = json.RawMessage(`{"url": "file:///etc/passwd"}`) },
			wantErr: `webhook "notify": url: "file:///etc/passwd" is not an absolute http or https URL`,
		},
		{
			name:    "line break in a header from the event",
			cfg:     webhook.Config{URL: srv.URL, Headers: map[string]string{"X-Owner": "{{.Labels.owner}}"}},
			req:     func(r *action.Request) { r.Labels = map[string]string{"owner": "a\r\nX-Injected: 1"} },
			wantErr: `webhook "notify": headers.X-Owner: the value has a line break`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Allow = []string{"loopback"}
			h := newHandler(t, tt.cfg, options())
			req := request()
			if tt.req != nil {
				tt.req(&req)
			}
			_, err := run(t, h, req)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error = %v\nwant    %s", err, tt.wantErr)
			}
			var r *action.Refusal
			if errors.As(err, &r) {
				t.Errorf("a template error is an error, not a refusal: %v", err)
			}
		})
	}
	if n := srv.hits(); n != 0 {
		t.Errorf("%d requests sent; a template error sends none", n)
	}
}

func TestStatuses(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		success  []int
		retries  *int
		wantPass bool
		wantFail string // the Fail message, after the URL
		wantErr  string // the error, after the URL
		hits     int
	}{
		{name: "200", status: 200, body: `{"ok":true}`, wantPass: true, hits: 1},
		{name: "202", status: 202, body: "queued", wantPass: true, hits: 1},
		{name: "204", status: 204, wantPass: true, hits: 1},
		{name: "400", status: 400, body: "bad request: missing routing_key", wantFail: " answered 400 Bad Request, which is not a success (any 2xx): bad request: missing routing_key", hits: 1},
		{name: "404", status: 404, body: "no such hook", wantFail: " answered 404 Not Found, which is not a success (any 2xx): no such hook", hits: 1},
		{name: "500 retried", status: 500, body: "boom", wantErr: " answered 500 Internal Server Error 3 times: boom", hits: 3},
		{name: "503 retried", status: 503, body: "down", wantErr: " answered 503 Service Unavailable 3 times: down", hits: 3},
		{name: "429 retried", status: 429, body: "slow down", wantErr: " answered 429 Too Many Requests 3 times: slow down", hits: 3},
		{name: "503 without retries", status: 503, retries: intp(0), wantErr: " answered 503 Service Unavailable", hits: 1},
		{name: "503 with 5 retries", status: 503, retries: intp(5), wantErr: " answered 503 Service Unavailable 6 times", hits: 6},
		{name: "custom success", status: 201, success: []int{201}, wantPass: true, hits: 1},
		{name: "2xx not in custom success", status: 200, success: []int{201, 202}, wantFail: " answered 200 OK, which is not in settings.successStatus (201, 202)", hits: 1},
		{name: "5xx in custom success", status: 503, success: []int{503}, wantPass: true, hits: 1},
		{name: "4xx in custom success", status: 409, body: "already open", success: []int{200, 409}, wantPass: true, hits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(tt.status, tt.body))
			h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", SuccessStatus: tt.success, Retries: tt.retries, Allow: []string{"loopback"}}, options())
			out, err := run(t, h, request())
			line := "POST " + srv.URL + "/hook"
			switch {
			case tt.wantPass:
				want := line + " answered " + fmt.Sprintf("%d %s", tt.status, http.StatusText(tt.status))
				if tt.body != "" {
					want += ": " + tt.body
				}
				if err != nil || out.Result != keptnv2.ResultPass || out.Message != want {
					t.Errorf("got %+v, %v; want pass %q", out, err, want)
				}
			case tt.wantFail != "":
				if err != nil || out.Result != keptnv2.ResultFailed || out.Message != line+tt.wantFail {
					t.Errorf("got %+v, %v; want fail %q", out, err, line+tt.wantFail)
				}
			default:
				if err == nil || err.Error() != line+tt.wantErr {
					t.Errorf("got %+v, %v; want error %q", out, err, line+tt.wantErr)
				}
			}
			if n := srv.hits(); n != tt.hits {
				t.Errorf("%d requests, want %d", n, tt.hits)
			}
		})
	}
}

func TestRetryThenPass(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback"}}, options())
	out, err := run(t, h, request())
	if want := "POST " + srv.URL + " answered 202 Accepted on attempt 2 of 3"; err != nil || out.Message != want {
		t.Errorf("got %+v, %v; want %q", out, err, want)
	}
}

func TestRetryAfter(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	opts := options()
	opts.MaxRetryAfter = 300 * time.Millisecond
	h := newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback"}}, opts)
	out, err := run(t, h, request())
	if err != nil || out.Result != keptnv2.ResultPass {
		t.Fatalf("got %+v, %v; want a pass", out, err)
	}
	got := srv.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	// The back-off alone waits a millisecond; Retry-After asks for 2s,
	// capped at 300ms.
	if gap := got[1].at.Sub(got[0].at); gap < 280*time.Millisecond || gap > 1500*time.Millisecond {
		t.Errorf("second attempt %s after the first; want about 300ms (Retry-After 2s, capped)", gap)
	}
}

func TestRetryAfterPastDeadline(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback"}}, options())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := h.Run(ctx, request())
	want := "POST " + srv.URL + " answered 503 Service Unavailable; it asked to wait 30s before trying again (Retry-After), which is past the action's deadline"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s; a wait past the deadline is not worth starting", d)
	}
}

// slow answers only after the request is cancelled or a second passed,
// whichever is first.
func slow(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(time.Second):
		w.WriteHeader(http.StatusOK)
	}
}

func TestAttemptTimeout(t *testing.T) {
	srv := newServer(t, slow)
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: action.Duration(50 * time.Millisecond), Allow: []string{"loopback"}}, options())
	start := time.Now()
	_, err := run(t, h, request())
	want := "POST " + srv.URL + " got no answer within 50ms (settings.timeout) 3 times"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("took %s; three attempts of 50ms should not", d)
	}
	if n := srv.hits(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestAttemptTimeoutThenPass(t *testing.T) {
	var n atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			slow(w, r)
			return
		}
		_, _ = w.Write([]byte("done"))
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: action.Duration(50 * time.Millisecond), Allow: []string{"loopback"}}, options())
	out, err := run(t, h, request())
	if want := "POST " + srv.URL + " answered 200 OK on attempt 2 of 3: done"; err != nil || out.Message != want {
		t.Errorf("got %+v, %v; want %q", out, err, want)
	}
}

func TestActionDeadlineBoundsRetries(t *testing.T) {
	srv := newServer(t, answer(http.StatusServiceUnavailable, "down"))
	opts := options()
	opts.Backoff.Initial, opts.Backoff.Max = 100*time.Millisecond, 100*time.Millisecond
	h := newHandler(t, webhook.Config{URL: srv.URL, Retries: intp(10), Allow: []string{"loopback"}}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Run(ctx, request())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "answered 503 Service Unavailable") {
		t.Errorf("error = %v; want the deadline and the last answer", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s; the action's deadline is 250ms", d)
	}
	// Eleven attempts 100ms apart do not fit in 250ms. How many do depends
	// on the machine's load, so only the bound is checked.
	if n := srv.hits(); n < 1 || n > 5 {
		t.Errorf("%d requests; want a few, as many as fit in 250ms", n)
	}
}

func TestActionDeadlineDuringAttempt(t *testing.T) {
	srv := newServer(t, slow)
	h := newHandler(t, webhook.Config{URL: srv.URL, Timeout: action.Duration(5 * time.Second), Allow: []string{"loopback"}}, options())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Run(ctx, request())
	if want := "POST " + srv.URL + ": stopped during attempt 1 of 3: context deadline exceeded"; err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v does not wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s; the action's deadline is 100ms", d)
	}
}

func TestConnectionErrorsRetried(t *testing.T) {
	// A server that hangs up on every connection.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	url := "http://" + l.Addr().String() + "/hook"
	h := newHandler(t, webhook.Config{URL: url, Allow: []string{"loopback"}}, options())
	_, err = run(t, h, request())
	if want := "POST " + url + " failed 3 times: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %v; want %q…", err, want)
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestSecretsMasked(t *testing.T) {
	// The server echoes the Authorization header, as a misbehaving or
	// debugging endpoint might.
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprintf(w, "you sent %q to %s", r.Header.Get("Authorization"), r.URL)
		}
	}
	for _, status := range []int{200, 401, 500} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := newServer(t, echo(status))
			masker := &secret.Masker{}
			opts := options()
			opts.Masker = masker
			h := newHandler(t, webhook.Config{
				URL:     strings.Replace(srv.URL, "http://", "http://user:"+"hunter22@", 1) + `/hook?key={{secret "token" | urlquery}}&q=1`,
				Headers: map[string]string{"Authorization": `Bearer {{secret "token"}}`},
				Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
				Retries: intp(0),
				Allow:   []string{"loopback"},
			}, opts)
			out, err := run(t, h, request())
			text := out.Message
			if err != nil {
				text = err.Error()
			}
			if got := srv.requests()[0].header.Get("Authorization"); got != "Bearer "+token {
				t.Fatalf("the server got Authorization %q; the secret must be sent", got)
			}
			for _, leak := range []string{token, "s3cr3t", "hunter22", "user:"} {
				if strings.Contains(text, leak) {
					t.Errorf("message %q shows %q", text, leak)
				}
			}
			wantStart := "POST " + srv.URL + "/hook?key=***&q=1 answered "
			if !strings.HasPrefix(text, wantStart) || !strings.Contains(text, `you sent "Bearer ***" to /hook?key=***&q=1`) {
				t.Errorf("message = %q\nwant %q… with the echo masked", text, wantStart)
			}
			if masker.String(token) != secret.Mask {
				t.Error("the shared masker did not learn the secret")
			}
		})
	}
}

func TestConnectionErrorMasked(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	h := newHandler(t, webhook.Config{
		URL:     "http://" + addr + `/{{secret "token"}}`,
		Secrets: map[string]secret.Ref{"token": {Env: "OTHER_KEY"}},
		Retries: intp(1),
		Allow:   []string{"loopback"},
	}, options())
	_, err = run(t, h, request())
	if want := "POST http://" + addr + "/*** failed 2 times: dial tcp " + addr + ": connect: connection refused"; err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		maxExcerpt int
		want       string // the message after "answered 200 OK"
	}{
		{name: "empty", body: "", want: ""},
		{name: "short", body: "queued", want: ": queued"},
		{name: "whitespace collapsed", body: "{\n  \"ok\": true,\n  \"id\": 7\n}\n", want: `: { "ok": true, "id": 7 }`},
		{name: "default bound", body: strings.Repeat("x", 2000), want: ": " + strings.Repeat("x", 256) + "…[1744 more bytes]"},
		{name: "bound at most 512", body: strings.Repeat("x", 2000), maxExcerpt: 4096, want: ": " + strings.Repeat("x", 512) + "…[1488 more bytes]"},
		{name: "set bound", body: strings.Repeat("y", 100), maxExcerpt: 16, want: ": " + strings.Repeat("y", 16) + "…[84 more bytes]"},
		{name: "exactly the bound", body: strings.Repeat("z", 16), maxExcerpt: 16, want: ": " + strings.Repeat("z", 16)},
		{name: "characters not cut", body: strings.Repeat("é", 300), maxExcerpt: 5, want: ": éé…[596 more bytes]"},
		{name: "invalid UTF-8", body: "ok\xff\xfe", want: ": ok\uFFFD"},
		{
			// Cut first and masked after, the secret's start would show.
			name: "secret across the bound", body: strings.Repeat("a", 510) + token + "tail", maxExcerpt: 512,
			want: ": " + strings.Repeat("a", 510) + "**…[5 more bytes]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(http.StatusOK, tt.body))
			opts := options()
			opts.MaxExcerpt = tt.maxExcerpt
			h := newHandler(t, webhook.Config{
				URL: srv.URL, Allow: []string{"loopback"},
				Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
			}, opts)
			out, err := run(t, h, request())
			if want := "POST " + srv.URL + " answered 200 OK" + tt.want; err != nil || out.Message != want {
				t.Errorf("got %q, %v\nwant %q", out.Message, err, want)
			}
		})
	}
}

func TestMessageBound(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, strings.Repeat("ü", 20000)))
	opts := options()
	opts.MaxExcerpt = 100000
	h := newHandler(t, webhook.Config{URL: srv.URL + "/" + strings.Repeat("p", 1000), Allow: []string{"loopback"}}, opts)
	out, err := run(t, h, request())
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Message) > 1024 || !strings.Contains(out.Message, "ü…[") {
		t.Errorf("message of %d bytes: %q; want at most 1024, the excerpt cut at a character", len(out.Message), out.Message)
	}
	if !strings.Contains(out.Message, "/"+strings.Repeat("p", 200)) || strings.Contains(out.Message, strings.Repeat("p", 400)) {
		t.Error("a long URL should be quoted, but only in part")
	}
}

func TestDryRun(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, ""))
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", Body: "{}", Allow: []string{"loopback"}}, options())
	req := request()
	req.DryRun = true
	out, err := run(t, h, req)
	if want := "dry run: would POST " + srv.URL + "/hook with a 2-byte body; the egress rules allow it"; err != nil || out.Message != want {
		t.Errorf("got %+v, %v; want %q", out, err, want)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("a dry run made %d connections", n)
	}

	// The egress rules, DNS included, apply to a dry run too.
	h = newHandler(t, webhook.Config{URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)}, options())
	_, err = run(t, h, req)
	if r := refusal(t, err); !strings.Contains(r.Reason, "localhost resolves to 127.0.0.1, a loopback address") {
		t.Errorf("reason = %q", r.Reason)
	}
}

func TestValidate(t *testing.T) {
	h := newHandler(t, webhook.Config{
		URL:     "https://hooks.example.com/{{.Labels.team}}",
		Body:    `{"room": {{json .Value.room}}, "title": {{json .Problem.ProblemTitle}}}`,
		Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
		Headers: map[string]string{"Authorization": `{{secret "token"}}`},
	}, options())
	tests := []struct {
		name, value, wantErr string
	}{
		{name: "value with the key", value: `{"room": "#ops", "extra": [1, 2]}`},
		{name: "value without the key", value: `{"channel": "#ops"}`, wantErr: `body: template: body:1:22: executing "body" at <.Value.room>: map has no entry for key "room"`},
		{name: "no value", value: ``, wantErr: `body: template: body:1:22: executing "body" at <.Value.room>: nil pointer evaluating interface {}.room`},
		{name: "not JSON", value: `{"room": `, wantErr: "invalid value: not valid JSON"},
		{name: "two values", value: `{} {}`, wantErr: "invalid value: not valid JSON: more than one value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Validate(json.RawMessage(tt.value))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Errorf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, ok := any(h).(action.Validator); !ok {
		t.Error("Handler is not an action.Validator")
	}
}

func TestConcurrentRuns(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.URL.Query().Get("n")))
	})
	h := newHandler(t, webhook.Config{URL: srv.URL + "/?n={{.Value.n}}", Allow: []string{"loopback"}}, options())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			req := request()
			req.Value = json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))
			out, err := run(t, h, req)
			if want := fmt.Sprintf("answered 200 OK: %d", i); err != nil || !strings.HasSuffix(out.Message, want) {
				t.Errorf("run %d: %+v, %v", i, out, err)
			}
		})
	}
	wg.Wait()
}

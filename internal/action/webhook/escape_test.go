package webhook_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// TestEscapedByPlace checks that event data cannot leave the place of
// the request it is written into: a path segment, a query component, a
// JSON string or value, a form field, a header.
func TestEscapedByPlace(t *testing.T) {
	tests := []struct {
		name    string
		url     string // after the server's address
		headers map[string]string
		body    string
		event   func(*action.Request)
		wantURI string
		// wantJSON is the body, decoded; wantBody the body as sent.
		wantJSON map[string]any
		wantBody string
		wantErr  string
	}{
		{
			name: "../ in a path segment", url: "/hooks/{{.Project}}/{{.Service}}",
			event:   func(r *action.Request) { r.Service = "../../admin" },
			wantURI: "/hooks/sockshop/..%2F..%2Fadmin",
		},
		{
			name: "/ in a path segment", url: "/hooks/{{.Project}}/{{.Service}}/run",
			event:   func(r *action.Request) { r.Project = "a/b" },
			wantURI: "/hooks/a%2Fb/carts/run",
		},
		{
			name: ".. as a path segment", url: "/hooks/{{.Project}}/{{.Service}}",
			event:   func(r *action.Request) { r.Service = ".." },
			wantErr: `has a ".." segment in its path`,
		},
		{
			name: "query and fragment in a path segment", url: "/hooks/{{.Service}}",
			event:   func(r *action.Request) { r.Service = "x?admin=true#y" },
			wantURI: "/hooks/x%3Fadmin%3Dtrue%23y",
		},
		{
			name: "space in a path segment", url: "/hooks/{{.Service}}",
			event:   func(r *action.Request) { r.Service = "my service" },
			wantURI: "/hooks/my%20service",
		},
		{
			name: "& and = in a query component", url: "/hooks?team={{index .Labels \"owner\"}}&x=1",
			event:   func(r *action.Request) { r.Labels["owner"] = "a&admin=true" },
			wantURI: "/hooks?team=a%26admin%3Dtrue&x=1",
		},
		{
			name: "space in a query component", url: "/hooks?team={{.Labels.owner}}",
			event:   func(r *action.Request) { r.Labels["owner"] = "team a HTTP/1.1\tx" },
			wantURI: "/hooks?team=team+a+HTTP%2F1.1%09x",
		},
		{
			name: "pathSegment and urlquery are not escaped twice", url: "/hooks/{{.Service | pathSegment}}?s={{.Service | urlquery}}",
			event:   func(r *action.Request) { r.Service = "a b/c" },
			wantURI: "/hooks/a%20b%2Fc?s=a+b%2Fc",
		},
		{
			name: "urlquery in a path is escaped as a path", url: "/hooks/{{.Service | urlquery}}",
			event:   func(r *action.Request) { r.Service = "a&b" },
			wantURI: "/hooks/a%2526b",
		},
		{
			name: "the package's example: data inside a JSON string", url: "/",
			body:     `{"source": "{{.Project}}/{{.Stage}}/{{.Service}}", "admin": false}`,
			event:    func(r *action.Request) { r.Service = `x","admin":true,"y":"` },
			wantJSON: map[string]any{"source": `sockshop/production/x","admin":true,"y":"`, "admin": false},
		},
		{
			name: "data outside a JSON string", url: "/",
			body:     `{"owner": {{.Labels.owner}}, "admin": false}`,
			event:    func(r *action.Request) { r.Labels["owner"] = `1, "admin": true` },
			wantJSON: map[string]any{"owner": `1, "admin": true`, "admin": false},
		},
		{
			name: "a value outside a JSON string is JSON", url: "/",
			body:     `{"count": {{.Value.count}}, "channel": {{.Value.channel}}, "all": {{.Value}}}`,
			wantJSON: map[string]any{"count": 3.0, "channel": "#ops", "all": map[string]any{"channel": "#ops", "count": 3.0, "ratio": 1.5}},
		},
		{
			name: "json inside a JSON string", url: "/",
			body:     `{"title": "{{json .Problem.ProblemTitle}}"}`,
			wantJSON: map[string]any{"title": `"Response time \"degradation\""`},
		},
		{
			name: "a key and a range", url: "/",
			body:     `{ {{range $k, $v := .Labels}}"{{$k}}": "{{$v}}", {{end}}"end": true}`,
			event:    func(r *action.Request) { r.Labels = map[string]string{`a"b`: `c"d`} },
			wantJSON: map[string]any{`a"b`: `c"d`, "end": true},
		},
		{
			name: "a vendor JSON type", url: "/", headers: map[string]string{"Content-Type": "application/vnd.api+json; charset=utf-8"},
			body:     `{"s": "{{.Service}}"}`,
			event:    func(r *action.Request) { r.Service = `"}` },
			wantJSON: map[string]any{"s": `"}`},
		},
		{
			name: "a form body", url: "/", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			body:     "team={{.Labels.owner}}&admin=false",
			event:    func(r *action.Request) { r.Labels["owner"] = "a&admin=true" },
			wantBody: "team=a%26admin%3Dtrue&admin=false",
		},
		{
			name: "a text body is written as it is", url: "/", headers: map[string]string{"Content-Type": "text/plain"},
			body:     `{{.Problem.ProblemTitle}} in {{.Service}}`,
			wantBody: `Response time "degradation" in carts`,
		},
		{
			name: "a header with a control character", url: "/", headers: map[string]string{"X-Owner": "{{.Labels.owner}}"},
			event:   func(r *action.Request) { r.Labels["owner"] = "a\x00b" },
			wantErr: `webhook "notify": headers.X-Owner: the value has the control character '\x00', which a header cannot carry`,
		},
		{
			name: "a header with a line break", url: "/", headers: map[string]string{"X-Owner": "team {{.Labels.owner}}"},
			event:   func(r *action.Request) { r.Labels["owner"] = "a\nX-Admin: true" },
			wantErr: `webhook "notify": headers.X-Owner: the value has a line break`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(http.StatusOK, "ok"))
			h := newHandler(t, webhook.Config{
				URL: srv.URL + tt.url, Headers: tt.headers, Body: tt.body,
				Allow: []string{"loopback"}, Retries: intp(0),
			}, options())
			req := request()
			if tt.event != nil {
				tt.event(&req)
			}
			_, err := run(t, h, req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want %q", err, tt.wantErr)
				}
				if n := srv.hits(); n != 0 {
					t.Errorf("%d requests sent", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := srv.requests()[0]
			if tt.wantURI != "" && got.uri != tt.wantURI {
				t.Errorf("request URI %s\nwant        %s", got.uri, tt.wantURI)
			}
			if tt.wantBody != "" && got.body != tt.wantBody {
				t.Errorf("body %s\nwant %s", got.body, tt.wantBody)
			}
			if tt.wantJSON != nil {
				var body map[string]any
				if err := json.Unmarshal([]byte(got.body), &body); err != nil {
					t.Fatalf("body is not JSON: %v\n%s", err, got.body)
				}
				if !reflect.DeepEqual(body, tt.wantJSON) {
					t.Errorf("body %s\nwant %v", got.body, tt.wantJSON)
				}
			}
		})
	}
}

// TestHostEscaped checks a value written into the URL's host: it may
// name a host, but not end the host and go on to a path, a query or
// another host.
func TestHostEscaped(t *testing.T) {
	var lookups atomic.Int32
	opts := options()
	opts.Resolver = noDNS(&lookups)
	h := newHandler(t, webhook.Config{URL: "https://{{.Labels.region}}.hooks.example.com/x"}, opts)
	for _, region := range []string{"evil.example.net/", "evil.example.net?", "evil.example.net#", "user@evil.example.net", "a b"} {
		req := request()
		req.Labels["region"] = region
		_, err := run(t, h, req)
		if err == nil || !strings.Contains(err.Error(), "cannot be written into the URL's host") {
			t.Errorf("region %q: %v; want it refused", region, err)
		}
	}
	if n := lookups.Load(); n != 0 {
		t.Errorf("%d DNS lookups; the refused hosts were looked up", n)
	}
}

// TestEscapingErrors checks the templates whose places cannot be known,
// refused at start-up.
func TestEscapingErrors(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{name: "after a backslash", body: `{"a": "\{{.Service}}"}`, wantErr: "body: template: body:1:10: an action right after a backslash in a JSON string"},
		{name: "branches end apart", body: `{"a": {{if .Labels.x}}"{{end}}x"}`, wantErr: "body: template: body:1:11: one branch ends inside a JSON string, another outside a JSON string"},
		{name: "range ends elsewhere", body: `[{{range .Labels}}"{{.}}{{end}}"]`, wantErr: "the body of this {{range}} ends inside a JSON string but starts outside a JSON string"},
		{name: "template called from two places", body: `{{define "t"}}{{.}}{{end}}{"a": {{template "t" .Service}}, "b": "{{template "t" .Stage}}"}`, wantErr: `template "t" is called outside a JSON string and inside a JSON string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New("notify", webhook.Config{URL: "https://hooks.example.com/", Body: tt.body}, options())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v\nwant %q", err, tt.wantErr)
			}
		})
	}
}

// TestSecretNeedsPinnedHost checks that an event cannot choose where a
// secret goes: a webhook whose scheme, host or port comes from event
// data and whose request carries a secret is refused at start-up unless
// allowHosts pins the host.
func TestSecretNeedsPinnedHost(t *testing.T) {
	bearer := map[string]string{"Authorization": `Bearer {{secret "token"}}`}
	tests := []struct {
		name       string
		cfg        webhook.Config
		refused    bool
		noSecretOK bool
	}{
		{name: "host from a label, secret in a header", cfg: webhook.Config{URL: "https://{{.Labels.host}}/hook", Headers: bearer}, refused: true},
		{name: "host from the value", cfg: webhook.Config{URL: "https://{{.Value.host}}/hook", Headers: bearer}, refused: true},
		{name: "the whole URL from the value, secret in the body", cfg: webhook.Config{URL: "{{.Value.url}}", Body: `{"key": {{json (secret "token")}}}`}, refused: true},
		{name: "scheme from the value", cfg: webhook.Config{URL: `{{.Value.scheme}}://hooks.example.com/`, Headers: bearer}, refused: true},
		{name: "part of the host, secret in the query", cfg: webhook.Config{URL: `https://{{.Labels.region}}.example.com/?key={{secret "token"}}`}, refused: true},
		{name: "port from the value", cfg: webhook.Config{URL: `https://hooks.example.com:{{.Value.port}}/`, Headers: bearer}, refused: true},
		{name: "through a variable", cfg: webhook.Config{URL: `{{$h := .Labels.host}}https://{{$h}}/`, Headers: bearer}, refused: true},
		{name: "credentials written in the URL", cfg: webhook.Config{URL: `https://user:pw@{{.Labels.host}}/`}, refused: true},
		{name: "pinned by allowHosts", cfg: webhook.Config{URL: "https://{{.Labels.host}}/hook", Headers: bearer, AllowHosts: []string{"*.example.com"}}},
		{name: "no secret", cfg: webhook.Config{URL: "https://{{.Labels.host}}/hook", Headers: map[string]string{"X-A": "b"}}},
		{name: "data only in the path", cfg: webhook.Config{URL: "https://hooks.example.com/{{.Labels.host}}", Headers: bearer}},
		{name: "the host is a secret, not event data", cfg: webhook.Config{URL: `https://{{secret "token" | printf "%.4s"}}.example.com/`, Headers: bearer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Secrets = map[string]secret.Ref{"token": {Env: "OTHER_KEY"}}
			_, err := webhook.New("page-oncall", tt.cfg, options())
			switch {
			case tt.refused && err == nil:
				t.Error("New succeeded; the event could send the secret anywhere")
			case tt.refused && (!strings.HasPrefix(err.Error(), `webhook "page-oncall": url: `) || !strings.Contains(err.Error(), "pin the host with settings.allowHosts")):
				t.Errorf("error = %v; want it to name the entry and allowHosts", err)
			case !tt.refused && err != nil:
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// TestDocumentedExample runs the package documentation's example on an
// event that tries to add keys to its JSON.
func TestDocumentedExample(t *testing.T) {
	srv := newServer(t, answer(http.StatusAccepted, ""))
	h := newHandler(t, webhook.Config{
		URL:     srv.URL + "/v2/enqueue",
		Headers: map[string]string{"Authorization": `Token token={{secret "pager"}}`},
		Body: `{"routing_key": {{json (secret "routingKey")}},
 "event_action": "trigger",
 "payload": {"summary": {{.Problem.ProblemTitle}},
             "source": "{{.Project}}/{{.Stage}}/{{.Service}}",
             "severity": {{.Labels.severity}}}}`,
		Secrets: map[string]secret.Ref{"pager": {Env: "OTHER_KEY"}, "routingKey": {Env: "HOOK_TOKEN"}},
		Allow:   []string{"loopback"},
	}, options())
	req := request()
	const inject = `","admin":true,"x":"`
	req.Service, req.Problem.ProblemTitle, req.Labels["severity"] = inject, inject, `1}, "admin": {"a": 1`
	if _, err := run(t, h, req); err != nil {
		t.Fatal(err)
	}
	var body struct {
		RoutingKey  string            `json:"routing_key"`
		EventAction string            `json:"event_action"`
		Payload     map[string]string `json:"payload"`
	}
	dec := json.NewDecoder(strings.NewReader(srv.requests()[0].body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body: %v\n%s", err, srv.requests()[0].body)
	}
	want := map[string]string{"summary": inject, "source": "sockshop/production/" + inject, "severity": `1}, "admin": {"a": 1`}
	if body.RoutingKey != token || !reflect.DeepEqual(body.Payload, want) {
		t.Errorf("body = %+v", body)
	}
}

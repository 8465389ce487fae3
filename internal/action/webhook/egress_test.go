package webhook_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// These tests send nothing beyond loopback: every refused destination is
// refused before a connection, and the tests show that it was.

func TestRefusesLoopbackByDefault(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, ""))
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook"}, options())
	_, err := run(t, h, request())
	r := refusal(t, err)
	want := "POST " + srv.URL + "/hook: 127.0.0.1 is a loopback address, which reaches this pod itself; add \"loopback\" to settings.allow to permit it"
	if r.Reason != want {
		t.Errorf("reason = %q\nwant     %q", r.Reason, want)
	}
	if want := "refused (webhook egress): " + want; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections to the refused address", n)
	}
}

func TestRefusesNameResolvingToLoopback(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, ""))
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/hook"
	h := newHandler(t, webhook.Config{URL: url}, options())
	_, err := run(t, h, request())
	r := refusal(t, err)
	want := "POST " + url + ": localhost resolves to 127.0.0.1, a loopback address, which reaches this pod itself; add \"loopback\" to settings.allow to permit it"
	if r.Reason != want {
		t.Errorf("reason = %q\nwant     %q", r.Reason, want)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections to the refused address", n)
	}
}

func TestRefusesAddresses(t *testing.T) {
	tests := []struct {
		name  string
		url   string
		allow []string
		kube  string
		want  string // the reason after "POST <url>: "
	}{
		{
			name: "metadata", url: "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
			want: `169.254.169.254 is a link-local address: the cloud metadata service, which hands out the node's credentials; add "link-local" to settings.allow to permit it`,
		},
		{
			name: "metadata, private allowed", url: "http://169.254.169.254/latest/meta-data", allow: []string{"private", "loopback"},
			want: `169.254.169.254 is a link-local address: the cloud metadata service, which hands out the node's credentials; add "link-local" to settings.allow to permit it`,
		},
		{name: "link-local v6", url: "http://[fe80::1]/", want: `fe80::1 is a link-local address; add "link-local" to settings.allow to permit it`},
		{name: "private 10/8", url: "http://10.0.0.1/hook", want: `10.0.0.1 is a private address (10.0.0.0/8); add "private" to settings.allow to permit it`},
		{name: "private 172.16/12", url: "https://172.20.1.2:8443/", want: `172.20.1.2 is a private address (172.16.0.0/12); add "private" to settings.allow to permit it`},
		{name: "private 192.168/16", url: "http://192.168.1.1/", want: `192.168.1.1 is a private address (192.168.0.0/16); add "private" to settings.allow to permit it`},
		{name: "shared 100.64/10", url: "http://100.100.100.200/", want: `100.100.100.200 is a private address (100.64.0.0/10, shared address space); add "private" to settings.allow to permit it`},
		{name: "unique local v6", url: "http://[fd12::1]/", want: `fd12::1 is a private address (fc00::/7, unique local); add "private" to settings.allow to permit it`},
		{name: "loopback v6", url: "http://[::1]:8080/", want: `::1 is a loopback address, which reaches this pod itself; add "loopback" to settings.allow to permit it`},
		{name: "loopback mapped into v6", url: "http://[::ffff:127.0.0.1]/", want: `127.0.0.1 is a loopback address, which reaches this pod itself; add "loopback" to settings.allow to permit it`},
		{name: "other loopback", url: "http://127.1.2.3/", want: `127.1.2.3 is a loopback address, which reaches this pod itself; add "loopback" to settings.allow to permit it`},
		{name: "unspecified", url: "http://0.0.0.0:8080/", allow: []string{"loopback", "private"}, want: `0.0.0.0 is an unspecified address, which reaches this host itself; no setting permits it`},
		{name: "unspecified v6", url: "http://[::]/", want: `:: is an unspecified address, which reaches this host itself; no setting permits it`},
		{name: "multicast", url: "http://224.0.0.1/", want: `224.0.0.1 is a multicast address; no setting permits it`},
		{
			name: "kubernetes service address", url: "https://10.96.0.1/api/v1/secrets", kube: "10.96.0.1", allow: []string{"private"},
			want: `10.96.0.1 is the Kubernetes API server's service address (KUBERNETES_SERVICE_HOST); add "kubernetes-api" to settings.allow to permit it`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lookups atomic.Int32
			opts := options()
			opts.Resolver = noDNS(&lookups)
			opts.KubernetesServiceHost = tt.kube
			// With 5s attempts, a dial of an unroutable address would
			// show in the time taken.
			h := newHandler(t, webhook.Config{URL: tt.url, Allow: tt.allow, Timeout: action.Duration(5 * time.Second)}, opts)
			start := time.Now()
			_, err := run(t, h, request())
			r := refusal(t, err)
			if want := "POST " + tt.url + ": " + tt.want; r.Reason != want {
				t.Errorf("reason = %q\nwant     %q", r.Reason, want)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("refused after %s; an address is refused without dialing", d)
			}
			if n := lookups.Load(); n != 0 {
				t.Errorf("%d DNS lookups for an address", n)
			}
		})
	}
}

func TestRefusesNames(t *testing.T) {
	tests := []struct {
		host  string
		allow []string
		want  string
	}{
		{host: "kubernetes", want: `kubernetes is a name of the Kubernetes API server; add "kubernetes-api" to settings.allow to permit it`},
		{host: "kubernetes.default", want: `kubernetes.default is a name of the Kubernetes API server; add "kubernetes-api"`},
		{host: "kubernetes.default.svc", allow: []string{"cluster-local", "private"}, want: `kubernetes.default.svc is a name of the Kubernetes API server; add "kubernetes-api"`},
		{host: "kubernetes.default.svc.cluster.local", allow: []string{"cluster-local"}, want: `kubernetes.default.svc.cluster.local is a name of the Kubernetes API server; add "kubernetes-api"`},
		{host: "Kubernetes.Default.SVC.", want: `kubernetes.default.svc is a name of the Kubernetes API server`},
		{host: "foo.ns.svc.cluster.local", want: `foo.ns.svc.cluster.local is a cluster-local service name (*.cluster.local); add "cluster-local" to settings.allow to permit it`},
		{host: "foo.ns.svc.cluster.local.", want: `foo.ns.svc.cluster.local is a cluster-local service name (*.cluster.local)`},
		{host: "prometheus.monitoring.svc", allow: []string{"private"}, want: `prometheus.monitoring.svc is a cluster-local service name (*.svc); add "cluster-local" to settings.allow to permit it`},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			var lookups atomic.Int32
			opts := options()
			opts.Resolver = noDNS(&lookups)
			url := "https://" + tt.host + "/api/v1/namespaces/default/secrets"
			h := newHandler(t, webhook.Config{URL: url, Allow: tt.allow}, opts)
			_, err := run(t, h, request())
			r := refusal(t, err)
			if want := "POST " + url + ": " + tt.want; !strings.HasPrefix(r.Reason, want) {
				t.Errorf("reason = %q\nwant     %q…", r.Reason, want)
			}
			if n := lookups.Load(); n != 0 {
				t.Errorf("%d DNS lookups; a name rule refuses before DNS", n)
			}
		})
	}
}

func TestRefusesKubernetesServiceHost(t *testing.T) {
	// The API server's address is refused even where loopback and private
	// addresses are allowed.
	srv := newServer(t, answer(http.StatusOK, ""))
	opts := options()
	opts.KubernetesServiceHost = "127.0.0.1"
	h := newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback", "private"}}, opts)
	_, err := run(t, h, request())
	r := refusal(t, err)
	want := "POST " + srv.URL + ": 127.0.0.1 is the Kubernetes API server's service address (KUBERNETES_SERVICE_HOST); add \"kubernetes-api\" to settings.allow to permit it"
	if r.Reason != want {
		t.Errorf("reason = %q\nwant     %q", r.Reason, want)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("%d connections to the API server's address", n)
	}

	h = newHandler(t, webhook.Config{URL: srv.URL, Allow: []string{"loopback", "kubernetes-api"}}, opts)
	if out, err := run(t, h, request()); err != nil {
		t.Errorf("with kubernetes-api allowed: %+v, %v", out, err)
	}
}

func TestAllowedLoopback(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/final", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("landed on " + r.URL.Path))
	})
	h := newHandler(t, webhook.Config{URL: srv.URL + "/start", Allow: []string{"loopback"}}, options())
	out, err := run(t, h, request())
	want := "POST " + srv.URL + "/start was redirected to " + srv.URL + "/final, which answered 200 OK: landed on /final"
	if err != nil || out.Message != want {
		t.Errorf("got %+v, %v\nwant %q", out, err, want)
	}
}

func TestRedirectToMetadataRefused(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", Allow: []string{"loopback"}, Timeout: action.Duration(5 * time.Second)}, options())
	start := time.Now()
	_, err := run(t, h, request())
	r := refusal(t, err)
	want := "POST " + srv.URL + "/hook was redirected (302 Found) to http://169.254.169.254/latest/meta-data/, which was not followed: " +
		`169.254.169.254 is a link-local address: the cloud metadata service, which hands out the node's credentials; add "link-local" to settings.allow to permit it`
	if r.Reason != want {
		t.Errorf("reason = %q\nwant     %q", r.Reason, want)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("refused after %s; the redirect is refused without dialing", d)
	}
	if n := srv.hits(); n != 1 {
		t.Errorf("%d requests; a refusal is not retried", n)
	}
}

func TestRedirectRefusals(t *testing.T) {
	tests := []struct {
		name       string
		location   func(srvURL string) string
		allowHosts []string
		want       string // the reason after "POST <url>/hook was redirected (302 Found) to "
	}{
		{
			name:     "by name",
			location: func(string) string { return "https://kubernetes.default.svc/api/v1/secrets" },
			want:     `https://kubernetes.default.svc/api/v1/secrets, which was not followed: kubernetes.default.svc is a name of the Kubernetes API server; add "kubernetes-api" to settings.allow to permit it`,
		},
		{
			name:       "outside allowHosts",
			location:   func(u string) string { return strings.Replace(u, "127.0.0.1", "localhost", 1) + "/other" },
			allowHosts: []string{"127.0.0.1", "hooks.example.com"},
			want:       `/other, which was not followed: localhost is not in settings.allowHosts (127.0.0.1, hooks.example.com); add it there to permit it`,
		},
		{
			name:     "private address",
			location: func(string) string { return "http://10.1.2.3:9093/api/v2/alerts" },
			want:     `http://10.1.2.3:9093/api/v2/alerts, which was not followed: 10.1.2.3 is a private address (10.0.0.0/8); add "private" to settings.allow to permit it`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srv *server
			srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hook" {
					http.Redirect(w, r, tt.location(srv.URL), http.StatusFound)
				}
			})
			var lookups atomic.Int32
			opts := options()
			opts.Resolver = noDNS(&lookups)
			h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", Allow: []string{"loopback"}, AllowHosts: tt.allowHosts}, opts)
			_, err := run(t, h, request())
			r := refusal(t, err)
			prefix := "POST " + srv.URL + "/hook was redirected (302 Found) to "
			if !strings.HasPrefix(r.Reason, prefix) || !strings.HasSuffix(r.Reason, tt.want) {
				t.Errorf("reason = %q\nwant     %q…%q", r.Reason, prefix, tt.want)
			}
			if n := srv.hits(); n != 1 {
				t.Errorf("%d requests reached the server; the redirect target is never requested", n)
			}
			if n := lookups.Load(); n != 0 {
				t.Errorf("%d DNS lookups", n)
			}
		})
	}
}

func TestAllowHosts(t *testing.T) {
	srv := newServer(t, answer(http.StatusOK, ""))
	tests := []struct {
		hosts []string
		ok    bool
	}{
		{hosts: []string{"127.0.0.1"}, ok: true},
		{hosts: []string{"127.0.0.0/8"}, ok: true},
		{hosts: []string{"hooks.example.com", "127.0.0.1/32"}, ok: true},
		{hosts: []string{"hooks.example.com"}},
		{hosts: []string{"*.example.com"}},
		{hosts: []string{"127.0.0.2", "10.0.0.0/8"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.hosts, ","), func(t *testing.T) {
			h := newHandler(t, webhook.Config{URL: srv.URL, AllowHosts: tt.hosts, Allow: []string{"loopback"}}, options())
			_, err := run(t, h, request())
			if tt.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tt.ok {
				r := refusal(t, err)
				want := fmt.Sprintf("POST %s: 127.0.0.1 is not in settings.allowHosts (%s); add it there to permit it", srv.URL, strings.Join(tt.hosts, ", "))
				if r.Reason != want {
					t.Errorf("reason = %q\nwant     %q", r.Reason, want)
				}
			}
		})
	}
}

func TestTooManyRedirects(t *testing.T) {
	var srv *server
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/hop%d", srv.hits()), http.StatusTemporaryRedirect)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", Allow: []string{"loopback"}}, options())
	_, err := run(t, h, request())
	want := "POST " + srv.URL + "/hook was redirected 6 times, the last time (307 Temporary Redirect) to " + srv.URL + "/hop6, which was not followed: that is more than 5 redirects"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	if n := srv.hits(); n != 6 {
		t.Errorf("%d requests, want 6: the first and 5 redirects", n)
	}
}

func TestSuccessStatusRedirectNotFollowed(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusSeeOther)
	})
	h := newHandler(t, webhook.Config{URL: srv.URL, SuccessStatus: []int{303}, Allow: []string{"loopback"}}, options())
	out, err := run(t, h, request())
	if want := "POST " + srv.URL + " answered 303 See Other"; err != nil || !strings.HasPrefix(out.Message, want) {
		t.Errorf("got %+v, %v; want %q…", out, err, want)
	}
}

func TestSecretsStayWithTheirHost(t *testing.T) {
	// 127.0.0.1:port and localhost:port are the same server, but to the
	// client two hosts.
	var srv *server
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/found":
			http.Redirect(w, r, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)+"/echo", http.StatusFound)
		case "/temporary":
			http.Redirect(w, r, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)+"/echo", http.StatusTemporaryRedirect)
		case "/same-host":
			http.Redirect(w, r, "/echo", http.StatusTemporaryRedirect)
		case "/echo":
			fmt.Fprintf(w, "key=%q", r.Header.Get("X-Api-Key"))
		}
	})
	cfg := func(path, body string) webhook.Config {
		return webhook.Config{
			URL: srv.URL + path, Body: body, Allow: []string{"loopback"},
			Headers: map[string]string{"X-Api-Key": `{{secret "token"}}`, "X-Team": "{{.Labels.owner}}"},
			Secrets: map[string]secret.Ref{"token": {Env: "HOOK_TOKEN"}},
		}
	}

	out, err := run(t, newHandler(t, cfg("/found", `{"a": 1}`), options()), request())
	if err != nil || !strings.HasSuffix(out.Message, `which answered 200 OK: key=""`) {
		t.Errorf("to another host: %+v, %v; want the secret header dropped", out, err)
	}
	out, err = run(t, newHandler(t, cfg("/same-host", `{"a": 1}`), options()), request())
	if err != nil || !strings.HasSuffix(out.Message, `which answered 200 OK: key="***"`) {
		t.Errorf("to the same host: %+v, %v; want the secret header kept", out, err)
	}
	last := srv.requests()[len(srv.requests())-1]
	if last.header.Get("X-Api-Key") != token || last.header.Get("X-Team") != "team-a" || last.body != `{"a": 1}` {
		t.Errorf("same-host redirect got %v, body %q", last.header, last.body)
	}

	before := srv.hits()
	_, err = run(t, newHandler(t, cfg("/temporary", `{"key": {{json (secret "token")}}}`), options()), request())
	r := refusal(t, err)
	if want := "a 307 redirect resends the body, which carries a secret, and it would go to another host"; !strings.Contains(r.Reason, want) || strings.Contains(r.Reason, token) {
		t.Errorf("reason = %q; want %q", r.Reason, want)
	}
	if n := srv.hits() - before; n != 1 {
		t.Errorf("%d requests; the redirect must not be followed", n)
	}
}

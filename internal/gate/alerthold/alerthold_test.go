package alerthold

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// prometheus fakes Prometheus's HTTP API: /api/v1/alerts answers with
// status and body, under the route prefix /prom.
func prometheus(t *testing.T, status int, body string) (string, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodGet || r.URL.Path != "/prom/api/v1/alerts" || r.Header.Get("Accept") != "application/json" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/prom", &calls
}

const alertsJSON = `{"status": "success", "data": {"alerts": [
	{"labels": {"alertname": "KubeAPIDown", "severity": "critical"}, "state": "firing", "activeAt": "2026-12-12T11:58:00.123Z", "value": "1e+00"},
	{"labels": {"alertname": "KubeAPIDown", "instance": "b"}, "state": "firing", "activeAt": "2026-12-12T11:50:00Z"},
	{"labels": {"alertname": "ClusterCapacityLow"}, "state": "pending", "activeAt": "2026-12-12T11:59:00Z"},
	{"labels": {"alertname": "Watchdog"}, "state": "firing", "activeAt": "2026-12-01T00:00:00Z"},
	{"labels": {"alertname": "CartsErrors", "namespace": "sockshop-production"}, "state": "firing", "activeAt": "2026-12-12T11:00:00Z"},
	{"labels": {"alertname": "NodeDiskFull", "namespace": "monitoring"}, "state": "firing", "activeAt": "2026-12-12T10:00:00Z"}
]}}`

func TestAdmit(t *testing.T) {
	prod := gate.Subject{Namespace: "sockshop-production", Kind: "scale"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		subject gate.Subject
		want    string // "" admits
	}{
		{"a listed alert fires", Config{Alerts: []string{"KubeAPIDown"}}, prod,
			"refused (alert hold): alert KubeAPIDown (active since 2026-12-12T11:50:00Z) is firing; actions resume when it resolves, or remove it from alertHold.alerts"},
		{"a dry run asks alike", Config{Alerts: []string{"KubeAPIDown"}}, gate.Subject{Namespace: "x", DryRun: true, Kind: "webhook"},
			"refused (alert hold): alert KubeAPIDown (active since 2026-12-12T11:50:00Z) is firing"},
		{"a listed alert is pending", Config{Alerts: []string{"ClusterCapacityLow"}}, prod, ""},
		{"other alerts fire", Config{Alerts: []string{"ClusterCapacityLow", "NotThere"}}, prod, ""},
		{"several fire, in the configuration's order", Config{Alerts: []string{"Watchdog", "ClusterCapacityLow", "KubeAPIDown"}}, prod,
			"refused (alert hold): alerts Watchdog (active since 2026-12-01T00:00:00Z) and KubeAPIDown (active since 2026-12-12T11:50:00Z) are firing; actions resume when they resolve, or remove them from alertHold.alerts"},
		{"a namespaced alert holds every namespace by default", Config{Alerts: []string{"NodeDiskFull"}}, prod,
			"refused (alert hold): alert NodeDiskFull (active since 2026-12-12T10:00:00Z) is firing"},
		{"matchNamespace: an alert of another namespace", Config{Alerts: []string{"NodeDiskFull"}, MatchNamespace: true}, prod, ""},
		{"matchNamespace: an alert of the action's namespace", Config{Alerts: []string{"CartsErrors"}, MatchNamespace: true}, prod,
			"refused (alert hold): alert CartsErrors in namespace sockshop-production (active since 2026-12-12T11:00:00Z) is firing"},
		{"matchNamespace: an alert without namespace holds all", Config{Alerts: []string{"KubeAPIDown"}, MatchNamespace: true}, prod,
			"refused (alert hold): alert KubeAPIDown (active since"},
		{"a namespace the hold does not apply to", Config{Alerts: []string{"KubeAPIDown"}, Namespaces: []string{"*-production"}},
			gate.Subject{Namespace: "sockshop-staging"}, ""},
		{"a namespace the hold applies to", Config{Alerts: []string{"KubeAPIDown"}, Namespaces: []string{"kube-*", "*-production"}}, prod,
			"refused (alert hold): alert KubeAPIDown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, calls := prometheus(t, http.StatusOK, alertsJSON)
			tc.cfg.Prometheus = url
			g, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := g.Admit(context.Background(), tc.subject)
			if tc.want == "" {
				if err != nil || a.Done != nil || a.Warning != "" {
					t.Fatalf("Admit = %+v, %v; want a plain pass", a, err)
				}
				if len(tc.cfg.Namespaces) > 0 && calls.Load() != 0 {
					t.Errorf("asked Prometheus %d times for a namespace the hold does not apply to", calls.Load())
				}
				return
			}
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != Rule || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Admit = %v\nwant %s...", err, tc.want)
			}
		})
	}
}

func TestAFailedQueryRefuses(t *testing.T) {
	const ask = "refused (alert hold): could not ask Prometheus at "
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"an error status", `{"status": "error", "errorType": "internal", "error": "rule manager not ready"}`, http.StatusInternalServerError,
			"/prom/api/v1/alerts answered 500 Internal Server Error: rule manager not ready; actions resume when it answers, or remove the catalog's alertHold section"},
		{"not Prometheus", "<html>bad gateway</html>", http.StatusBadGateway, "/prom/api/v1/alerts answered 502 Bad Gateway;"},
		{"not JSON", "<html>login</html>", http.StatusOK, "/prom/api/v1/alerts: the answer is not Prometheus's JSON: invalid character '<'"},
		{"cut short", `{"status": "success", "data": {"alerts": [`, http.StatusOK, "the answer is not Prometheus's JSON: unexpected end of JSON input"},
		{"status not success", `{"status": "error", "error": "overloaded"}`, http.StatusOK, `status "error", not success: overloaded`},
		{"no data", `{"status": "success"}`, http.StatusOK, "the answer has no data"},
		{"too large", `{"status": "success", "data": {"alerts": [], "pad": "` + strings.Repeat("x", maxBody) + `"}}`, http.StatusOK,
			"the answer is larger than 4 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := prometheus(t, tc.status, tc.body)
			g, err := New(Config{Prometheus: url, Alerts: []string{"KubeAPIDown", "ClusterCapacityLow"}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.Admit(context.Background(), gate.Subject{Namespace: "x"})
			var r *action.Refusal
			prefix := ask + url + " whether KubeAPIDown or ClusterCapacityLow is firing: GET " + url
			if !errors.As(err, &r) || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Admit = %v\nwant %s...%s", err, prefix, tc.want)
			}
		})
	}
}

func TestATimeoutRefuses(t *testing.T) {
	// The fake answers only once the client gave up: no sleep.
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	g, err := New(Config{Prometheus: srv.URL, Alerts: []string{"KubeAPIDown"}, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = g.Admit(ctx, gate.Subject{Namespace: "x"})
	var r *action.Refusal
	want := "refused (alert hold): could not ask Prometheus at " + srv.URL + " whether KubeAPIDown is firing: no answer within 50ms (alertHold.timeout)"
	if !errors.As(err, &r) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Admit = %v\nwant %s", err, want)
	}
}

func TestUnreachableRefuses(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	g, err := New(Config{Prometheus: url, Alerts: []string{"KubeAPIDown"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Admit(context.Background(), gate.Subject{Namespace: "x"})
	var r *action.Refusal
	if !errors.As(err, &r) || !strings.Contains(err.Error(), "whether KubeAPIDown is firing: GET "+url+"/api/v1/alerts: dial tcp") {
		t.Fatalf("Admit = %v", err)
	}
}

// An action that ended while asking reports its own end, not a refusal.
func TestTheActionsEndIsNotARefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	g, err := New(Config{Prometheus: srv.URL, Alerts: []string{"KubeAPIDown"}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = g.Admit(ctx, gate.Subject{Namespace: "x"})
	var r *action.Refusal
	if err == nil || errors.As(err, &r) || !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "alertHold.timeout") {
		t.Fatalf("Admit = %v, want the action's deadline", err)
	}
}

func TestNewNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{Alerts: []string{"a"}}, "prometheus: missing"},
		{"not http", Config{Prometheus: "prometheus.monitoring:9090", Alerts: []string{"a"}}, `prometheus: "prometheus.monitoring:9090" is not an http or https URL`},
		{"no host", Config{Prometheus: "http:///api", Alerts: []string{"a"}}, `prometheus: "http:///api" is not an http or https URL`},
		{"credentials", Config{Prometheus: "http://u:secret@prometheus:9090", Alerts: []string{"a"}}, "prometheus: the URL carries credentials"},
		{"a query", Config{Prometheus: "http://prometheus:9090/?x=1", Alerts: []string{"a"}}, `prometheus: "http://prometheus:9090/?x=1" has a query or a fragment`},
		{"no alerts", Config{Prometheus: "http://prometheus:9090"}, "alerts: none"},
		{"an empty name", Config{Prometheus: "http://prometheus:9090", Alerts: []string{"a", " "}}, "alerts[1]: empty"},
		{"a name twice", Config{Prometheus: "http://prometheus:9090", Alerts: []string{"a", "b", "a"}}, `alerts[2]: "a" is listed twice`},
		{"a negative timeout", Config{Prometheus: "http://prometheus:9090", Alerts: []string{"a"}, Timeout: -time.Second}, "timeout: -1s is negative"},
		{"a bad glob", Config{Prometheus: "http://prometheus:9090", Alerts: []string{"a"}, Namespaces: []string{"["}}, `namespaces: "[" is not a valid glob`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New = %v\nwant %s...", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	g, err := New(Config{Prometheus: "http://prometheus:9090", Alerts: []string{"a"}})
	if err != nil || g.cfg.Timeout != DefaultTimeout || g.endpoint != "http://prometheus:9090/api/v1/alerts" {
		t.Errorf("defaults: %+v %v", g, err)
	}
}

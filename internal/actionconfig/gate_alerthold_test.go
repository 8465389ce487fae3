package actionconfig

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate/alerthold"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

// TestAlertHoldRefusesThroughTheCatalog: with KubeAPIDown firing in a
// fake Prometheus, a scale is refused, and the freeze gate (no window
// open) ran before it.
func TestAlertHoldRefusesThroughTheCatalog(t *testing.T) {
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/alerts" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"status": "success", "data": {"alerts": [
			{"labels": {"alertname": "KubeAPIDown"}, "state": "firing", "activeAt": "2026-12-12T11:58:00Z"},
			{"labels": {"alertname": "ClusterCapacityLow"}, "state": "pending", "activeAt": "2026-12-12T11:59:00Z"}]}}`))
	}))
	t.Cleanup(prom.Close)
	client := cartsCluster(t)
	c, err := gateCatalog(t, client, `
actions:
  - {name: scale, kind: scale}
freeze:
  windows: [{name: later, from: 2998-01-01, to: 2999-01-01}]
alertHold:
  prometheus: `+prom.URL+`
  alerts: [KubeAPIDown, ClusterCapacityLow]
  timeout: 2s
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, dryRun := range []bool{false, true} {
		out, err := runGated(t, c, "scale", `{"replicas": "+1"}`, dryRun)
		var r *action.Refusal
		want := "refused (alert hold): alert KubeAPIDown (active since 2026-12-12T11:58:00Z) is firing; actions resume when it resolves, or remove it from alertHold.alerts"
		if !errors.As(err, &r) || r.Rule != alerthold.Rule || err.Error() != want {
			t.Fatalf("Run (dry run %v) = %+v, %v\nwant %s", dryRun, out, err, want)
		}
	}
	if got := replicas(t, client); got != 1 {
		t.Errorf("carts has %d replicas after refusals, want 1", got)
	}
}

func TestAlertHoldSectionErrorsNameTheField(t *testing.T) {
	const entry = "actions:\n  - {name: restart, kind: restart}\n"
	for _, tc := range []struct{ name, section, want string }{
		{"unknown field", "alertHold: {prometheus: 'http://p:9090', alerts: [A], alert: [B]}", `alertHold: unknown field "alert"`},
		{"no URL", "alertHold: {alerts: [A]}", "alertHold: prometheus: missing"},
		{"no alerts", "alertHold: {prometheus: 'http://p:9090'}", "alertHold: alerts: none"},
		{"bad timeout", "alertHold: {prometheus: 'http://p:9090', alerts: [A], timeout: 5}", `alertHold: timeout: a duration is a string such as "90s"`},
		{"timeout above ACTION_TIMEOUT", "alertHold: {prometheus: 'http://p:9090', alerts: [A], timeout: 1h}", "alertHold: timeout: 1h0m0s is above ACTION_TIMEOUT (5m0s)"},
		{"bad glob", "alertHold: {prometheus: 'http://p:9090', alerts: [A], namespaces: ['[']}", `alertHold: namespaces: "[" is not a valid glob`},
		{"matchNamespace not a bool", "alertHold: {prometheus: 'http://p:9090', alerts: [A], matchNamespace: yes please}", "alertHold: matchNamespace: a string where bool is expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateCatalog(t, adapt.Clientset(fake.NewSimpleClientset()), entry+tc.section+"\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ACTIONS_CONFIG /") {
				t.Fatalf("Load = %v\nwant the file named and %s", err, tc.want)
			}
		})
	}
}

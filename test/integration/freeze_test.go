package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestFreezeWindowAndAlertHold: the catalog's freeze and alertHold
// sections, as the binary loads them, refuse a scale on the real API server
// and leave the Deployment as it was: a window holding one namespace, and
// an alert firing in Prometheus's HTTP API for another (httptest stands in
// for Prometheus). Once the alert resolves, the same scale runs; a
// Prometheus that cannot be asked refuses, not passes.
func TestFreezeWindowAndAlertHold(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	frozenStage, frozen := newNamespace(ctx, t, cp.client)
	heldStage, held := newNamespace(ctx, t, cp.client)
	for _, ns := range []string{frozen, held} {
		object{workload.Deployment, "carts", 1}.create(ctx, t, cp.client, ns)
	}

	var firing atomic.Bool
	firing.Store(true)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/alerts" {
			http.NotFound(w, r)
			return
		}
		state := "inactive"
		if firing.Load() {
			state = "firing"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status": "success", "data": {"alerts": [
			{"labels": {"alertname": "CartsDown"}, "state": %q, "activeAt": "2026-12-07T03:00:00Z"}]}}`, state)
	}))
	defer prom.Close()

	catalog := filepath.Join(t.TempDir(), "actions.yaml")
	yaml := fmt.Sprintf(`actions:
  - {name: scale, kind: scale}
freeze:
  windows:
    - {name: incident-freeze, from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", namespaces: [%q]}
alertHold:
  prometheus: %s
  alerts: [CartsDown]
  timeout: 2s
  namespaces: [%q]
`, frozen, prom.URL, held)
	if err := os.WriteFile(catalog, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := newInstance(t, cp.api, "freeze", func(c *config.Config) { c.ActionsConfig = catalog })

	expect := func(step string, got finished, result keptnv2.ResultType, msg string) {
		t.Helper()
		if got.status != keptnv2.StatusSucceeded || got.result != result || !strings.Contains(got.message, msg) {
			t.Fatalf("%s: finished %s/%s %q, want succeeded/%s with %q", step, got.status, got.result, got.message, result, msg)
		}
	}
	const frozenMsg = `refused (freeze window): "incident-freeze" (from 2000-01-01T00:00:00Z to 2100-01-01T00:00:00Z) holds namespace `
	expect("scale in the window", inst.run(ctx, t, request(frozenStage, "scale", `{"replicas": 3}`, false)),
		keptnv2.ResultFailed, frozenMsg+frozen)
	// A dry run decides as a run would: the refusal is its report.
	if got := inst.run(ctx, t, request(frozenStage, "scale", `{"replicas": 3}`, true)); !strings.Contains(got.message, frozenMsg+frozen) {
		t.Fatalf("dry run in the window: finished %s/%s %q, want the window's refusal", got.status, got.result, got.message)
	}
	expect("scale while the alert fires", inst.run(ctx, t, request(heldStage, "scale", `{"replicas": 3}`, false)),
		keptnv2.ResultFailed, "refused (alert hold): alert CartsDown (active since 2026-12-07T03:00:00Z) is firing")
	for _, ns := range []string{frozen, held} {
		if got := replicasOf(ctx, t, cp.client, ns, "carts"); got != 1 {
			t.Errorf("%s/carts has %d replicas after a refusal, want 1", ns, got)
		}
		if ev := auditEvents(ctx, t, cp.client, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}); slices.ContainsFunc(ev, func(e corev1.Event) bool { return e.Reason == "Scaled" }) {
			t.Errorf("%s/carts: a Scaled audit event after a refusal: %v", ns, ev)
		}
	}

	firing.Store(false)
	expect("scale once the alert resolved", inst.run(ctx, t, request(heldStage, "scale", `{"replicas": 3}`, false)),
		keptnv2.ResultPass, "scaled ")
	if got := replicasOf(ctx, t, cp.client, held, "carts"); got != 3 {
		t.Errorf("%s/carts has %d replicas after the scale, want 3", held, got)
	}

	prom.Close()
	expect("Prometheus gone", inst.run(ctx, t, request(heldStage, "scale", `{"replicas": 2}`, false)),
		keptnv2.ResultFailed, "could not ask Prometheus at ")
	if got := replicasOf(ctx, t, cp.client, held, "carts"); got != 3 {
		t.Errorf("%s/carts has %d replicas after a refusal, want 3", held, got)
	}
}

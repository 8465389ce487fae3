package actionconfig

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate/freeze"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
)

// gateCatalog loads catalogYAML against client, the provider allowed to
// act in sockshop-production; the error is Load's.
func gateCatalog(t *testing.T, client kube.Interface, catalogYAML string) (*Catalog, error) {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "actions.yaml")
	if err := os.WriteFile(path, []byte(catalogYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ActionsConfig, cfg.AllowedNamespaces, cfg.Cooldown = path, []string{"sockshop-production"}, 0
	book, err := ledger.New(client, ledger.Config{Namespace: "keptn", Identity: "test", EventTTL: time.Hour, LockTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return Load(cfg, Deps{Client: client, Ledger: book, Audit: audit.New(client, "test"), Log: log})
}

// cartsCluster is a fake cluster (the sandbox's, which has the scale
// subresource) with the Deployment carts, one replica, in
// sockshop-production.
func cartsCluster(t *testing.T) kube.Interface {
	t.Helper()
	c, err := sandbox.New(fstest.MapFS{"carts.yaml": {Data: []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: sockshop-production}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: carts, namespace: sockshop-production, labels: {app: carts}}
spec:
  replicas: 1
  selector: {matchLabels: {app: carts}}
  template:
    metadata: {labels: {app: carts}}
    spec: {containers: [{name: carts, image: "carts:1"}]}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runGated runs the catalog's entry name for carts in sockshop-production.
func runGated(t *testing.T, c *Catalog, name, value string, dryRun bool) (action.Outcome, error) {
	t.Helper()
	h, _, ok := c.Registry.Lookup(name)
	if !ok {
		t.Fatalf("no handler for %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.Run(ctx, action.Request{Action: name, Project: "sockshop", Stage: "production", Service: "carts",
		DryRun: dryRun, TriggeredID: "t", Value: json.RawMessage(value)})
}

func replicas(t *testing.T, client kube.Interface) int32 {
	t.Helper()
	d, err := client.AppsV1().Deployments("sockshop-production").Get(context.Background(), "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

// TestFreezeWindowRefusesThroughTheCatalog: a window open now (an
// absolute range around it) refuses a scale, run or dry run, with the
// window's name and end, and the Deployment keeps its replicas; a window
// of another namespace, or one to come, lets it through.
func TestFreezeWindowRefusesThroughTheCatalog(t *testing.T) {
	now := time.Now().UTC()
	from, to := now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)
	later := now.Add(24 * time.Hour).Format(time.RFC3339)
	catalog := `
actions:
  - {name: scale, kind: scale}
  - {name: notify, kind: webhook, settings: {url: "https://hooks.example.com/notify"}}
freeze:
  timezone: Europe/Berlin
  windows:
    - name: staging-only
      cron: "* * * * *"
      duration: 1h
      namespaces: ["*-staging"]
    - name: to-come
      from: ` + later + `
      to: 2999-01-01
    - name: release-freeze
      from: ` + from + `
      to: ` + to + `
      namespaces: ["sockshop-*"]
`
	client := cartsCluster(t)
	c, err := gateCatalog(t, client, catalog)
	if err != nil {
		t.Fatal(err)
	}
	want := `refused (freeze window): "release-freeze" (from ` + from + ` to ` + to + `) holds namespace sockshop-production until ` + to +
		`; actions resume then, or remove the window from the catalog's freeze section`
	for _, tc := range []struct {
		name, entry, value string
		dryRun             bool
	}{
		{"scale", "scale", `{"replicas": "+1"}`, false},
		{"scale, dry run", "scale", `{"replicas": "+1"}`, true},
		{"a webhook: every kind", "notify", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runGated(t, c, tc.entry, tc.value, tc.dryRun)
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != freeze.Rule || err.Error() != want {
				t.Fatalf("Run = %+v, %v\nwant %s", out, err, want)
			}
		})
	}
	if got := replicas(t, client); got != 1 {
		t.Errorf("carts has %d replicas after refusals, want 1", got)
	}

	// Without the open window, the same scale passes (as a dry run: the
	// fake clientset has no scale subresource to change).
	open := strings.Index(catalog, "    - name: release-freeze")
	c, err = gateCatalog(t, client, catalog[:open])
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runGated(t, c, "scale", `{"replicas": "+1"}`, true); err != nil {
		t.Fatalf("Run outside every window = %+v, %v", out, err)
	}
}

func TestFreezeSectionErrorsNameTheField(t *testing.T) {
	const entry = "actions:\n  - {name: restart, kind: restart}\n"
	for _, tc := range []struct{ name, section, want string }{
		{"unknown field", "freeze: {windows: [], tz: UTC}", `freeze: unknown field "tz"`},
		{"unknown window field", "freeze: {windows: [{name: a, cron: '0 0 * * *', duration: 1h, namespace: [x]}]}", `freeze: windows[0]: unknown field "namespace"`},
		{"no windows", "freeze: {timezone: UTC}", "freeze: windows: none"},
		{"bad zone", "freeze: {timezone: Mars/Olympus, windows: [{name: a, cron: '0 0 * * *', duration: 1h}]}",
			`freeze: timezone: "Mars/Olympus" is not a time zone such as Europe/Berlin or UTC`},
		{"bad duration", "freeze: {windows: [{name: a, cron: '0 0 * * *', duration: soon}]}", `freeze: windows[0] "a": duration: "soon" is not a duration`},
		{"bad from", "freeze: {windows: [{name: a, from: 'next friday', to: 2027-01-04}]}", `freeze: windows[0] "a": from: "next friday" is not a time`},
		{"to before from", "freeze: {windows: [{name: a, from: 2027-01-04, to: 2026-12-20}]}", `freeze: windows[0] "a": to: 2026-12-20T00:00:00Z is not after from (2027-01-04T00:00:00Z)`},
		{"both forms", "freeze: {windows: [{name: a, cron: '0 0 * * *', duration: 1h, from: 2026-12-20, to: 2027-01-04}]}", `freeze: windows[0] "a": set either cron and duration`},
		{"a name twice", "freeze: {windows: [{name: a, cron: '0 0 * * *', duration: 1h}, {name: a, from: 2026-12-20, to: 2027-01-04}]}", `freeze: windows[1] "a": name: another window is named "a"`},
		{"bad cron", "freeze: {windows: [{name: a, cron: '0 18 * * FRY', duration: 1h}]}", `freeze: windows[0] "a": cron: "0 18 * * FRY" is not a 5-field cron expression`},
		{"bad glob", "freeze: {windows: [{name: a, cron: '0 0 * * *', duration: 1h, namespaces: ['[']}]}", `freeze: windows[0] "a": namespaces: "[" is not a valid glob`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateCatalog(t, adapt.Clientset(fake.NewSimpleClientset()), entry+tc.section+"\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ACTIONS_CONFIG /") {
				t.Fatalf("Load = %v\nwant the file named and %s", err, tc.want)
			}
		})
	}
}

// A date, or a time without an offset, is read in freeze.timezone.
func TestFreezeTimesInTheZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"2026-12-20":                "2026-12-19T23:00:00Z",
		"2026-07-01T09:30:00":       "2026-07-01T07:30:00Z",
		"2026-12-20T00:00:00Z":      "2026-12-20T00:00:00Z",
		"2026-12-20T00:00:00-05:00": "2026-12-20T05:00:00Z",
	} {
		got, err := freezeTime("from", in, berlin)
		if err != nil || got.UTC().Format(time.RFC3339) != want {
			t.Errorf("freezeTime(%s) = %s, %v; want %s", in, got.UTC().Format(time.RFC3339), err, want)
		}
	}
	// A null section is no section.
	if g, err := buildFreeze(config.Config{}, json.RawMessage("null"), Deps{}); g != nil || err != nil {
		t.Errorf("null: %v %v", g, err)
	}
}

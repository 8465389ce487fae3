package actionconfig

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate/approval"
)

func TestApprovalSection(t *testing.T) {
	base, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	base.ActionTimeout, base.ScaleMinReplicas, base.PodNamespace = 5*time.Minute, 1, "keptn"
	for _, c := range []struct {
		name    string
		section string
		edit    func(*config.Config)
		want    approval.Config
		wantErr string
	}{
		{name: "absent: the defaults, safe by default", want: approval.Config{Timeout: 4 * time.Minute, Defaults: true,
			ProductionStages: []string{"production", "prod"}, Namespace: "keptn"}},
		{name: "empty", section: `{}`, want: approval.Config{Timeout: 4 * time.Minute, Defaults: true,
			ProductionStages: []string{"production", "prod"}, Namespace: "keptn"}},
		{name: "all set", section: `{"timeout": "10m", "defaults": false, "productionStages": ["live"]}`,
			edit: func(c *config.Config) { c.ActionTimeout, c.ScaleMinReplicas = 15*time.Minute, 0 },
			want: approval.Config{Timeout: 10 * time.Minute, ProductionStages: []string{"live"}, ScaleToZero: true, Namespace: "keptn"}},
		{name: "a short ACTION_TIMEOUT cuts the default", edit: func(c *config.Config) { c.ActionTimeout = 40 * time.Second },
			want: approval.Config{Timeout: 20 * time.Second, Defaults: true, ProductionStages: []string{"production", "prod"}, Namespace: "keptn"}},
		{name: "the longest timeout", section: `{"timeout": "4m30s"}`,
			want: approval.Config{Timeout: 4*time.Minute + 30*time.Second, Defaults: true, ProductionStages: []string{"production", "prod"}, Namespace: "keptn"}},
		{name: "a timeout that leaves no time to act", section: `{"timeout": "5m"}`,
			wantErr: "timeout: 5m0s leaves less than 30s of ACTION_TIMEOUT (5m0s) to act once approved; at most 4m30s"},
		{name: "a zero timeout", section: `{"timeout": "0s"}`, wantErr: `timeout: must be above 0`},
		{name: "a typo", section: `{"timout": "1m"}`, wantErr: `unknown field "timout"`},
		{name: "an empty stage", section: `{"productionStages": ["prod", " "]}`, wantErr: "productionStages[1]: a stage name is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			if c.edit != nil {
				c.edit(&cfg)
			}
			var raw json.RawMessage
			if c.section != "" {
				raw = json.RawMessage(c.section)
			}
			g, err := buildApproval(cfg, raw, Deps{})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := g.(*approval.Gate).Config()
			if got.Timeout != c.want.Timeout || got.Defaults != c.want.Defaults || strings.Join(got.ProductionStages, ",") != strings.Join(c.want.ProductionStages, ",") ||
				got.ScaleToZero != c.want.ScaleToZero || got.Namespace != c.want.Namespace {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestApprovalThroughTheCatalog: a rollback in production waits for the
// approval the catalog's gate asks for, and runs once it is given; an
// entry with guardrails.approval: never does not wait, and the catalog's
// errors name the section.
func TestApprovalThroughTheCatalog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := newSandbox(t)
	c := loadOn(t, client, `
approval:
  timeout: 30s
actions:
  - name: rollback
    kind: rollback
  - name: rollback-now
    kind: rollback
    guardrails:
      approval: never
`, func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-*"} })

	req := action.Request{Action: "rollback", Project: "sockshop", Stage: "production", Service: "carts", TriggeredID: "trig-1", KeptnContext: "ctx-1"}
	w, err := client.CoreV1().Events("sockshop-production").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	type result struct {
		out action.Outcome
		err error
	}
	done := make(chan result, 1)
	h, _, _ := c.Registry.Lookup("rollback")
	go func() {
		out, err := h.Run(ctx, req)
		done <- result{out, err}
	}()
	for ev := range w.ResultChan() {
		if e, ok := ev.Object.(*corev1.Event); ok && e.Reason == approval.ReasonPending {
			if !strings.Contains(e.Message, "kubectl annotate deployment/carts -n sockshop-production keptn-action-provider.io/approve=trig-1 --overwrite") {
				t.Errorf("pending event %q", e.Message)
			}
			break
		}
	}
	patch := []byte(`{"metadata":{"annotations":{"keptn-action-provider.io/approve":"trig-1"}}}`)
	if _, err := client.AppsV1().Deployments("sockshop-production").Patch(ctx, "carts", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !strings.HasPrefix(r.out.Message, "rolled back deployment sockshop-production/carts") {
		t.Fatalf("after the approval: %+v %v", r.out, r.err)
	}

	// The exempt entry acts at once: here, it finds nothing to roll back
	// to; asked for approval, it would have been refused after 30s.
	h, _, _ = c.Registry.Lookup("rollback-now")
	req.Action, req.TriggeredID = "rollback-now", "trig-2"
	if out, err := h.Run(ctx, req); err != nil || out.Result != "pass" {
		t.Fatalf("never: %+v %v", out, err)
	}

	_, err = load(t, "approval:\n  timeout: 1h\nactions:\n  - name: scale\n    kind: scale\n")
	if err == nil || !strings.Contains(err.Error(), "approval: timeout: 1h0m0s leaves less than 30s of ACTION_TIMEOUT") {
		t.Errorf("a bad section: %v", err)
	}
}

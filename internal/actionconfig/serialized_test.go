package actionconfig

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
)

// A webhook entry runs through the stages that apply to it: one run at a
// time per entry and service, its cooldown, and an audit record.
func TestWebhookEntryIsLockedCooledDownAndAudited(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		arrived <- struct{}{}
		if r.URL.Query().Get("hold") == "yes" {
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(t, `
actions:
  - name: notify
    kind: webhook
    settings:
      url: "`+srv.URL+`/hook?hold={{.Value.hold}}"
      allow: [loopback]
    guardrails:
      cooldown: 1h
`)
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	c, err := Load(cfg, testDeps(t, adapt.Clientset(fake.NewClientset()), log))
	if err != nil {
		t.Fatal(err)
	}
	h, _, ok := c.Registry.Lookup("notify")
	if !ok {
		t.Fatal("notify not registered")
	}
	req := func(id, hold string) action.Request {
		return action.Request{Action: "notify", Value: []byte(`{"hold":"` + hold + `"}`), Project: "sockshop", Stage: "production",
			Service: "carts", KeptnContext: "ctx", TriggeredID: id}
	}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := h.Run(ctx, req("t-1", "yes")); first <- err }()
	<-arrived
	// While the first call is in flight, a second run of the entry for the
	// same service is refused: the lock.
	if _, err := h.Run(ctx, req("t-2", "no")); !isRule(err, ledger.RuleLock) {
		t.Fatalf("second run while the first is in flight: %v; want a refusal by %q", err, ledger.RuleLock)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// After it, the cooldown the entry sets refuses it again.
	_, err = h.Run(ctx, req("t-3", "no"))
	if !isRule(err, ledger.RuleCooldown) || !strings.Contains(err.Error(), `guardrails.cooldown of "notify"`) {
		t.Fatalf("run within the cooldown: %v; want a refusal naming guardrails.cooldown", err)
	}
	// Another service is another target.
	other := req("t-4", "no")
	other.Service = "orders"
	if _, err := h.Run(ctx, other); err != nil {
		t.Fatalf("run for another service: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the webhook was called %d times; want 2", n)
	}
	audits := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "audit: remediation ran" && e.Data["action"] == "notify" {
			audits++
		}
	}
	if audits != 2 {
		t.Errorf("%d audit records; want one per run that called the webhook (2)", audits)
	}
}

func isRule(err error, rule string) bool {
	return err != nil && strings.Contains(err.Error(), "refused ("+rule+")")
}

// A run its handler refused changed nothing: it starts no cooldown, and
// gives its gates back what they lent (a budget's slot).
func TestARefusedRunStartsNoCooldown(t *testing.T) {
	cfg := testConfig(t, `
actions:
  - name: notify
    kind: webhook
    settings:
      url: "http://127.0.0.1:1/hook"
    guardrails:
      cooldown: 1h
`)
	c, err := Load(cfg, testDeps(t, adapt.Clientset(fake.NewClientset()), logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := c.Registry.Lookup("notify")
	for _, id := range []string{"t-1", "t-2"} {
		// Loopback is not allowed: the egress rule refuses, every time,
		// and never the cooldown.
		_, err := h.Run(context.Background(), action.Request{Action: "notify", Project: "sockshop", Stage: "production",
			Service: "carts", KeptnContext: "ctx", TriggeredID: id})
		var r *action.Refusal
		if !errors.As(err, &r) || r.Rule != "webhook egress" {
			t.Fatalf("%s: got %v, want the egress refusal", id, err)
		}
	}
}

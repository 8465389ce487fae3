package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/budget"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// The budget's unit tests run on the fake clientset, which does not enforce
// resourceVersion. These race replicas of the provider, each with a client
// and a budget gate of its own, on one budget Lease of the real API server.

// replica is one provider process's budget: its gate, and the registry of
// its metrics.
type replica struct {
	gate *budget.Gate
	reg  *prometheus.Registry
}

// newReplicas returns n replicas keeping their budget in namespace ns.
func newReplicas(t *testing.T, cp *controlPlane, ns string, n int, limits budget.Limits) []replica {
	t.Helper()
	rs := make([]replica, n)
	for i := range rs {
		c, err := kube.NewForConfig(cp.config)
		if err != nil {
			t.Fatal(err)
		}
		rs[i].reg = prometheus.NewRegistry()
		rs[i].gate, err = budget.New(c, budget.Config{
			Namespace: ns, Limits: limits,
			MaxSetting: "budget.max in itest", PerNamespaceSetting: "budget.perNamespace in itest",
			Identity: fmt.Sprintf("budget-%d", i), Metrics: rs[i].reg, WriteBound: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

// sum adds up a metric's value over the replicas.
func sum(rs []replica, metric, scope string) float64 {
	var total float64
	for _, r := range rs {
		mfs, _ := r.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != metric {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "scope" && l.GetValue() == scope {
						total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
					}
				}
			}
		}
	}
	return total
}

// budgetLease reads the budget's Lease.
func budgetLease(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) *coordinationv1.Lease {
	t.Helper()
	l, err := c.CoordinationV1().Leases(ns).Get(ctx, budget.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// slotsOnLease counts the slots the Lease records.
func slotsOnLease(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) int {
	t.Helper()
	return strings.Count(budgetLease(ctx, t, c, ns).Annotations["keptn-action-provider.io/budget-slots"], `"id":`)
}

// annotateBudget changes the Lease's annotations as kubectl annotate does:
// a value of "-" removes the key.
func annotateBudget(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, key, value string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := c.CoordinationV1().Leases(ns).Get(ctx, budget.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		if value == "-" {
			delete(l.Annotations, key)
		} else {
			l.Annotations[key] = value
		}
		_, err = c.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("annotate %s %s=%s: %v", budget.LeaseName, key, value, err)
	}
}

// spentEvents lists the BudgetSpent events on the Lease.
func spentEvents(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) []string {
	t.Helper()
	list, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Lease,involvedObject.name=" + budget.LeaseName + ",reason=" + budget.ReasonSpent,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Message)
	}
	return out
}

// admitAll races every replica's callers (perReplica each) for the budget,
// caller k acting in namespaces[k%len(namespaces)], and returns the
// admissions by namespace and the refusals' messages.
func admitAll(ctx context.Context, t *testing.T, rs []replica, perReplica int, namespaces ...string) (admitted map[string][]gate.Admission, refused []string) {
	t.Helper()
	n := len(rs) * perReplica
	adms := make([]gate.Admission, n)
	errs := make([]error, n)
	race(n, func(k int) {
		adms[k], errs[k] = rs[k%len(rs)].gate.Admit(ctx, gate.Subject{
			Entry: "scale", Kind: "scale", Namespace: namespaces[k%len(namespaces)],
			Request: action.Request{TriggeredID: fmt.Sprintf("trig-%d", k)},
		})
	})
	admitted = map[string][]gate.Admission{}
	for k, err := range errs {
		var r *action.Refusal
		switch {
		case err == nil:
			admitted[namespaces[k%len(namespaces)]] = append(admitted[namespaces[k%len(namespaces)]], adms[k])
		case errors.As(err, &r):
			refused = append(refused, err.Error())
		default:
			t.Fatalf("caller %d: %v", k, err)
		}
	}
	return admitted, refused
}

// TestBudgetSharedByReplicas: two replicas, eight callers each, race for
// the last slots of one budget: exactly max are admitted, the others
// refused; the breaker's opening is recorded once, as one Event and one
// count of openings over both replicas; a slot given back is taken by the
// other replica; and per namespace, exactly perNamespace each.
func TestBudgetSharedByReplicas(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)

	t.Run("cluster", func(t *testing.T) {
		_, ns := newNamespace(ctx, t, cp.client)
		rs := newReplicas(t, cp, ns, 2, budget.Limits{Max: 5, PerNamespace: 5, Window: 10 * time.Minute})
		admitted, refused := admitAll(ctx, t, rs, 8, "a", "b", "c", "d", "e", "f")
		total := 0
		for _, a := range admitted {
			total += len(a)
		}
		if total != 5 || len(refused) != 11 {
			t.Fatalf("%d admitted, %d refused; want 5 and 11", total, len(refused))
		}
		for _, r := range refused {
			if !strings.HasPrefix(r, "refused (budget): remediation budget spent: 5 of 5 actions in the last 10m across the cluster (budget.max in itest); resets at ") {
				t.Errorf("refusal %q", r)
			}
		}
		if got := slotsOnLease(ctx, t, cp.client, ns); got != 5 {
			t.Errorf("%d slots on the Lease, want 5", got)
		}
		if got := sum(rs, "action_provider_budget_refusals_total", "cluster"); got != 11 {
			t.Errorf("refusals over the replicas: %v, want 11", got)
		}
		if got := sum(rs, "action_provider_budget_openings_total", "cluster"); got != 1 {
			t.Errorf("openings over the replicas: %v, want 1", got)
		}
		if ev := spentEvents(ctx, t, cp.client, ns); len(ev) != 1 {
			t.Errorf("BudgetSpent events: %q, want one", ev)
		}

		// One action changed nothing: its slot goes back, which closes the
		// breaker; of four callers, one takes it, and the breaker opens
		// again: a second opening.
		var unused gate.Admission
		for _, a := range admitted {
			unused = a[0]
			break
		}
		unused.Finish(ctx, false)
		if got := slotsOnLease(ctx, t, cp.client, ns); got != 4 {
			t.Fatalf("%d slots after one was given back, want 4", got)
		}
		_, refused = admitAll(ctx, t, rs, 2, "g")
		if len(refused) != 3 {
			t.Errorf("%d refused of 4 racing for the one slot given back, want 3", len(refused))
		}
		if ev := spentEvents(ctx, t, cp.client, ns); len(ev) != 2 {
			t.Errorf("BudgetSpent events after the breaker closed and opened again: %d, want 2", len(ev))
		}
		if got := sum(rs, "action_provider_budget_openings_total", "cluster"); got != 2 {
			t.Errorf("openings over the replicas: %v, want 2", got)
		}
	})

	t.Run("per namespace", func(t *testing.T) {
		_, ns := newNamespace(ctx, t, cp.client)
		rs := newReplicas(t, cp, ns, 2, budget.Limits{Max: 10, PerNamespace: 2, Window: 10 * time.Minute})
		admitted, refused := admitAll(ctx, t, rs, 8, "a", "b")
		if len(admitted["a"]) != 2 || len(admitted["b"]) != 2 || len(refused) != 12 {
			t.Fatalf("admitted a %d, b %d, refused %d; want 2, 2, 12", len(admitted["a"]), len(admitted["b"]), len(refused))
		}
		for _, r := range refused {
			if !strings.Contains(r, "remediation budget spent: 2 of 2 actions in namespace ") {
				t.Errorf("refusal %q", r)
			}
		}
		if got := sum(rs, "action_provider_budget_openings_total", "namespace"); got != 2 {
			t.Errorf("openings over the replicas: %v, want 2 (a and b)", got)
		}
		if ev := spentEvents(ctx, t, cp.client, ns); len(ev) != 2 {
			t.Errorf("BudgetSpent events: %q, want one for a and one for b", ev)
		}
	})
}

// TestBudgetOperatorCommands: the operator's annotations on the Lease,
// written through the API server as kubectl writes them, pause and resume
// every replica, and reset the window; deleting the Lease resets it too;
// a dry run decides but writes nothing.
func TestBudgetOperatorCommands(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	_, ns := newNamespace(ctx, t, cp.client)
	rs := newReplicas(t, cp, ns, 2, budget.Limits{Max: 2, PerNamespace: 2, Window: 10 * time.Minute})
	admit := func(r int, dryRun bool) error {
		_, err := rs[r].gate.Admit(ctx, gate.Subject{Entry: "restart", Kind: "restart", Namespace: "shop", DryRun: dryRun})
		return err
	}
	expect := func(what string, err error, want string) {
		t.Helper()
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Fatalf("%s: got %v, want %q", what, err, want)
		}
	}

	// Before any action, Maintain creates the Lease an operator annotates.
	rs[0].gate.Maintain(ctx)
	annotateBudget(ctx, t, cp.client, ns, budget.PausedAnnotation, "incident 42")
	for r := range rs {
		for _, dry := range []bool{false, true} {
			expect(fmt.Sprintf("replica %d while paused, dry run %v", r, dry), admit(r, dry),
				`refused (budget): remediation budget paused: "incident 42" (annotation keptn-action-provider.io/paused on Lease `+ns+`/action-provider-budget); to resume: kubectl annotate lease -n `+ns+` action-provider-budget keptn-action-provider.io/paused-`)
		}
	}
	annotateBudget(ctx, t, cp.client, ns, budget.PausedAnnotation, "-")

	// A dry run spends nothing: the Lease is not even written.
	rv := budgetLease(ctx, t, cp.client, ns).ResourceVersion
	expect("dry run", admit(0, true), "")
	if got := budgetLease(ctx, t, cp.client, ns).ResourceVersion; got != rv {
		t.Errorf("a dry run wrote the Lease: resourceVersion %s → %s", rv, got)
	}

	expect("first", admit(0, false), "")
	expect("second", admit(1, false), "")
	spent := "remediation budget spent: 2 of 2 actions in the last 10m across the cluster"
	expect("third", admit(0, false), spent)
	expect("third, dry run", admit(1, true), spent)

	// Reset by annotation: the window starts afresh on both replicas.
	annotateBudget(ctx, t, cp.client, ns, budget.ResetAnnotation, "now")
	expect("after the reset, replica 1", admit(1, false), "")
	expect("after the reset, replica 0", admit(0, false), "")
	expect("spent again", admit(1, false), spent)
	lease := budgetLease(ctx, t, cp.client, ns)
	if _, ok := lease.Annotations[budget.ResetAnnotation]; ok || !strings.Contains(lease.Annotations["keptn-action-provider.io/last-reset"], `reset="now" applied at `) {
		t.Errorf("annotations after the reset: %v", lease.Annotations)
	}
	if ev := spentEvents(ctx, t, cp.client, ns); len(ev) != 2 {
		t.Errorf("BudgetSpent events: %d, want 2 (one per opening, before and after the reset)", len(ev))
	}

	// Reset by deleting the Lease.
	if err := cp.client.CoordinationV1().Leases(ns).Delete(ctx, budget.LeaseName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("after the delete", admit(0, false), "")
	if got := slotsOnLease(ctx, t, cp.client, ns); got != 1 {
		t.Errorf("%d slots after the Lease was deleted and one action admitted, want 1", got)
	}
}

// TestBudgetInTheCatalog: the catalog's budget section, as the binary
// loads it, refuses the scale that would exceed it, reported succeeded/fail;
// a dry run and a scale that changes nothing spend none of it.
func TestBudgetInTheCatalog(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	_, home := newNamespace(ctx, t, cp.client) // the provider's own, for its budget alone
	object{workload.Deployment, "carts", 1}.create(ctx, t, cp.client, ns)
	catalog := filepath.Join(t.TempDir(), "actions.yaml")
	if err := os.WriteFile(catalog, []byte("actions:\n  - {name: scale, kind: scale}\nbudget: {max: 1, window: 5m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := newInstance(t, cp.api, "budget", func(c *config.Config) { c.ActionsConfig, c.PodNamespace = catalog, home })

	for i, s := range []struct {
		value  string
		dryRun bool
		want   keptnv2.ResultType
		msg    string
	}{
		{`{"replicas": 3}`, true, keptnv2.ResultPass, "dry run: "},
		{`{"replicas": 1}`, false, keptnv2.ResultPass, ""}, // no change: the slot goes back
		{`{"replicas": 2}`, false, keptnv2.ResultPass, "scaled "},
		{`{"replicas": 3}`, false, keptnv2.ResultFailed, "refused (budget): remediation budget spent: 1 of 1 actions in the last 5m across the cluster (budget.max in ACTIONS_CONFIG " + catalog + "); resets at "},
	} {
		got := inst.run(ctx, t, request(stage, "scale", s.value, s.dryRun))
		if got.status != keptnv2.StatusSucceeded || got.result != s.want || !strings.Contains(got.message, s.msg) {
			t.Fatalf("step %d: finished %s/%s %q, want succeeded/%s with %q", i, got.status, got.result, got.message, s.want, s.msg)
		}
	}
	if got := slotsOnLease(ctx, t, cp.client, home); got != 1 {
		t.Errorf("%d slots on the Lease, want 1: the scale to 2", got)
	}
}

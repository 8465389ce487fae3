package budget

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

const ns = "keptn"

var t0 = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// newGate is a budget of max 3, 2 per namespace, in a 10m window, on c.
func newGate(t *testing.T, c kubernetes.Interface, clk *clock, reg prometheus.Registerer) *Gate {
	t.Helper()
	g, err := New(adapt.Clientset(c), Config{
		Namespace: ns, Limits: Limits{Max: 3, PerNamespace: 2, Window: 10 * time.Minute},
		MaxSetting: "budget.max in test", PerNamespaceSetting: "budget.perNamespace in test",
		Identity: "replica-a", Metrics: reg, Now: clk.now, WriteBound: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func subject(namespace string, dryRun bool) gate.Subject {
	return gate.Subject{Entry: "scale", Kind: "scale", Namespace: namespace, DryRun: dryRun,
		Request: action.Request{TriggeredID: "id-" + namespace}}
}

// slotsOf reads the slots on the Lease, as the API server holds them.
func slotsOf(t *testing.T, c kubernetes.Interface) []slot {
	t.Helper()
	lease, err := c.CoordinationV1().Leases(ns).Get(context.Background(), LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := read(lease, t0.Add(-time.Hour), 24*time.Hour) // every slot, whatever its age
	if err != nil {
		t.Fatal(err)
	}
	return st.slots
}

// spentEvents lists the BudgetSpent events.
func spentEvents(t *testing.T, c kubernetes.Interface) []string {
	t.Helper()
	list, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == ReasonSpent && e.InvolvedObject.Kind == "Lease" && e.InvolvedObject.Name == LeaseName {
			out = append(out, e.Message)
		}
	}
	return out
}

const (
	clusterSpent = "refused (budget): remediation budget spent: 3 of 3 actions in the last 10m across the cluster (budget.max in test); resets at "
	nsSpent      = "refused (budget): remediation budget spent: 2 of 2 actions in namespace a in the last 10m (budget.perNamespace in test); resets at "
	resetHint    = "; to reset it now: kubectl annotate --overwrite lease -n keptn action-provider-budget keptn-action-provider.io/reset=now"
)

// TestAdmitSpendsTheBudget: a sequence of actions, each at its minute,
// spends the cluster's budget and the namespace's; a dry run decides the
// same and spends nothing; the window frees the oldest slot.
func TestAdmitSpendsTheBudget(t *testing.T) {
	c := fake.NewClientset()
	clk := &clock{t: t0}
	g := newGate(t, c, clk, nil)
	for i, step := range []struct {
		at        time.Duration
		namespace string
		dryRun    bool
		want      string // "" admits
		slots     int    // on the Lease after
	}{
		{0, "a", false, "", 1},
		{time.Minute, "a", true, "", 1},
		{2 * time.Minute, "a", false, "", 2},
		{3 * time.Minute, "a", false, nsSpent + "2026-11-24T03:10:00Z, as the oldest leaves the window" + resetHint, 2},
		{3 * time.Minute, "a", true, nsSpent + "2026-11-24T03:10:00Z", 2},
		{4 * time.Minute, "b", false, "", 3},
		{5 * time.Minute, "c", false, clusterSpent + "2026-11-24T03:10:00Z, as the oldest leaves the window" + resetHint, 3},
		{6 * time.Minute, "c", true, clusterSpent + "2026-11-24T03:10:00Z", 3},
		// a's first slot has left the window: one free again, in a and the cluster.
		{10 * time.Minute, "c", false, "", 3},
		{11 * time.Minute, "a", false, clusterSpent + "2026-11-24T03:12:00Z", 3},
	} {
		clk.set(t0.Add(step.at))
		adm, err := g.Admit(context.Background(), subject(step.namespace, step.dryRun))
		switch {
		case step.want == "" && err != nil:
			t.Fatalf("step %d: %v, want admitted", i, err)
		case step.want != "":
			var r *action.Refusal
			if !errors.As(err, &r) || !strings.HasPrefix(err.Error(), step.want) {
				t.Fatalf("step %d: got %v, want a refusal starting %q", i, err, step.want)
			}
		case step.dryRun && adm.Done != nil:
			t.Errorf("step %d: a dry run has something to give back", i)
		case !step.dryRun && adm.Done == nil:
			t.Errorf("step %d: an admitted action has nothing to give back", i)
		}
		if got := len(slotsOf(t, c)); got != step.slots {
			t.Errorf("step %d: %d slots on the Lease, want %d", i, got, step.slots)
		}
	}
}

// TestDoneGivesBackWhatWasNotUsed: an action that changed nothing gives
// its slot back; one that changed something keeps it.
func TestDoneGivesBackWhatWasNotUsed(t *testing.T) {
	for _, tc := range []struct {
		changed bool
		slots   int
	}{{false, 0}, {true, 1}} {
		c := fake.NewClientset()
		g := newGate(t, c, &clock{t: t0}, nil)
		adm, err := g.Admit(context.Background(), subject("a", false))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(slotsOf(t, c)); got != 1 {
			t.Fatalf("%d slots after Admit, want 1", got)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the action's context ended: giving back must not depend on it
		adm.Finish(ctx, tc.changed)
		if got := len(slotsOf(t, c)); got != tc.slots {
			t.Errorf("changed=%v: %d slots, want %d", tc.changed, got, tc.slots)
		}
	}
}

// annotate sets (or, with value "-", removes) an annotation of the Lease,
// as kubectl annotate does.
func annotate(t *testing.T, c kubernetes.Interface, key, value string) {
	t.Helper()
	lease, err := c.CoordinationV1().Leases(ns).Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	if value == "-" {
		delete(lease.Annotations, key)
	} else {
		lease.Annotations[key] = value
	}
	if _, err := c.CoordinationV1().Leases(ns).Update(context.Background(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorPausesAndResets: the annotations on the Lease pause every
// action, dry runs too, until removed, and reset the window.
func TestOperatorPausesAndResets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   string
		value string
		// want is the next action's refusal, "" for admitted; slots is
		// what the Lease holds after it.
		want  string
		slots int
	}{
		{name: "pause", key: PausedAnnotation, value: "incident 42",
			want: `refused (budget): remediation budget paused: "incident 42" (annotation keptn-action-provider.io/paused on Lease keptn/action-provider-budget); ` +
				"to resume: kubectl annotate lease -n keptn action-provider-budget keptn-action-provider.io/paused-", slots: 2},
		{name: "reset now", key: ResetAnnotation, value: "now", slots: 1},
		{name: "reset as of a time", key: ResetAnnotation, value: t0.Add(90 * time.Second).Format(time.RFC3339), slots: 2},
		{name: "reset as of a time to come", key: ResetAnnotation, value: "2099-01-01T00:00:00Z", slots: 1},
		{name: "a record no one can read, and a reset", key: slotsAnnotation, value: "[{garbage", want: "reset it: kubectl annotate --overwrite lease -n keptn action-provider-budget keptn-action-provider.io/reset=now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset()
			clk := &clock{t: t0}
			g := newGate(t, c, clk, nil)
			for _, at := range []time.Duration{0, 2 * time.Minute} {
				clk.set(t0.Add(at))
				if _, err := g.Admit(context.Background(), subject("a", false)); err != nil {
					t.Fatal(err)
				}
			}
			annotate(t, c, tc.key, tc.value)
			clk.set(t0.Add(3 * time.Minute))
			for _, dryRun := range []bool{true, false} {
				_, err := g.Admit(context.Background(), subject("a", dryRun))
				if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("dry run %v: got %v, want %q", dryRun, err, tc.want)
				}
			}
			switch tc.key {
			case PausedAnnotation:
				annotate(t, c, PausedAnnotation, "-")
				if _, err := g.Admit(context.Background(), subject("b", false)); err != nil {
					t.Fatalf("resumed: %v", err)
				}
				if got := len(slotsOf(t, c)); got != 3 {
					t.Errorf("%d slots after the resume, want 3", got)
				}
			case slotsAnnotation:
				// Not a refusal: the gate cannot decide, and says how to fix it.
				_, err := g.Admit(context.Background(), subject("a", false))
				var r *action.Refusal
				if errors.As(err, &r) {
					t.Errorf("an unreadable record refused: %v", err)
				}
				annotate(t, c, ResetAnnotation, "now")
				if _, err := g.Admit(context.Background(), subject("a", false)); err != nil {
					t.Fatalf("after the reset: %v", err)
				}
				if got := len(slotsOf(t, c)); got != 1 {
					t.Errorf("%d slots after the reset, want 1", got)
				}
			default:
				if got := len(slotsOf(t, c)); got != tc.slots {
					t.Errorf("%d slots, want %d", got, tc.slots)
				}
				lease, _ := c.CoordinationV1().Leases(ns).Get(context.Background(), LeaseName, metav1.GetOptions{})
				if _, ok := lease.Annotations[ResetAnnotation]; ok {
					t.Error("the reset annotation is still there after a write applied it")
				}
				if !strings.Contains(lease.Annotations[lastResetAnnotation], "applied at 2026-11-24T03:03:00Z by replica-a") {
					t.Errorf("last reset %q", lease.Annotations[lastResetAnnotation])
				}
			}
		})
	}
}

// TestBreakerOpensOnce: the first refusal of a spent budget records one
// Event and one opening; later refusals of the same opening none, dry runs
// none; after a reset, the next opening is a new one.
func TestBreakerOpensOnce(t *testing.T) {
	c := fake.NewClientset()
	clk := &clock{t: t0}
	reg := prometheus.NewRegistry()
	g := newGate(t, c, clk, reg)
	ctx := context.Background()
	admit := func(namespace string, dryRun bool) error {
		clk.set(clk.now().Add(time.Second))
		_, err := g.Admit(ctx, subject(namespace, dryRun))
		return err
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := admit(n, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit("d", true); err == nil {
		t.Fatal("a dry run was admitted past the budget")
	}
	if got := spentEvents(t, c); len(got) != 0 {
		t.Fatalf("a dry run opened the breaker: %v", got)
	}
	for range 3 {
		if err := admit("d", false); err == nil {
			t.Fatal("admitted past the budget")
		}
	}
	events := spentEvents(t, c)
	if len(events) != 1 || !strings.HasPrefix(events[0], "circuit breaker open: every action is refused; remediation budget spent: 3 of 3 actions") {
		t.Fatalf("events %q, want one BudgetSpent", events)
	}
	for _, m := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{g.metrics.openings.WithLabelValues(scopeCluster), 1},
		{g.metrics.refusals.WithLabelValues(scopeCluster), 3},
		{g.metrics.open.WithLabelValues(scopeCluster), 1},
		{g.metrics.spent, 3},
	} {
		if got := testutil.ToFloat64(m.c); got != m.want {
			t.Errorf("%v = %v, want %v", m.c, got, m.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "action_provider_budget_open", "action_provider_budget_refusals_total"); err != nil || n != 5 {
		t.Errorf("registered series: %d, %v", n, err)
	}

	// A reset closes the opening: the next one is recorded anew.
	annotate(t, c, ResetAnnotation, "now")
	for _, n := range []string{"a", "b", "c"} {
		if err := admit(n, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit("d", false); err == nil {
		t.Fatal("admitted past the budget")
	}
	if got := spentEvents(t, c); len(got) != 2 {
		t.Errorf("%d events after a second opening, want 2", len(got))
	}

	// A namespace's budget opens on its own: max 3, 2 per namespace.
	c2 := fake.NewClientset()
	g2 := newGate(t, c2, clk, nil)
	for i := range 4 {
		_, err := g2.Admit(ctx, subject("a", false))
		if (i < 2) != (err == nil) {
			t.Fatalf("action %d in a: %v", i, err)
		}
	}
	if _, err := g2.Admit(ctx, subject("", false)); err != nil {
		t.Errorf("an action without a namespace counts for the cluster only: %v", err)
	}
	events = spentEvents(t, c2)
	if len(events) != 1 || !strings.HasPrefix(events[0], "circuit breaker open: every action in namespace a is refused; remediation budget spent: 2 of 2") {
		t.Errorf("events %q, want one for namespace a", events)
	}
}

// TestTheWindowClosesAnOpening: once the oldest slot leaves the window,
// the budget is no longer spent, and a later spend is a new opening.
func TestTheWindowClosesAnOpening(t *testing.T) {
	c := fake.NewClientset()
	clk := &clock{t: t0}
	g := newGate(t, c, clk, nil)
	ctx := context.Background()
	for i := range 8 {
		clk.set(t0.Add(time.Duration(i) * time.Minute))
		_, _ = g.Admit(ctx, subject(string(rune('a'+i)), false))
	}
	// Minutes 0-2 admitted; 3-7 refused: one opening. At 10 the first
	// leaves: admitted; at 10:30 refused: a second opening.
	for i, m := range []time.Duration{10 * time.Minute, 10*time.Minute + 30*time.Second} {
		clk.set(t0.Add(m))
		if _, err := g.Admit(ctx, subject(fmt.Sprintf("x%d", i), false)); (i == 0) != (err == nil) {
			t.Fatalf("at %s: %v", m, err)
		}
	}
	if got := spentEvents(t, c); len(got) != 2 {
		t.Errorf("%d events, want 2: %q", len(got), got)
	}
}

// TestConflictsAreReadAgain: a write that loses to another replica's is
// decided again on what the other wrote.
func TestConflictsAreReadAgain(t *testing.T) {
	c := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: ns}})
	conflicts := 2
	c.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts == 0 {
			return false, nil, nil
		}
		conflicts--
		return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), LeaseName, errors.New("stale"))
	})
	g := newGate(t, c, &clock{t: t0}, nil)
	if _, err := g.Admit(context.Background(), subject("a", false)); err != nil {
		t.Fatal(err)
	}
	if conflicts != 0 || len(slotsOf(t, c)) != 1 {
		t.Errorf("conflicts left %d, slots %d; want 0 and 1", conflicts, len(slotsOf(t, c)))
	}

	// An error that will not pass is not tried again.
	c.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(coordinationv1.Resource("leases"), LeaseName, errors.New("rbac"))
	})
	_, err := g.Admit(context.Background(), subject("a", false))
	var r *action.Refusal
	if err == nil || errors.As(err, &r) || !apierrors.IsForbidden(err) {
		t.Errorf("got %v, want the forbidden error, not a refusal", err)
	}
}

// TestMaintainCreatesTheLease: an operator can pause before any action.
func TestMaintainCreatesTheLease(t *testing.T) {
	c := fake.NewClientset()
	g := newGate(t, c, &clock{t: t0}, nil)
	g.Maintain(context.Background())
	g.Maintain(context.Background()) // exists already: nothing to do
	lease, err := c.CoordinationV1().Leases(ns).Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Labels[recordLabel] != "budget" {
		t.Errorf("labels %v", lease.Labels)
	}
	annotate(t, c, PausedAnnotation, "")
	g.Maintain(context.Background())
	if testutil.ToFloat64(g.metrics.paused) != 1 {
		t.Error("the paused gauge is not set")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{Namespace: ns, Limits: Limits{Max: 3, PerNamespace: 2, Window: time.Minute}}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"namespace", func(c *Config) { c.Namespace = "Not_A_Label" }},
		{"max", func(c *Config) { c.Max = 0 }},
		{"per namespace above max", func(c *Config) { c.PerNamespace = 4 }},
		{"window", func(c *Config) { c.Window = time.Second }},
	} {
		cfg := good
		tc.edit(&cfg)
		if _, err := New(adapt.Clientset(fake.NewClientset()), cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := New(nil, good); err == nil {
		t.Error("nil client accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(adapt.Clientset(fake.NewClientset()), Config{Namespace: ns, Limits: good.Limits, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(adapt.Clientset(fake.NewClientset()), Config{Namespace: ns, Limits: good.Limits, Metrics: reg}); err == nil {
		t.Error("registered twice on one registry")
	}
}

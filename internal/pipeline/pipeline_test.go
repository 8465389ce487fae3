package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// carts is a deployment whose status says it has converged on replicas
// ready pods out of want.
func carts(annotations map[string]string, want, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "carts", Namespace: "sockshop-production", Annotations: annotations, Generation: 1},
		Spec:       appsv1.DeploymentSpec{Replicas: &want},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: want, UpdatedReplicas: want,
			ReadyReplicas: ready, AvailableReplicas: ready},
	}
}

type fixture struct {
	client   *fake.Clientset
	pipeline *pipeline.Pipeline
	calls    int
}

func newFixture(t *testing.T, d *appsv1.Deployment) *fixture {
	t.Helper()
	client := fake.NewSimpleClientset(d)
	book, err := ledger.New(adapt.Clientset(client), ledger.Config{Namespace: "keptn", Identity: "a",
		EventTTL: time.Minute, LockTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := guard.NewPolicy([]string{"sockshop-*"}, "keptn")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{client: client, pipeline: &pipeline.Pipeline{
		Client: adapt.Clientset(client), Policy: policy, Ledger: book, Audit: audit.New(adapt.Clientset(client), "a"),
		Cooldown:      ledger.Cooldown{Period: time.Hour, Setting: "ACTION_COOLDOWN"},
		VerifyTimeout: 50 * time.Millisecond, VerifyInterval: time.Millisecond,
	}}
}

// mutator is a change that only counts that it ran: it returns change, not
// changed in a dry run, and err.
type mutator struct {
	change pipeline.Change
	err    error
	calls  *int
}

func (m mutator) Mutate(_ context.Context, _ workload.Ref, dryRun bool) (pipeline.Change, error) {
	*m.calls++
	c := m.change
	if dryRun {
		c.Changed = false
	}
	return c, m.err
}

func (f *fixture) mutator(c pipeline.Change, err error) pipeline.Mutator {
	return mutator{change: c, err: err, calls: &f.calls}
}

func (f *fixture) events(t *testing.T) int {
	t.Helper()
	list, err := f.client.CoreV1().Events("sockshop-production").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

func request(id string) action.Request {
	return action.Request{Action: "restart", Project: "sockshop", Stage: "production", Service: "carts",
		TriggeredID: id, KeptnContext: "ctx-" + id, Value: json.RawMessage(`{}`)}
}

var restarted = pipeline.Change{Message: "restarted deployment sockshop-production/carts", Reason: "Restarted",
	Before: "never restarted", After: "restarted now", Changed: true, Rollout: true}

func TestRunChangesRecordsAndVerifies(t *testing.T) {
	f := newFixture(t, carts(nil, 2, 2))
	got, err := f.pipeline.Run(context.Background(), "restart", request("t1"), pipeline.Options{}, f.mutator(restarted, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Result != keptnv2.ResultPass || !strings.HasPrefix(got.Message, "restarted deployment sockshop-production/carts; rollout converged in ") ||
		!strings.HasSuffix(got.Message, "2/2 pods ready") {
		t.Errorf("outcome %+v", got)
	}
	if n := f.events(t); n != 1 {
		t.Errorf("%d audit events, want 1", n)
	}
	// The change started the cooldown: the same action again is refused
	// before it runs.
	_, err = f.pipeline.Run(context.Background(), "restart", request("t2"), pipeline.Options{}, f.mutator(restarted, nil))
	wantRefusal(t, err, ledger.RuleCooldown)
	if f.calls != 1 {
		t.Errorf("the mutator ran %d times, want 1", f.calls)
	}
}

func TestRunReportsAnUnconvergedRolloutAsFail(t *testing.T) {
	f := newFixture(t, carts(nil, 3, 2))
	got, err := f.pipeline.Run(context.Background(), "restart", request("t1"), pipeline.Options{}, f.mutator(restarted, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := "restarted deployment sockshop-production/carts, but the rollout did not converge: not converged after 50ms"
	if got.Result != keptnv2.ResultFailed || !strings.HasPrefix(got.Message, want) || !strings.Contains(got.Message, "2/3 pods ready") {
		t.Errorf("outcome %+v, want a fail starting %q", got, want)
	}
}

func TestRunWithoutWait(t *testing.T) {
	f := newFixture(t, carts(nil, 3, 2))
	no := false
	got, err := f.pipeline.Run(context.Background(), "restart", request("t1"), pipeline.Options{Wait: &no}, f.mutator(restarted, nil))
	if err != nil || got.Result != keptnv2.ResultPass ||
		got.Message != "restarted deployment sockshop-production/carts; not waiting for the rollout (wait: false)" {
		t.Errorf("outcome %+v, %v", got, err)
	}
}

func TestRunDryRunRecordsNothing(t *testing.T) {
	f := newFixture(t, carts(nil, 2, 2))
	dry := restarted
	dry.Message = "would restart deployment sockshop-production/carts"
	got, err := f.pipeline.Run(context.Background(), "restart", request("t1"), pipeline.Options{DryRun: true}, f.mutator(dry, nil))
	if err != nil || got.Message != "dry run: would restart deployment sockshop-production/carts" {
		t.Errorf("outcome %+v, %v", got, err)
	}
	if n := f.events(t); n != 0 {
		t.Errorf("a dry run recorded %d audit events", n)
	}
	for _, a := range f.client.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("a dry run wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func TestRunRefusesBeforeMutating(t *testing.T) {
	tests := []struct {
		name string
		d    *appsv1.Deployment
		req  func(action.Request) action.Request
		opts pipeline.Options
		rule string
	}{
		{"namespace outside the allowlist", carts(nil, 1, 1), nil,
			pipeline.Options{Selector: workload.Selector{Namespace: "podtato-production"}}, guard.RuleNamespace},
		{"the provider's namespace", carts(nil, 1, 1), nil,
			pipeline.Options{Selector: workload.Selector{Namespace: "keptn", Name: "action-provider"}}, guard.RuleNamespace},
		{"opt-out", carts(map[string]string{guard.OptOutAnnotation: "true"}, 1, 1), nil, pipeline.Options{}, guard.RuleOptOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.d)
			_, err := f.pipeline.Run(context.Background(), "restart", request("t1"), tt.opts, f.mutator(restarted, nil))
			wantRefusal(t, err, tt.rule)
			if f.calls != 0 {
				t.Errorf("the mutator ran although the action was refused")
			}
			if tt.rule == guard.RuleNamespace {
				for _, a := range f.client.Actions() {
					if a.GetNamespace() != "" && a.GetNamespace() != "sockshop-production" {
						t.Errorf("read %s in the refused namespace %s", a.GetResource().Resource, a.GetNamespace())
					}
				}
			}
		})
	}
}

func TestRunReleasesTheLockWhenTheChangeFails(t *testing.T) {
	f := newFixture(t, carts(nil, 1, 1))
	boom := errors.New("patch deployment: the server is on fire")
	_, err := f.pipeline.Run(context.Background(), "restart", request("t1"), pipeline.Options{}, f.mutator(pipeline.Change{}, boom))
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want the mutator's", err)
	}
	// Nothing changed, so neither a lock nor a cooldown stands in the way.
	if _, err := f.pipeline.Run(context.Background(), "restart", request("t2"), pipeline.Options{}, f.mutator(restarted, nil)); err != nil {
		t.Fatalf("the next action: %v", err)
	}
}

func TestRunUnchangedTargetPassesWithoutRecord(t *testing.T) {
	f := newFixture(t, carts(nil, 1, 1))
	noop := pipeline.Change{Message: "deployment sockshop-production/carts already has 1 replica; nothing to do"}
	got, err := f.pipeline.Run(context.Background(), "scale", request("t1"), pipeline.Options{}, f.mutator(noop, nil))
	if err != nil || got.Result != keptnv2.ResultPass || got.Message != noop.Message {
		t.Errorf("outcome %+v, %v", got, err)
	}
	if n := f.events(t); n != 0 {
		t.Errorf("%d audit events for a change that changed nothing", n)
	}
}

func wantRefusal(t *testing.T, err error, rule string) {
	t.Helper()
	var r *action.Refusal
	if !errors.As(err, &r) || r.Rule != rule {
		t.Fatalf("error %v, want a %q refusal", err, rule)
	}
}

// The audit event says what changed, before → after when the mutator says
// both, and is a Warning when the change did not fully succeed.
func TestRunAuditsTheChange(t *testing.T) {
	for _, tc := range []struct {
		name          string
		result        keptnv2.ResultType
		before, after string
		typ, change   string
	}{
		{"passed", keptnv2.ResultPass, "2 replicas", "3 replicas", "Normal", "keptn remediation scale: 2 replicas → 3 replicas ("},
		{"warned", keptnv2.ResultWarning, "2 replicas", "3 replicas", "Warning", "keptn remediation scale: 2 replicas → 3 replicas ("},
		{"failed", keptnv2.ResultFailed, "2 replicas", "3 replicas", "Warning", "keptn remediation scale: 2 replicas → 3 replicas ("},
		{"only before", keptnv2.ResultPass, "2 replicas", "", "Normal", "keptn remediation scale: 2 replicas →  ("},
		{"only after", keptnv2.ResultPass, "", "3 replicas", "Normal", "keptn remediation scale:  → 3 replicas ("},
		{"neither", keptnv2.ResultPass, "", "", "Normal", "keptn remediation scale: scaled deployment sockshop-production/carts ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, carts(nil, 2, 2))
			change := pipeline.Change{Message: "scaled deployment sockshop-production/carts", Reason: "Scaled",
				Before: tc.before, After: tc.after, Result: tc.result, Changed: true}
			if _, err := f.pipeline.Run(context.Background(), "scale", request("t1"), pipeline.Options{}, f.mutator(change, nil)); err != nil {
				t.Fatal(err)
			}
			list, err := f.client.CoreV1().Events("sockshop-production").List(context.Background(), metav1.ListOptions{})
			if err != nil || len(list.Items) != 1 {
				t.Fatalf("audit events %v, %v; want one", list, err)
			}
			if ev := list.Items[0]; ev.Type != tc.typ || !strings.HasPrefix(ev.Message, tc.change) {
				t.Errorf("audit event %s %q; want %s, starting %q", ev.Type, ev.Message, tc.typ, tc.change)
			}
		})
	}
}

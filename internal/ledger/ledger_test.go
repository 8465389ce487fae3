package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// clock is a settable clock for the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newLedger(t *testing.T, client *fake.Clientset, identity string, clk *clock) *Ledger {
	t.Helper()
	l, err := New(adapt.Clientset(client), Config{
		Namespace: "keptn", Identity: identity, EventTTL: 10 * time.Minute,
		LockTTL: 6 * time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var fiveMinutes = Cooldown{Period: 5 * time.Minute, Setting: "ACTION_COOLDOWN"}

var carts = workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-production", Name: "carts"}

func TestClaimOnceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newLedger(t, client, "a", clk), newLedger(t, client, "b", clk)

	if first, err := a.Claim(ctx, "id-1"); err != nil || !first {
		t.Fatalf("first claim = %v, %v; want true", first, err)
	}
	if first, err := b.Claim(ctx, "id-1"); err != nil || first {
		t.Fatalf("second replica's claim of the same event = %v, %v; want false", first, err)
	}
	if first, err := b.Claim(ctx, "id-2"); err != nil || !first {
		t.Fatalf("another event = %v, %v; want true", first, err)
	}
	// After the TTL the record no longer counts: a redelivery a day later
	// is a new event as far as the provider can tell.
	clk.advance(11 * time.Minute)
	if first, err := b.Claim(ctx, "id-1"); err != nil || !first {
		t.Fatalf("claim after the TTL = %v, %v; want true", first, err)
	}
}

func TestSweepDeletesOnlyWhatNobodyNeeds(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newLedger(t, client, "a", clk)
	dead := newLedger(t, client, "dead", clk)
	if err := dead.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old-1", "old-2", "old-running"} {
		if _, err := l.Claim(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Started(ctx, "old-running", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	hold, err := l.Lock(ctx, carts, "scale", "old-1", fiveMinutes, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	clk.advance(11 * time.Minute)
	if _, err := l.Claim(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	// Claiming never sweeps: clean-up must not delay an event.
	if got := leaseNames(t, client); len(got) != 6 {
		t.Fatalf("records after a claim: %v; want all 6 still there", got)
	}
	if n, err := l.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want the 2 expired, finished-or-unstarted claims", n, err)
	}
	// A day later the dead process's heartbeat and the idle target go too;
	// the started event stays until a survivor reports it.
	clk.advance(DefaultIdleTTL)
	if n, err := l.Sweep(ctx); err != nil || n != 3 {
		t.Fatalf("Sweep a day later = %d, %v; want the heartbeat, the target and the new claim", n, err)
	}
	got := leaseNames(t, client)
	if len(got) != 1 || got[0] != eventLeaseName("old-running") {
		t.Fatalf("records left: %v; want only the started event's", got)
	}
}

func leaseNames(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	list, err := client.CoordinationV1().Leases("keptn").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, lease := range list.Items {
		names = append(names, lease.Name)
	}
	return names
}

func TestLockOneAtATimeThenCooldown(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newLedger(t, client, "replica-a", clk), newLedger(t, client, "replica-b", clk)

	hold, err := a.Lock(ctx, carts, "restart", "id-1", fiveMinutes, false)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = b.Lock(ctx, carts, "scale", "id-2", fiveMinutes, false)
	wantRefusal(t, err, RuleLock, "deployment sockshop-production/carts is busy: action restart (triggeredid id-1)")

	// Another target is not affected.
	other := carts
	other.Name = "orders"
	if h, err := b.Lock(ctx, other, "restart", "id-3", fiveMinutes, false); err != nil {
		t.Fatalf("lock of another target: %v", err)
	} else if err := h.Release(ctx, false); err != nil {
		t.Fatal(err)
	}

	clk.advance(30 * time.Second)
	if err := hold.Release(ctx, true); err != nil {
		t.Fatalf("release: %v", err)
	}
	// Released: a different action may run at once, the same one not.
	if h, err := b.Lock(ctx, carts, "scale", "id-4", fiveMinutes, false); err != nil {
		t.Fatalf("scale after the restart finished: %v", err)
	} else if err := h.Release(ctx, false); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute)
	_, err = b.Lock(ctx, carts, "restart", "id-5", fiveMinutes, false)
	wantRefusal(t, err, RuleCooldown, "restart changed deployment sockshop-production/carts 1m0s ago (triggeredid id-1); it may run again in 4m0s (ACTION_COOLDOWN is 5m0s)")

	clk.advance(4 * time.Minute)
	if _, err := b.Lock(ctx, carts, "restart", "id-6", fiveMinutes, false); err != nil {
		t.Fatalf("restart after the cooldown: %v", err)
	}
}

func TestLockUnchangedTargetStartsNoCooldown(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newLedger(t, fake.NewClientset(), "a", clk)
	h, err := l.Lock(ctx, carts, "scale", "id-1", fiveMinutes, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lock(ctx, carts, "scale", "id-2", fiveMinutes, false); err != nil {
		t.Fatalf("an action that changed nothing started a cooldown: %v", err)
	}
}

func TestLockOfDeadReplicaExpires(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newLedger(t, client, "a", clk), newLedger(t, client, "b", clk)
	if _, err := a.Lock(ctx, carts, "restart", "id-1", fiveMinutes, false); err != nil {
		t.Fatal(err)
	}
	// a dies holding the lock; after LockTTL the target is free again.
	clk.advance(6*time.Minute + time.Second)
	if _, err := b.Lock(ctx, carts, "scale", "id-2", fiveMinutes, false); err != nil {
		t.Fatalf("lock after the holder's TTL: %v", err)
	}
}

func TestLockDryRunWritesNothing(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newLedger(t, client, "a", clk)
	h, err := l.Lock(ctx, carts, "restart", "id-1", fiveMinutes, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("dry run wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	// And a dry run still reports the refusal a real run would get.
	if _, err := l.Lock(ctx, carts, "restart", "id-2", fiveMinutes, false); err != nil {
		t.Fatal(err)
	}
	_, err = l.Lock(ctx, carts, "scale", "id-3", fiveMinutes, true)
	wantRefusal(t, err, RuleLock, "busy")
}

func TestLeaseNames(t *testing.T) {
	if got := targetLeaseName(carts); got != "target.deployment.sockshop-production.carts" {
		t.Errorf("lease name %q", got)
	}
	long := carts
	long.Name = strings.Repeat("a", 250)
	if got := targetLeaseName(long); !strings.HasPrefix(got, "target-") || len(got) > 253 {
		t.Errorf("lease name of a long target: %q", got)
	}
	for name, want := range map[string]string{
		"toggle feature/flag": "keptn-action-provider.io/last-toggle-feature-flag",
		"az-AZ.09_":           "keptn-action-provider.io/last-az-AZ.09_",
		"`{@[/:":              "keptn-action-provider.io/last-------",
		// An annotation's name is at most 63 characters: "last-" and 58.
		strings.Repeat("a", 58): "keptn-action-provider.io/last-" + strings.Repeat("a", 58),
		strings.Repeat("a", 59): "keptn-action-provider.io/last-" + digest(strings.Repeat("a", 59))[:16],
	} {
		if got := lastRunKey(name); got != want {
			t.Errorf("last-run key of %q: %q; want %q", name, got, want)
		}
	}
}

func wantRefusal(t *testing.T, err error, rule, text string) {
	t.Helper()
	var r *action.Refusal
	if !errors.As(err, &r) || r.Rule != rule || !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want a %q refusal containing %q", err, rule, text)
	}
}

func TestNewChecksItsConfig(t *testing.T) {
	valid := Config{Namespace: "keptn", Identity: "sts-0", EventTTL: time.Minute, LockTTL: time.Minute}
	for _, tc := range []struct {
		name   string
		nilCli bool
		edit   func(*Config)
		want   string // in the error; "" for none
	}{
		{"valid", false, func(*Config) {}, ""},
		{"no client", true, func(*Config) {}, "nil Kubernetes client"},
		{"bad namespace", false, func(c *Config) { c.Namespace = "Keptn_NS" }, "invalid namespace"},
		{"no event TTL", false, func(c *Config) { c.EventTTL = 0 }, "must be positive"},
		{"negative event TTL", false, func(c *Config) { c.EventTTL = -time.Second }, "must be positive"},
		{"no lock TTL", false, func(c *Config) { c.LockTTL = 0 }, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.edit(&cfg)
			var client kubernetes.Interface
			if !tc.nilCli {
				client = fake.NewClientset()
			}
			l, err := New(adapt.Clientset(client), cfg)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("New = %v; want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The defaults, and a holder of the pod name and a nonce.
			if l.cfg.HeartbeatPeriod != DefaultHeartbeat || l.cfg.IdleTTL != DefaultIdleTTL ||
				l.cfg.WriteBound != DefaultWriteBound || l.cfg.Now == nil {
				t.Errorf("defaults: %+v", l.cfg)
			}
			if h := l.Holder(); !strings.HasPrefix(h, "sts-0.") || len(h) != len("sts-0.")+6 {
				t.Errorf("holder %q; want sts-0.<6 hex digits>", h)
			}
		})
	}
}

// A hold whose lock expired and was taken by another event releases only
// what is its own: the new holder keeps the target, and the cooldown of
// the late action still starts.
func TestLateReleaseLeavesTheNewHolder(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newLedger(t, client, "a", clk), newLedger(t, client, "b", clk)
	late, err := a.Lock(ctx, carts, "restart", "id-1", fiveMinutes, false)
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(6*time.Minute + time.Second) // a's lock expired
	hold, err := b.Lock(ctx, carts, "scale", "id-2", fiveMinutes, false)
	if err != nil {
		t.Fatalf("lock after the TTL: %v", err)
	}
	if err := late.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	_, err = a.Lock(ctx, carts, "delete-pods", "id-3", fiveMinutes, false)
	wantRefusal(t, err, RuleLock, "busy: action scale (triggeredid id-2)")
	_, err = b.Lock(ctx, carts, "scale", "id-2", fiveMinutes, false)
	wantRefusal(t, err, RuleLock, "this event is already being handled on deployment sockshop-production/carts by replica "+b.Holder())
	clk.advance(time.Minute)
	if err := hold.Release(ctx, false); err != nil {
		t.Fatal(err)
	}
	_, err = b.Lock(ctx, carts, "restart", "id-4", fiveMinutes, false)
	wantRefusal(t, err, RuleCooldown, "restart changed deployment sockshop-production/carts 1m0s ago (triggeredid id-1)")
}

// A claim is this process's own only until something was recorded on it: a
// redelivery of an event it already started is not run again.
func TestClaimOfOwnStartedEvent(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newLedger(t, fake.NewClientset(), "a", clk)
	if first, err := l.Claim(ctx, "id"); err != nil || !first {
		t.Fatalf("Claim = %v, %v", first, err)
	}
	if first, err := l.Claim(ctx, "id"); err != nil || !first {
		t.Fatalf("Claim again before anything was recorded (a retried create) = %v, %v; want true", first, err)
	}
	if err := l.Started(ctx, "id", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if first, err := l.Claim(ctx, "id"); err != nil || first {
		t.Fatalf("Claim of an event this process started = %v, %v; want false", first, err)
	}
}

// An expired claim is taken over with the resourceVersion read. When the
// API server refuses that write as a conflict, another process took the
// event first: the claim is lost, not retried into a win. (That the API
// server does refuse it is tested in test/integration, TestLedgerClaimRace.)
func TestClaimOfAnExpiredRecordLostToAConflict(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	a, b := newLedger(t, client, "a", clk), newLedger(t, client, "b", clk)
	if first, err := a.Claim(ctx, "id"); err != nil || !first {
		t.Fatalf("Claim = %v, %v", first, err)
	}
	clk.advance(11 * time.Minute)
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(schemaLeases.GroupResource(), eventLeaseName("id"), errors.New("modified"))
	})
	if first, err := b.Claim(ctx, "id"); err != nil || first {
		t.Fatalf("Claim of an expired record whose takeover conflicted = %v, %v; want false", first, err)
	}
}

// One Sweep deletes at most maxSweepDeletes records; the next goes on.
func TestSweepIsBounded(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	// Claims of 11 minutes ago, made as Claim makes them; put in place
	// directly, which is much quicker than through the fake's Create.
	var claims []runtime.Object
	for i := range maxSweepDeletes + 2 {
		id := fmt.Sprintf("id-%d", i)
		claims = append(claims, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: eventLeaseName(id), Namespace: "keptn",
				Labels: map[string]string{recordLabel: recordEvent, managedByLabel: managedBy}},
			Spec: new(Ledger).spec("a", clk.Now(), 10*time.Minute),
		})
	}
	clk.advance(11 * time.Minute)
	l := newLedger(t, fake.NewClientset(claims...), "a", clk)
	for _, want := range []int{maxSweepDeletes, 2, 0} {
		if n, err := l.Sweep(ctx); err != nil || n != want {
			t.Fatalf("Sweep = %d, %v; want %d", n, err, want)
		}
	}
}

// A Lock that fails says why: contention only when the API server kept
// answering with conflicts, and any other error as it came.
func TestLockErrorsSayWhy(t *testing.T) {
	for _, tc := range []struct {
		name           string
		verb           string
		err            error
		want, unwanted string
	}{
		{"forbidden", "get", apierrors.NewForbidden(schemaLeases.GroupResource(), "x", errors.New("RBAC")), "forbidden", "contended"},
		{"always a conflict", "create", apierrors.NewConflict(schemaLeases.GroupResource(), "x", errors.New("modified")), "still contended after retries", "\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
			l := newLedger(t, client, "a", clk)
			client.PrependReactor(tc.verb, "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tc.err
			})
			_, err := l.Lock(context.Background(), carts, "scale", "id", fiveMinutes, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.unwanted) {
				t.Fatalf("Lock = %v; want an error saying %q, not %q", err, tc.want, tc.unwanted)
			}
		})
	}
}

// Each action's cooldown is its own: a second action's release keeps the
// first one's.
func TestCooldownsOfTwoActionsOnOneTarget(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l := newLedger(t, fake.NewClientset(), "a", clk)
	for _, run := range []struct{ action, id string }{{"restart", "id-1"}, {"scale", "id-2"}} {
		h, err := l.Lock(ctx, carts, run.action, run.id, fiveMinutes, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx, true); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Minute)
	}
	_, err := l.Lock(ctx, carts, "restart", "id-3", fiveMinutes, false)
	wantRefusal(t, err, RuleCooldown, "restart changed deployment sockshop-production/carts 2m0s ago (triggeredid id-1)")
	_, err = l.Lock(ctx, carts, "scale", "id-4", fiveMinutes, false)
	wantRefusal(t, err, RuleCooldown, "scale changed deployment sockshop-production/carts 1m0s ago (triggeredid id-2)")
}

func TestLeaseSpecAndExpiry(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ttl  time.Duration
		secs int32
	}{
		{10 * time.Minute, 600},
		{1500 * time.Millisecond, 2},
		{time.Second, 1},
		{100 * time.Millisecond, 1}, // a Lease counts whole seconds, at least one
	} {
		s := new(Ledger).spec("a", now, tc.ttl)
		if *s.LeaseDurationSeconds != tc.secs || *s.HolderIdentity != "a" || !s.RenewTime.Time.Equal(now) {
			t.Errorf("spec for %s: %d s, holder %s, renewed %s; want %d s, a, %s", tc.ttl, *s.LeaseDurationSeconds, *s.HolderIdentity, s.RenewTime, tc.secs, now)
		}
		if expired(s, now.Add(time.Duration(tc.secs)*time.Second)) || !expired(s, now.Add(time.Duration(tc.secs)*time.Second+1)) {
			t.Errorf("a lease of %d s expires other than just after %d s", tc.secs, tc.secs)
		}
	}
	// A Lease missing either field (written by hand, say) holds nothing.
	s := new(Ledger).spec("a", now, time.Minute)
	noRenew, noDuration := s, s
	noRenew.RenewTime, noDuration.LeaseDurationSeconds = nil, nil
	if !expired(noRenew, now) || !expired(noDuration, now) {
		t.Error("a lease without a renew time or a duration counts as held")
	}
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// The ledger's unit tests run on client-go's fake clientset, which does not
// enforce resourceVersion: there, two processes that read one record and
// both write it back both "win". These tests race processes on one record
// of a real API server, which rejects the stale write, and check that
// exactly one of them wins each time.

const (
	racers     = 8           // processes racing on one record
	beatPeriod = time.Second // HeartbeatPeriod of the processes that judge others
)

// newProcesses returns n processes of the provider, each with a client of
// its own and a distinct identity (prefix-0, prefix-1, …), keeping their
// records in namespace ns.
func newProcesses(t *testing.T, cp *controlPlane, ns, prefix string, n int, edit func(*ledger.Config)) []*ledger.Ledger {
	t.Helper()
	ls := make([]*ledger.Ledger, n)
	for i := range ls {
		c, err := kube.NewForConfig(cp.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ledger.Config{Namespace: ns, Identity: fmt.Sprintf("%s-%d", prefix, i),
			EventTTL: 10 * time.Minute, LockTTL: time.Minute, HeartbeatPeriod: beatPeriod, WriteBound: 10 * time.Second}
		if edit != nil {
			edit(&cfg)
		}
		if ls[i], err = ledger.New(c, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return ls
}

// race calls fn(0) … fn(n-1), each in a goroutine of its own, released
// together by closing one channel, and returns when all have returned.
func race(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// keepBeating makes each process beat once, then every beatPeriod until the
// test ends, as the provider does. It returns when the first beats went
// through, and the time by which they had: from then on, after three
// periods, every one of them judges others. A failed beat fails the test,
// since it would silently stop that process judging.
func keepBeating(ctx context.Context, t *testing.T, ls ...*ledger.Ledger) time.Time {
	t.Helper()
	for _, l := range ls {
		if err := l.Heartbeat(ctx); err != nil {
			t.Fatalf("first heartbeat of %s: %v", l.Holder(), err)
		}
	}
	began := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, l := range ls {
		wg.Go(func() {
			tick := time.NewTicker(beatPeriod)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := l.Heartbeat(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("heartbeat of %s: %v", l.Holder(), err)
				}
			}
		})
	}
	return began
}

// waitJudging waits until the processes that began beating at began judge
// others, and until dead's heartbeat, as the API server holds it, has
// lapsed: its actions are then orphans to each of them.
func waitJudging(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, began time.Time, dead *ledger.Ledger) {
	t.Helper()
	judging := began.Add(3*beatPeriod + 200*time.Millisecond)
	eventually(ctx, t, "the survivors to judge and "+dead.Holder()+"'s heartbeat to lapse", func(ctx context.Context) (bool, string, error) {
		list, err := c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: "keptn-action-provider.io/record=replica"})
		if err != nil {
			return false, "", err
		}
		now := time.Now()
		for _, l := range list.Items {
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != dead.Holder() {
				continue
			}
			lapses := l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
			if !now.After(lapses) {
				return false, fmt.Sprintf("%s's heartbeat lapses at %s", dead.Holder(), lapses.Format(time.StampMilli)), nil
			}
			if now.Before(judging) {
				return false, fmt.Sprintf("the survivors judge from %s", judging.Format(time.StampMilli)), nil
			}
			return true, "", nil
		}
		return false, "", fmt.Errorf("no heartbeat of %s on record", dead.Holder())
	})
}

// holderOf is the holder the API server has on an event's record.
func holderOf(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, triggeredID string) (holder, state string) {
	t.Helper()
	list, err := c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: "keptn-action-provider.io/record=event"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list.Items {
		if l.Annotations["keptn-action-provider.io/triggeredid"] == triggeredID {
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return holder, l.Labels["keptn-action-provider.io/state"]
		}
	}
	t.Fatalf("no record of event %s", triggeredID)
	return "", ""
}

// TestLedgerClaimRace: of racers processes claiming one event, exactly
// one gets it, whether the event is new (a create) or its earlier claim
// expired (an update with the resourceVersion read).
func TestLedgerClaimRace(t *testing.T) {
	cp := requireCluster(t)
	ctx := testContext(t)
	_, ns := newNamespace(ctx, t, cp.client)
	for _, tc := range []struct {
		name    string
		prefix  string
		expired bool
	}{
		{"new event", "new", false},
		{"expired claim", "expired", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 5 {
				id := fmt.Sprintf("%s-%d", tc.prefix, round)
				if tc.expired {
					// An earlier claim, for one second, which then lapses.
					old := newProcesses(t, cp, ns, "old", 1, func(c *ledger.Config) { c.EventTTL = time.Second })[0]
					if first, err := old.Claim(ctx, id); err != nil || !first {
						t.Fatalf("earlier claim = %v, %v", first, err)
					}
					claimed := time.Now()
					eventually(ctx, t, "the earlier claim to expire", func(context.Context) (bool, string, error) {
						return time.Since(claimed) > 1100*time.Millisecond, "", nil
					})
				}
				ps := newProcesses(t, cp, ns, fmt.Sprintf("claim-%d", round), racers, nil)
				won := make([]bool, racers)
				errs := make([]error, racers)
				race(racers, func(i int) { won[i], errs[i] = ps[i].Claim(ctx, id) })
				var winners []string
				for i, w := range won {
					if errs[i] != nil {
						t.Errorf("%s: Claim(%s) = %v", ps[i].Holder(), id, errs[i])
					}
					if w {
						winners = append(winners, ps[i].Holder())
					}
				}
				if len(winners) != 1 {
					t.Fatalf("round %d: %d processes claimed %s: %v; want exactly one", round, len(winners), id, winners)
				}
				if holder, _ := holderOf(ctx, t, cp.client, ns, id); holder != winners[0] {
					t.Errorf("round %d: the record of %s is held by %q; the winner was %q", round, id, holder, winners[0])
				}
			}
		})
	}
}

// TestLedgerOrphansRace: a process claims and starts some actions, beats
// once and never again (it was killed). Once its heartbeat lapsed, racers
// survivors look for orphans at once: each of its actions is taken over by
// exactly one of them.
func TestLedgerOrphansRace(t *testing.T) {
	cp := requireCluster(t)
	ctx := testContext(t)
	_, ns := newNamespace(ctx, t, cp.client)

	dead := newProcesses(t, cp, ns, "dead", 1, nil)[0]
	if err := dead.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	ids := []string{"orphan-0", "orphan-1", "orphan-2", "orphan-3", "orphan-4"}
	for _, id := range ids {
		if first, err := dead.Claim(ctx, id); err != nil || !first {
			t.Fatalf("claim %s = %v, %v", id, first, err)
		}
		if err := dead.Started(ctx, id, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	survivors := newProcesses(t, cp, ns, "survivor", racers, nil)
	began := keepBeating(ctx, t, survivors...)
	waitJudging(ctx, t, cp.client, ns, began, dead)

	got := make([][]lifecycle.Orphan, racers)
	errs := make([]error, racers)
	race(racers, func(i int) { got[i], errs[i] = survivors[i].Orphans(ctx) })

	takers := map[string][]string{} // triggered id → the survivors that got it
	for i, os := range got {
		if errs[i] != nil {
			t.Errorf("%s: Orphans = %v", survivors[i].Holder(), errs[i])
		}
		for _, o := range os {
			takers[o.ID] = append(takers[o.ID], survivors[i].Holder())
			if o.Replica != dead.Holder() || string(o.Record) != `{"id":"`+o.ID+`"}` {
				t.Errorf("orphan %+v; want %s's record", o, dead.Holder())
			}
		}
	}
	for _, id := range ids {
		if len(takers[id]) != 1 {
			t.Errorf("%s was taken over by %d survivors %v; want exactly one", id, len(takers[id]), takers[id])
			continue
		}
		if holder, state := holderOf(ctx, t, cp.client, ns, id); holder != takers[id][0] || state != "recovering" {
			t.Errorf("record of %s: holder %q, state %q; want %q, recovering", id, holder, state, takers[id][0])
		}
	}
	if len(takers) != len(ids) {
		t.Errorf("orphans taken over: %v; want exactly %v", takers, ids)
	}
}

// TestLedgerFinishingRacesTakeover: a process whose heartbeat lapsed (under
// load, say) records its finished events while the survivors take its
// actions over. For each action exactly one of the two reports it: either
// Finishing succeeds, or a survivor takes the action over as interrupted
// and Finishing says lifecycle.ErrTakenOver. A survivor that takes the
// record over after Finishing succeeded gets that very finished event to
// send, never an "interrupted" one of its own.
func TestLedgerFinishingRacesTakeover(t *testing.T) {
	cp := requireCluster(t)
	ctx := testContext(t)
	_, ns := newNamespace(ctx, t, cp.client)

	slow := newProcesses(t, cp, ns, "slow", 1, nil)[0]
	if err := slow.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	const actions = 8
	ids := make([]string, actions)
	for i := range ids {
		ids[i] = fmt.Sprintf("action-%d", i)
		if first, err := slow.Claim(ctx, ids[i]); err != nil || !first {
			t.Fatalf("claim %s = %v, %v", ids[i], first, err)
		}
		if err := slow.Started(ctx, ids[i], []byte(`{"id":"`+ids[i]+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	const takerCount = 4
	takers := newProcesses(t, cp, ns, "taker", takerCount, nil)
	began := keepBeating(ctx, t, takers...)
	waitJudging(ctx, t, cp.client, ns, began, slow)

	// Goroutines 0 … actions-1 are the slow process finishing one action
	// each; the rest are the takers looking for orphans.
	finishing := make([]error, actions)
	orphans := make([][]lifecycle.Orphan, takerCount)
	orphanErrs := make([]error, takerCount)
	race(actions+takerCount, func(i int) {
		if i < actions {
			// Spread over about the time the takers take to list and
			// take the records over, so that some Finishing calls come
			// before a takeover and some after: a spread of the race,
			// not a proof of anything.
			time.Sleep(time.Duration(i) * 15 * time.Millisecond)
			finishing[i] = slow.Finishing(ctx, ids[i], []byte("finished "+ids[i]))
			return
		}
		orphans[i-actions], orphanErrs[i-actions] = takers[i-actions].Orphans(ctx)
	})
	taken := map[string][]lifecycle.Orphan{}
	for i, os := range orphans {
		if orphanErrs[i] != nil {
			t.Errorf("%s: Orphans = %v", takers[i].Holder(), orphanErrs[i])
		}
		for _, o := range os {
			taken[o.ID] = append(taken[o.ID], o)
		}
	}
	var finished, interrupted, handedOn int
	for i, id := range ids {
		err := finishing[i]
		if err != nil && !errors.Is(err, lifecycle.ErrTakenOver) {
			t.Errorf("Finishing(%s) = %v; want nil or lifecycle.ErrTakenOver", id, err)
			continue
		}
		if len(taken[id]) > 1 {
			t.Errorf("%s was taken over by %d takers; want at most one", id, len(taken[id]))
			continue
		}
		var asInterrupted, withFinished bool
		if len(taken[id]) == 1 {
			o := taken[id][0]
			asInterrupted = len(o.Finished) == 0
			withFinished = string(o.Finished) == "finished "+id
			if !asInterrupted && !withFinished {
				t.Errorf("%s taken over with the finished event %q; want none or the slow process's", id, o.Finished)
			}
		}
		succeeded := err == nil
		switch {
		case succeeded == asInterrupted:
			t.Errorf("%s: Finishing = %v, taken over as interrupted = %v; want exactly one of the two", id, err, asInterrupted)
		case withFinished && !succeeded:
			t.Errorf("%s: taken over with a finished event that Finishing says it did not record (%v)", id, err)
		case succeeded:
			finished++
			if withFinished {
				handedOn++
			}
		default:
			interrupted++
		}
	}
	t.Logf("%d actions recorded finishing by their process (%d of them then taken over with that finished event), %d taken over as interrupted",
		finished, handedOn, interrupted)
}

// TestLedgerLockRace: racers events lock one target at once: exactly one
// holds it and every other is refused under the lock rule, whether the
// target has no record yet (a create), was released (an update), or its
// holder's lock expired (an update of a lapsed holder).
func TestLedgerLockRace(t *testing.T) {
	cp := requireCluster(t)
	ctx := testContext(t)
	_, ns := newNamespace(ctx, t, cp.client)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, ref workload.Ref)
	}{
		{"no record yet", func(*testing.T, workload.Ref) {}},
		{"released", func(t *testing.T, ref workload.Ref) {
			p := newProcesses(t, cp, ns, "before", 1, nil)[0]
			h, err := p.Lock(ctx, ref, "scale", "before", ledger.Cooldown{}, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Release(ctx, true); err != nil {
				t.Fatal(err)
			}
		}},
		{"holder's lock expired", func(t *testing.T, ref workload.Ref) {
			p := newProcesses(t, cp, ns, "before", 1, func(c *ledger.Config) { c.LockTTL = time.Second })[0]
			if _, err := p.Lock(ctx, ref, "scale", "before", ledger.Cooldown{}, false); err != nil {
				t.Fatal(err)
			}
			locked := time.Now()
			eventually(ctx, t, "the lock to expire", func(context.Context) (bool, string, error) {
				return time.Since(locked) > 1100*time.Millisecond, "", nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := workload.Ref{Kind: workload.Deployment, Namespace: "itest-target", Name: "carts-" + randomSuffix()}
			tc.setup(t, ref)
			ps := newProcesses(t, cp, ns, "lock", racers, nil)
			holds := make([]*ledger.Hold, racers)
			errs := make([]error, racers)
			race(racers, func(i int) {
				// A different action each: the cooldown, which is per
				// action, plays no part; only the lock does.
				holds[i], errs[i] = ps[i].Lock(ctx, ref, fmt.Sprintf("action-%d", i), fmt.Sprintf("event-%d", i), ledger.Cooldown{}, false)
			})
			var winners []int
			for i, err := range errs {
				var refusal *action.Refusal
				switch {
				case err == nil:
					winners = append(winners, i)
				case errors.As(err, &refusal) && refusal.Rule == ledger.RuleLock:
				default:
					t.Errorf("event-%d: Lock = %v; want a hold or a %q refusal", i, err, ledger.RuleLock)
				}
			}
			if len(winners) != 1 {
				t.Fatalf("%d events hold %s: %v; want exactly one", len(winners), ref, winners)
			}
			if err := holds[winners[0]].Release(ctx, false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

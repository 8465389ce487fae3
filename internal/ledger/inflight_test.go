package ledger

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func TestOrphansOfADeadReplicaAreTakenOverOnce(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	newReplica := func(name string) *Ledger {
		l, err := New(client, Config{Namespace: "keptn", Identity: name, EventTTL: 10 * time.Minute,
			LockTTL: time.Minute, HeartbeatPeriod: time.Second, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b, c := newReplica("a"), newReplica("b"), newReplica("c")
	for _, l := range []*Ledger{a, b, c} {
		if err := l.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// a starts two actions and finishes one; b starts one.
	for _, s := range []struct {
		l  *Ledger
		id string
	}{{a, "a-1"}, {a, "a-2"}, {b, "b-1"}} {
		if first, err := s.l.Claim(ctx, s.id); err != nil || !first {
			t.Fatalf("claim %s: %v %v", s.id, first, err)
		}
		if err := s.l.Started(ctx, s.id, []byte(`{"id":"`+s.id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Finished(ctx, "a-2"); err != nil {
		t.Fatal(err)
	}
	none := func(string) bool { return false }

	// While everyone is alive, nothing is orphaned.
	if got, err := c.Orphans(ctx, none); err != nil || len(got) != 0 {
		t.Fatalf("orphans while all replicas live: %v, %v", got, err)
	}
	// a dies: b and c keep beating; after three missed beats a's started,
	// unfinished action is an orphan, and only one replica gets it.
	clk.advance(2 * time.Second)
	_ = b.Heartbeat(ctx)
	_ = c.Heartbeat(ctx)
	clk.advance(2 * time.Second)
	_ = b.Heartbeat(ctx)
	_ = c.Heartbeat(ctx)
	got, err := c.Orphans(ctx, none)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "a-1" || got[0].Replica != "a" || string(got[0].Record) != `{"id":"a-1"}` {
		t.Fatalf("orphans after a died: %+v, want a-1 only", got)
	}
	// a, had it only been slow, must now leave the report to c.
	if mine, err := a.Holds(ctx, "a-1"); err != nil || mine {
		t.Errorf("a.Holds(a-1) = %v, %v after c took it over; want false", mine, err)
	}
	if mine, err := b.Holds(ctx, "b-1"); err != nil || !mine {
		t.Errorf("b.Holds(b-1) = %v, %v; want true", mine, err)
	}
	// b still runs b-1.
	if again, err := b.Orphans(ctx, func(id string) bool { return id == "b-1" }); err != nil || len(again) != 0 {
		t.Fatalf("a second replica found %v (%v); an orphan is taken over once", again, err)
	}
}

func TestOwnUnfinishedActionsAfterARestartAreOrphans(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	clk := &clock{now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}
	l, err := New(client, Config{Namespace: "keptn", Identity: "sts-0", EventTTL: 10 * time.Minute,
		LockTTL: time.Minute, HeartbeatPeriod: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"running", "lost"} {
		if _, err := l.Claim(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := l.Started(ctx, id, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Not within the first three heartbeat periods: too young to judge.
	if got, err := l.Orphans(ctx, func(id string) bool { return id == "running" }); err != nil || len(got) != 0 {
		t.Fatalf("orphans of fresh records = %+v, %v; want none yet", got, err)
	}
	clk.advance(3*time.Second + time.Millisecond)
	got, err := l.Orphans(ctx, func(id string) bool { return id == "running" })
	if err != nil || len(got) != 1 || got[0].ID != "lost" {
		t.Fatalf("orphans = %+v, %v; want only the one not running here", got, err)
	}
}

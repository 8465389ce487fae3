package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	natsgo "github.com/nats-io/nats.go"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// trigger is one action.triggered event a test publishes.
type trigger struct {
	ID, KeptnContext string
	Known            bool // an action the provider has a handler for
	Body             []byte
}

// newTrigger makes an action.triggered event from an example in
// examples/events, with a fresh id and shkeptncontext.
func newTrigger(t *testing.T, example string, known bool) trigger {
	t.Helper()
	ev := testsupport.Example(t, example)
	tr := trigger{ID: uuid.NewString(), KeptnContext: uuid.NewString(), Known: known}
	ev["id"], ev["shkeptncontext"] = tr.ID, tr.KeptnContext
	ev["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	var err error
	if tr.Body, err = json.Marshal(ev); err != nil {
		t.Fatal(err)
	}
	return tr
}

// newTriggers makes n events: scale (examples/events/01-scale-up.json),
// and every unknownEvery-th one page-oncall, an action no built-in handler
// has (examples/events/03-unknown-action.json); 0: none unknown.
func newTriggers(t *testing.T, n, unknownEvery int) []trigger {
	t.Helper()
	var out []trigger
	for i := 1; i <= n; i++ {
		if unknownEvery > 0 && i%unknownEvery == 0 {
			out = append(out, newTrigger(t, "03-unknown-action.json", false))
		} else {
			out = append(out, newTrigger(t, "01-scale-up.json", true))
		}
	}
	return out
}

// publish sends the events on NATS, as shipyard-controller does, and
// flushes, so that the server has them all when it returns.
func publish(t *testing.T, nc *natsgo.Conn, triggers ...trigger) {
	t.Helper()
	for _, tr := range triggers {
		if err := nc.Publish(triggeredTopic, tr.Body); err != nil {
			t.Fatalf("publish %s: %v", tr.ID, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// keptnEvent is an event as it is on NATS: go-utils'
// KeptnContextExtendedCE, with the fields the tests look at.
type keptnEvent struct {
	Subject        string            `json:"-"`
	Type           string            `json:"type"`
	ID             string            `json:"id"`
	Source         string            `json:"source"`
	SpecVersion    string            `json:"specversion"`
	Shkeptncontext string            `json:"shkeptncontext"`
	Triggeredid    string            `json:"triggeredid"`
	Data           keptnv2.EventData `json:"data"`
	Raw            []byte            `json:"-"`
}

// recorder records every event on the test's NATS server but the triggered
// ones the test publishes itself: all that the providers send, whatever
// its type.
type recorder struct {
	mu      sync.Mutex
	events  []keptnEvent
	bad     []string // messages that are not Keptn events
	markers int      // barrier markers received
	changed chan struct{}
	nc      *natsgo.Conn // the connection it records through
}

// barrierSubject carries the markers of recorder.barrier.
const barrierSubject = "test.barrier"

// record subscribes to every subject (">"); it returns once the server has
// the subscription.
func record(t *testing.T, nc *natsgo.Conn) *recorder {
	t.Helper()
	r := &recorder{nc: nc}
	sub, err := nc.Subscribe(">", func(m *natsgo.Msg) {
		if m.Subject == triggeredTopic {
			return
		}
		if m.Subject == barrierSubject {
			r.mu.Lock()
			r.markers++
			if r.changed != nil {
				close(r.changed)
				r.changed = nil
			}
			r.mu.Unlock()
			return
		}
		var ev keptnEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			r.mu.Lock()
			r.bad = append(r.bad, fmt.Sprintf("%s: %v: %.200s", m.Subject, err, m.Data))
			r.mu.Unlock()
			return
		}
		ev.Subject, ev.Raw = m.Subject, m.Data
		r.mu.Lock()
		r.events = append(r.events, ev)
		if r.changed != nil {
			close(r.changed)
			r.changed = nil
		}
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// Events returns a copy of what was recorded, in arrival order.
func (r *recorder) Events() []keptnEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// await blocks until done, given the recorded events, returns true, or ctx
// ends; it returns the events it last saw.
func (r *recorder) await(ctx context.Context, done func([]keptnEvent) bool) ([]keptnEvent, error) {
	for {
		r.mu.Lock()
		evs := slices.Clone(r.events)
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		if done(evs) {
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return evs, fmt.Errorf("waiting for events on NATS (%d received): %w", len(evs), ctx.Err())
		case <-changed:
		}
	}
}

// awaitFinished waits, bounded, until every one of ids has a finished event
// on NATS.
func (r *recorder) awaitFinished(ctx context.Context, t *testing.T, timeout time.Duration, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	evs, err := r.await(ctx, func(evs []keptnEvent) bool { return len(missingFinished(evs, ids)) == 0 })
	if err != nil {
		t.Fatalf("%v; no finished event for %d of %d events: %s", err, len(missingFinished(evs, ids)), len(ids),
			strings.Join(first(missingFinished(evs, ids), 5), ", "))
	}
}

// barrier waits, bounded, until the recorder holds every message the
// server took before the call: a marker published through the recorder's
// own connection reaches it after them, since the server routes a message
// before it confirms it, and keeps the order of what it routes to one
// connection. Called once every sender has stopped (settle), it shows that
// nothing more is coming.
func (r *recorder) barrier(ctx context.Context, t *testing.T) {
	t.Helper()
	r.mu.Lock()
	want := r.markers + 1
	r.mu.Unlock()
	if err := r.nc.Publish(barrierSubject, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		got := r.markers
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the barrier marker did not come back within %s", waitTimeout)
		case <-changed:
		}
	}
}

// settle stops every sender, then waits at the recorder's barrier: each
// replica's provider exits on SIGTERM once it has handled and answered all
// it accepted, and then its bridge, flushing what it published, closes;
// each provider, publishing to NATS itself, exits once NATS has confirmed
// what it sent. What the recorder holds then is all there will ever be.
func (r *recorder) settle(ctx context.Context, t *testing.T, replicas []*replica, providers ...*provider) {
	t.Helper()
	for _, rp := range replicas {
		rp.provider.Stop(t)
		rp.bridge.Close()
	}
	for _, p := range providers {
		p.Stop(t)
	}
	r.barrier(ctx, t)
}

func missingFinished(evs []keptnEvent, ids []string) []string {
	done := map[string]bool{}
	for _, ev := range evs {
		if ev.Type == keptnevent.FinishedType {
			done[ev.Triggeredid] = true
		}
	}
	var missing []string
	for _, id := range ids {
		if !done[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// checkExactlyOnce checks what the providers sent on NATS for the triggers:
// for each known one exactly one started, then exactly one finished, each
// on the subject of its type, answering it (triggeredid, shkeptncontext)
// and about its project, stage and service; for an unknown one nothing at
// all; and nothing else besides.
func checkExactlyOnce(t *testing.T, r *recorder, triggers []trigger) {
	t.Helper()
	byTrigger := map[string][]keptnEvent{}
	for _, ev := range r.Events() {
		byTrigger[ev.Triggeredid] = append(byTrigger[ev.Triggeredid], ev)
	}
	r.mu.Lock()
	bad := slices.Clone(r.bad)
	r.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("%d messages on NATS are not Keptn events, e.g. %s", len(bad), bad[0])
	}
	errs := 0
	fail := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, tr := range triggers {
		evs := byTrigger[tr.ID]
		delete(byTrigger, tr.ID)
		if !tr.Known {
			if len(evs) > 0 {
				fail("unknown action %s: %d events on NATS (%s), want none", tr.ID, len(evs), types(evs))
			}
			continue
		}
		if len(evs) != 2 || evs[0].Type != keptnevent.StartedType || evs[1].Type != keptnevent.FinishedType {
			fail("event %s: %s on NATS, want exactly one started then one finished", tr.ID, types(evs))
			continue
		}
		for _, ev := range evs {
			if ev.Subject != ev.Type || ev.Shkeptncontext != tr.KeptnContext || ev.Source != "action-provider" ||
				ev.ID == "" || ev.ID == tr.ID || ev.SpecVersion != "1.0" {
				fail("%s for %s: subject %q, shkeptncontext %q (want %q), source %q, id %q, specversion %q",
					ev.Type, tr.ID, ev.Subject, ev.Shkeptncontext, tr.KeptnContext, ev.Source, ev.ID, ev.SpecVersion)
			}
			if d := ev.Data; d.Project != "sockshop" || d.Stage != "production" || d.Service != "carts" {
				fail("%s for %s: data %s/%s/%s, want sockshop/production/carts", ev.Type, tr.ID, d.Project, d.Stage, d.Service)
			}
		}
		if fin := evs[1].Data; fin.Status == "" || fin.Result == "" || fin.Message == "" {
			fail("finished for %s: status %q, result %q, message %q", tr.ID, fin.Status, fin.Result, fin.Message)
		}
	}
	for id, evs := range byTrigger {
		fail("%d events on NATS (%s) answer %q, which no test event has", len(evs), types(evs), id)
	}
	if errs > 10 {
		t.Errorf("... and %d more", errs-10)
	}
}

func types(evs []keptnEvent) string {
	if len(evs) == 0 {
		return "nothing"
	}
	var s []string
	for _, ev := range evs {
		s = append(s, strings.TrimPrefix(ev.Type, "sh.keptn.event."))
	}
	return strings.Join(s, ", ")
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func ids(triggers []trigger, known bool) []string {
	var out []string
	for _, tr := range triggers {
		if tr.Known == known {
			out = append(out, tr.ID)
		}
	}
	return out
}

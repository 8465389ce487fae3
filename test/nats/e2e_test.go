package nats

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// TestEndToEnd publishes action.triggered events on NATS, as
// shipyard-controller does, to providers each behind its own bridge, all in
// one queue group, and checks on NATS that each event the provider has a
// handler for got exactly one started and one finished event, answering
// it, and an event for an unknown action nothing at all. With 3 replicas,
// each event is handled by exactly one of them, and each handles some.
func TestEndToEnd(t *testing.T) {
	requireSetup(t)
	t.Parallel()
	for _, n := range []int{1, 3} {
		name := fmt.Sprintf("%d replicas", n)
		if n == 1 {
			name = "1 replica"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			srv := startNATS(t)
			keptn := srv.connect(t, "shipyard-controller")
			rec := record(t, keptn)
			replicas := startReplicas(ctx, t, n, srv.URL, nil)

			const events = 50
			triggers := newTriggers(t, events, 10) // 45 scale, 5 page-oncall
			start := time.Now()
			publish(t, keptn, triggers...)
			rec.awaitFinished(ctx, t, waitTimeout, ids(triggers, true))
			t.Logf("%d finished events on NATS %s after publishing", len(ids(triggers, true)), time.Since(start).Round(time.Millisecond))
			rec.settle(ctx, t, replicas)
			checkExactlyOnce(t, rec, triggers)
			// DRY_RUN: each scale is decided and reported, and passes.
			for _, ev := range rec.Events() {
				if d := ev.Data; ev.Type == keptnevent.FinishedType &&
					(d.Status != keptnv2.StatusSucceeded || d.Result != keptnv2.ResultPass ||
						!strings.HasPrefix(d.Message, "dry run: ") || !strings.Contains(d.Message, "sockshop-production/carts")) {
					t.Errorf("finished for %s: %s/%s %q, want succeeded/pass \"dry run: ... sockshop-production/carts ...\"", ev.Triggeredid, d.Status, d.Result, d.Message)
				}
			}

			// Every event went to exactly one bridge, and was delivered.
			seen := map[string]string{}
			for _, r := range replicas {
				fw := r.bridge.Forwards()
				t.Logf("%s: %d events", r.name, len(fw))
				if n > 1 && len(fw) == 0 {
					t.Errorf("%s got no event: the queue group did not spread the work", r.name)
				}
				for _, f := range fw {
					if other, ok := seen[f.ID]; ok {
						t.Errorf("event %s went to %s and to %s", f.ID, other, r.name)
					}
					seen[f.ID] = r.name
					if !f.Delivered() || len(f.Codes) != 1 {
						t.Errorf("%s: event %s: POSTs answered %v (%v), want one 2xx", r.name, f.ID, f.Codes, f.Err)
					}
				}
			}
			if len(seen) != events {
				t.Errorf("the bridges took %d events from NATS, want %d", len(seen), events)
			}
		})
	}
}

// TestEventEndpointDownThenUp: the distributor's /event refuses (503) for a
// while, then accepts again. The provider retries each event within
// EVENTBROKER_RETRY_TIMEOUT, so that every started and finished event is on
// NATS afterwards, each exactly once.
//
// The outage is 30 s, with the provider's default retry bound of
// 2m. Here it is scaled down to 6 s and the bound to 30 s, to keep the test
// short: what matters is that the outage spans several of the provider's
// retries (its back-off starts at 100 ms and doubles, so 6 s take about six
// attempts) and ends well within the bound.
func TestEventEndpointDownThenUp(t *testing.T) {
	requireSetup(t)
	t.Parallel()
	ctx := testContext(t)
	srv := startNATS(t)
	keptn := srv.connect(t, "shipyard-controller")
	rec := record(t, keptn)

	const outage = 6 * time.Second
	var upAt atomic.Int64 // unix nanoseconds; 0: not down yet
	b := &Bridge{NATSURL: srv.URL, Group: "action-provider", Refuse: func() int {
		if at := upAt.Load(); at != 0 && time.Now().UnixNano() < at {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	r := startReplica(ctx, t, "action-provider-0", b, map[string]string{"EVENTBROKER_RETRY_TIMEOUT": "30s"})

	triggers := newTriggers(t, 10, 5) // 8 scale, 2 page-oncall
	down := time.Now()
	upAt.Store(down.Add(outage).UnixNano())
	publish(t, keptn, triggers...)
	rec.awaitFinished(ctx, t, 40*time.Second, ids(triggers, true))
	t.Logf("all finished events on NATS %s after the endpoint went down for %s; %d requests refused",
		time.Since(down).Round(time.Millisecond), outage, b.Refused())
	rec.settle(ctx, t, []*replica{r})
	checkExactlyOnce(t, rec, triggers)

	if b.Refused() == 0 {
		t.Fatal("/event refused nothing: the outage came too late to test anything")
	}
	if n := len(r.provider.logLines("event broker did not accept the event; retrying")); n == 0 {
		t.Errorf("the provider logged no retry")
	}
	for _, msg := range []string{
		"started event not delivered; the action was not run",
		"finished event not delivered; Keptn will not learn how the action ended",
	} {
		if lines := r.provider.logLines(msg); len(lines) > 0 {
			t.Errorf("the provider gave up on %d events: %v", len(lines), lines[0])
		}
	}
}

// TestSIGTERMWithActionsInFlight: of 3 replicas, one is terminated while it
// has accepted events whose actions have not finished. Each of them still
// gets its started and finished event, and events published afterwards go
// to the other two, each handled exactly once.
//
// Actions in the sandbox take no time, so the terminated replica is made
// slow where it is cheap to: its bridge holds each /event answer for a
// moment, as a distributor slow to publish would, and it runs two actions
// at a time. Its accepted events then queue, and SIGTERM comes while they
// do. As Kubernetes terminates a whole pod, the replica's bridge first
// stops taking events from NATS, as the distributor does on SIGTERM; it is
// unsubscribed only once it holds no event it has not forwarded, since core
// NATS would lose those, whatever the provider does.
func TestSIGTERMWithActionsInFlight(t *testing.T) {
	requireSetup(t)
	t.Parallel()
	ctx := testContext(t)
	srv := startNATS(t)
	keptn := srv.connect(t, "shipyard-controller")
	rec := record(t, keptn)

	env := map[string]string{"MAX_CONCURRENT_ACTIONS": "2", "SHUTDOWN_GRACE": "20s"}
	victim := startReplica(ctx, t, "action-provider-0",
		&Bridge{NATSURL: srv.URL, Group: "action-provider", Delay: 150 * time.Millisecond}, env)
	others := []*replica{
		startReplica(ctx, t, "action-provider-1", &Bridge{NATSURL: srv.URL, Group: "action-provider"}, env),
		startReplica(ctx, t, "action-provider-2", &Bridge{NATSURL: srv.URL, Group: "action-provider"}, env),
	}
	all := append([]*replica{victim}, others...)

	burst := newTriggers(t, 60, 0)
	publish(t, keptn, burst...)
	// Wait until the bridges have taken and forwarded the whole burst.
	deadline := time.Now().Add(waitTimeout)
	for {
		n := 0
		for _, r := range all {
			n += len(r.bridge.Forwards())
		}
		if n == len(burst) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridges forwarded %d of %d events within %s", n, len(burst), waitTimeout)
		}
		sleep(ctx, 5*time.Millisecond)
	}
	if err := victim.bridge.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	var accepted []string
	for _, f := range victim.bridge.Forwards() {
		if !f.Delivered() {
			t.Fatalf("event %s: the victim answered %v (%v), want 202", f.ID, f.Codes, f.Err)
		}
		accepted = append(accepted, f.ID)
	}
	inFlight := missingFinished(rec.Events(), accepted)
	t.Logf("SIGTERM to %s with %d of its %d accepted events not finished", victim.name, len(inFlight), len(accepted))
	if len(inFlight) < 3 {
		t.Fatalf("only %d actions in flight at SIGTERM: the test would prove little", len(inFlight))
	}
	sigterm := time.Now()
	victim.provider.Signal(t, syscall.SIGTERM)

	// Events published after SIGTERM go to the other two.
	after := newTriggers(t, 30, 10)
	publish(t, keptn, after...)

	// SHUTDOWN_GRACE and SHUTDOWN_FLUSH, and a little more.
	exited, err := victim.provider.Wait(30 * time.Second)
	if !exited {
		t.Fatalf("%s still running 30s after SIGTERM", victim.name)
	}
	if err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", victim.name, err)
	}
	t.Logf("%s exited %s after SIGTERM", victim.name, time.Since(sigterm).Round(time.Millisecond))
	if victim.provider.logLine("stopped") == nil {
		t.Errorf("%s logged no \"stopped\"", victim.name)
	}
	if line := victim.provider.logLine("grace period over; cancelling running actions, which still report finished"); line != nil {
		t.Errorf("%s ran out of SHUTDOWN_GRACE: %v", victim.name, line)
	}

	every := append(append([]trigger(nil), burst...), after...)
	rec.awaitFinished(ctx, t, waitTimeout, ids(every, true))
	rec.settle(ctx, t, all)
	checkExactlyOnce(t, rec, every)
	for _, r := range others {
		t.Logf("%s handled %d events", r.name, len(r.bridge.Forwards()))
	}
	for _, f := range victim.bridge.Forwards() {
		for _, tr := range after {
			if f.ID == tr.ID {
				t.Errorf("%s took event %s after it was unsubscribed", victim.name, f.ID)
			}
		}
	}
}

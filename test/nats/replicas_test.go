package nats

// Replicas of the provider in TRANSPORT=nats mode, each with its own NATS
// connection in one queue group, against a real control plane, where their
// ledger is kept: what a replica dying, stopping, NATS going away and a
// duplicate delivery do to the events Keptn waits for. Each test has its
// own nats-server and its own ledger namespace (POD_NAMESPACE), since the
// Leases of different tests must not meet. See cluster_test.go.

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// TestNATSKilledReplicaMidRun: of 3 replicas, one is SIGKILLed while it
// runs a long action (a restart waiting for a rollout that cannot
// converge) and holds events it has received and not started.
//
// Which replica of a queue group gets an event cannot be chosen, so the
// victim runs alone first, takes the restart and starts it; the other two
// join, and a batch of quick events (dry-run scales) is spread over the
// three. The victim runs one action at a time (MAX_CONCURRENT_ACTIONS=1),
// so that its share of the batch waits in its queue behind the restart:
// received from NATS, not claimed, not started. Then it is killed.
//
// What must hold: the restart, whose started Keptn got, gets exactly one
// finished, errored "interrupted: replica <victim> stopped ...", from a
// survivor once the victim's heartbeat has lapsed; every other event that
// got a started gets exactly one finished; nothing is answered twice; and
// events published after the kill all go to the survivors. The events
// waiting in the victim's queue are lost: NATS core delivers a message
// once, to one member of the group, and never again (JetStream would
// redeliver an unacknowledged one); so the test checks only that exactly
// those, as many as the victim's queue held, got nothing at all.
func TestNATSKilledReplicaMidRun(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := clusterContext(t)
	ledgerNS := cp.newLedgerNamespace(ctx, t)
	stage, ns := cp.newStage(ctx, t)
	cp.createDeployment(ctx, t, ns, "stuck", true)
	cp.createDeployment(ctx, t, ns, "carts", false)
	srv := startNATS(t)
	keptn := srv.connect(t, "shipyard-controller")
	rec := record(t, keptn)

	victimName := "victim-" + randomSuffix()
	victim := cp.startNATSReplica(ctx, t, victimName, srv.URL, ledgerNS, map[string]string{"MAX_CONCURRENT_ACTIONS": "1"})
	awaitSubscribed(ctx, t, keptn, victim)
	restart := newClusterTrigger(t, "07-restart.json", stage, "stuck", nil)
	publishCluster(t, keptn, restart)
	awaitEvents(ctx, t, rec, "the restart's started event", func(evs []keptnEvent) bool { return startedIDs(evs)[restart.ID] })
	// Killed before its action is recorded as started, the victim would
	// leave nothing for another replica to report.
	waitUntil(ctx, t, waitTimeout, "the restart recorded as started on the cluster", func() bool {
		ok, err := cp.recordedStarted(ctx, ledgerNS, restart.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})

	survivors := []*provider{
		cp.startNATSReplica(ctx, t, "survivor-a-"+randomSuffix(), srv.URL, ledgerNS, nil),
		cp.startNATSReplica(ctx, t, "survivor-b-"+randomSuffix(), srv.URL, ledgerNS, nil),
	}
	awaitSubscribed(ctx, t, keptn, survivors...)

	batch := dryScales(t, 30, stage, "carts")
	publishCluster(t, keptn, batch...)
	// The batch is spread once the survivors have finished their share
	// and the victim's waits in its queue.
	var queued int
	waitUntil(ctx, t, waitTimeout, "the batch finished by the survivors or queued at the victim", func() bool {
		queued = int(victim.gauge(ctx, t, "action_provider_queue_depth"))
		done := len(batch) - len(missingFinished(rec.Events(), clusterIDs(batch)))
		return done+queued == len(batch)
	})
	if running := victim.gauge(ctx, t, "action_provider_actions_in_flight"); running != 1 {
		t.Fatalf("the victim runs %v actions, want 1: the restart", running)
	}
	if queued == 0 {
		t.Fatal("the victim got none of the batch: the test would prove less than it says")
	}
	t.Logf("SIGKILL to %s, running the restart, with %d of the %d events of the batch in its queue", victimName, queued, len(batch))
	victim.Kill(t)
	killed := time.Now()

	after := dryScales(t, 20, stage, "carts")
	publishCluster(t, keptn, after...)

	// The survivors report the restart once the victim's heartbeat has
	// lapsed: 3 heartbeat periods, then at most one more.
	awaitEvents(ctx, t, rec, "the finished events", func(evs []keptnEvent) bool {
		return len(missingFinished(evs, append([]string{restart.ID}, clusterIDs(after)...))) == 0 &&
			len(missingFinished(evs, clusterIDs(batch))) == queued
	})
	t.Logf("the restart was reported %s after the kill", time.Since(killed).Round(time.Millisecond))
	// Nothing is left for an orphan search to report, and the survivors
	// have stopped: anything doubled has been sent and recorded.
	cp.awaitNothingToRecover(ctx, t, ledgerNS)
	rec.settle(ctx, t, nil, survivors...)

	all := append(append([]clusterTrigger{restart}, batch...), after...)
	lost := 0
	finished := checkAnswered(t, rec.Events(), all, func(id string) bool {
		for _, tr := range batch {
			if tr.ID == id {
				lost++
				return true
			}
		}
		return false
	})
	if lost != queued {
		t.Errorf("%d events of the batch got nothing, want the %d in the victim's queue", lost, queued)
	}
	if started := startedIDs(rec.Events()); len(started) != len(all)-queued {
		t.Errorf("%d events got a started, want %d", len(started), len(all)-queued)
	}
	checkDryRunPassed(t, finished, append(append([]clusterTrigger(nil), batch...), after...))
	fin := finished[restart.ID]
	if d := fin.Data; d.Status != keptnv2.StatusErrored || d.Result != keptnv2.ResultFailed ||
		!strings.HasPrefix(d.Message, "interrupted: replica "+victimName+".") || !strings.Contains(d.Message, " stopped (killed or crashed)") {
		t.Errorf("finished for the restart: %s/%s %q, want errored/fail \"interrupted: replica %s stopped ...\"", d.Status, d.Result, d.Message, victimName)
	}
	reporters := 0
	for _, s := range survivors {
		reporters += len(s.logLinesFor(logOrphan, restart.ID))
	}
	if reporters != 1 {
		t.Errorf("%d survivors logged that they reported the restart, want 1", reporters)
	}
}

// TestNATSSIGTERMWithActionsInFlight: of 2 replicas, one gets SIGTERM while
// it runs long actions (restarts waiting for rollouts that cannot converge)
// and a batch of quick ones is being spread over both. It stops taking
// events (it drains its queue subscription, so that the messages NATS has
// already sent it are still handled), lets what it has run for
// SHUTDOWN_GRACE (8 s), then cancels the restarts, and before it exits
// sends each its finished event: errored, "interrupted: the provider shut
// down ...". Every event gets exactly one started and one finished: none
// is lost, and none of the restarts is reported a second time by the other
// replica, as orphaned, once the stopped one's heartbeat has lapsed.
func TestNATSSIGTERMWithActionsInFlight(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := clusterContext(t)
	ledgerNS := cp.newLedgerNamespace(ctx, t)
	stage, ns := cp.newStage(ctx, t)
	var restarts []clusterTrigger
	for i := range 3 {
		name := fmt.Sprintf("stuck-%d", i)
		cp.createDeployment(ctx, t, ns, name, true)
		restarts = append(restarts, newClusterTrigger(t, "07-restart.json", stage, name, nil))
	}
	cp.createDeployment(ctx, t, ns, "carts", false)
	srv := startNATS(t)
	keptn := srv.connect(t, "shipyard-controller")
	rec := record(t, keptn)

	// Longer than the heartbeat's lapse (3 periods) and a round of the
	// other replica's orphan search: the stopping replica stops beating
	// when it stops taking events, and still runs its actions for the
	// whole grace period, so the case of a replica that looks dead while it
	// shuts down is always there, not just sometimes.
	const grace = 8 * time.Second
	env := map[string]string{"SHUTDOWN_GRACE": grace.String(), "SHUTDOWN_FLUSH": "5s"}
	victimName := "stopping-" + randomSuffix()
	victim := cp.startNATSReplica(ctx, t, victimName, srv.URL, ledgerNS, env)
	awaitSubscribed(ctx, t, keptn, victim)
	publishCluster(t, keptn, restarts...)
	awaitEvents(ctx, t, rec, "the restarts' started events", func(evs []keptnEvent) bool {
		started := startedIDs(evs)
		for _, tr := range restarts {
			if !started[tr.ID] {
				return false
			}
		}
		return true
	})
	other := cp.startNATSReplica(ctx, t, "staying-"+randomSuffix(), srv.URL, ledgerNS, env)
	awaitSubscribed(ctx, t, keptn, other)

	batch := dryScales(t, 30, stage, "carts")
	publishCluster(t, keptn, batch...)
	sigterm := time.Now()
	victim.Signal(t, syscall.SIGTERM)
	after := dryScales(t, 20, stage, "carts")
	publishCluster(t, keptn, after...)

	exited, err := victim.Wait(grace + 20*time.Second)
	if !exited {
		t.Fatalf("%s still running %s after SIGTERM", victimName, grace+20*time.Second)
	}
	if err != nil {
		t.Errorf("%s exited with %v after SIGTERM, want status 0", victimName, err)
	}
	t.Logf("%s exited %s after SIGTERM", victimName, time.Since(sigterm).Round(time.Millisecond))
	// Exited: it had sent its finished events.
	for _, msg := range []string{"stopped", logGraceOver} {
		if victim.logLine(msg) == nil {
			t.Errorf("%s did not log %q", victimName, msg)
		}
	}
	for _, msg := range []string{
		"event arrived while shutting down; NATS cannot take it back, so it is not run",
		"finished event not delivered; Keptn will not learn how the action ended",
	} {
		if line := victim.logLine(msg); line != nil {
			t.Errorf("%s: %v", victimName, line)
		}
	}

	all := append(append(append([]clusterTrigger(nil), restarts...), batch...), after...)
	awaitEvents(ctx, t, rec, "the finished events", func(evs []keptnEvent) bool {
		return len(missingFinished(evs, clusterIDs(all))) == 0
	})
	// The stopped replica left nothing for the other one's search for
	// orphans to report; once the other one has stopped too, all it sent
	// is recorded.
	cp.awaitNothingToRecover(ctx, t, ledgerNS)
	rec.settle(ctx, t, nil, other)
	finished := checkAnswered(t, rec.Events(), all, nil)
	checkDryRunPassed(t, finished, append(append([]clusterTrigger(nil), batch...), after...))
	for _, tr := range restarts {
		fin, ok := finished[tr.ID]
		if !ok {
			continue
		}
		if d := fin.Data; d.Status != keptnv2.StatusErrored || d.Result != keptnv2.ResultFailed ||
			!strings.HasPrefix(d.Message, "interrupted: the provider shut down") {
			t.Errorf("finished for restart %s: %s/%s %q, want errored/fail \"interrupted: the provider shut down ...\"", tr.ID, d.Status, d.Result, d.Message)
		}
		if lines := victim.logLinesFor(logFinished, tr.ID); len(lines) != 1 {
			t.Errorf("%s logged %q %d times for restart %s, want once", victimName, logFinished, len(lines), tr.ID)
		}
	}
	if lines := other.logLines(logOrphan); len(lines) > 0 {
		t.Errorf("the other replica reported %d actions of %s as orphaned, e.g. %v", len(lines), victimName, lines[0])
	}
}

// TestNATSServerRestartMidRun: nats-server is stopped while the providers'
// actions run, and started again, on the same port, 1 s after the last of
// them finished. The finished events of the actions that ended during the
// outage were kept by each provider's NATS connection and are sent once it
// is back; each action started gets exactly one finished; and events
// published after the restart are handled.
//
// What reached the server is read from a JetStream stream on sh.keptn.>:
// the server restores it from its store before it takes clients again, so
// it holds what the providers flush as soon as they are back. A plain
// subscriber could not be relied on for that, however fast it reconnects:
// the providers' reconnect back-off is jittered, and one of them may come
// back within the subscriber's own reconnect wait and flush before the
// subscriber's subscription is on the server, where NATS core would drop
// the flushed events for it. The test's own connection reconnects at once
// (nats.MaxReconnects(-1), nats.ReconnectWait(10ms), no jitter) only so as
// to publish after the restart without delay.
func TestNATSServerRestartMidRun(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := clusterContext(t)
	ledgerNS := cp.newLedgerNamespace(ctx, t)
	stage, ns := cp.newStage(ctx, t)
	// Restarts that wait 4 s for a rollout that cannot converge: they run
	// into the outage, and finish during it.
	var restarts []clusterTrigger
	for i := range 4 {
		name := fmt.Sprintf("stuck-%d", i)
		cp.createDeployment(ctx, t, ns, name, true)
		restarts = append(restarts, newClusterTrigger(t, "07-restart.json", stage, name, map[string]any{"timeout": "4s"}))
	}
	cp.createDeployment(ctx, t, ns, "carts", false)
	srv := startRestartableNATS(t)
	keptn, stream := srv.keptn(t)

	replicas := []*provider{
		cp.startNATSReplica(ctx, t, "replica-a-"+randomSuffix(), srv.URL, ledgerNS, nil),
		cp.startNATSReplica(ctx, t, "replica-b-"+randomSuffix(), srv.URL, ledgerNS, nil),
	}
	awaitSubscribed(ctx, t, keptn, replicas...)

	before := dryScales(t, 10, stage, "carts")
	publishCluster(t, keptn, append(append([]clusterTrigger(nil), restarts...), before...)...)
	stream.await(ctx, t, waitTimeout, "the restarts started and the scales finished", func(evs []keptnEvent) bool {
		started := startedIDs(evs)
		for _, tr := range restarts {
			if !started[tr.ID] {
				return false
			}
		}
		return len(missingFinished(evs, clusterIDs(before))) == 0
	})

	srv.stop(t)
	down := time.Now()
	// The restarts finish while NATS is down: each provider's finished
	// event waits in its connection, unconfirmed, and says so.
	waitUntil(ctx, t, 30*time.Second, "the restarts finished during the outage", func() bool {
		for _, tr := range restarts {
			n := 0
			for _, p := range replicas {
				n += len(p.logLinesFor(logUnconfirmed, tr.ID))
			}
			if n == 0 {
				return false
			}
		}
		return true
	})
	sleep(ctx, time.Second)
	srv.start(t)
	t.Logf("nats-server down for %s", time.Since(down).Round(time.Millisecond))
	for _, p := range replicas {
		if p.logLine(logDisconnected) == nil {
			t.Errorf("%s did not log that it lost NATS", p.Name)
		}
	}

	stream.await(ctx, t, waitTimeout, "the finished events of the restarts, after NATS came back", func(evs []keptnEvent) bool {
		return len(missingFinished(evs, clusterIDs(restarts))) == 0
	})
	t.Logf("all finished events on NATS %s after the outage began", time.Since(down).Round(time.Millisecond))
	for _, p := range replicas {
		waitUntil(ctx, t, waitTimeout, p.Name+" reconnected", func() bool { return p.logLine(logReconnected) != nil })
	}
	waitUntil(ctx, t, waitTimeout, "the test's connection back", keptn.IsConnected)
	awaitSubscribed(ctx, t, keptn, replicas...)

	afterwards := dryScales(t, 10, stage, "carts")
	publishCluster(t, keptn, afterwards...)
	stream.await(ctx, t, waitTimeout, "the events published after the restart finished", func(evs []keptnEvent) bool {
		return len(missingFinished(evs, clusterIDs(afterwards))) == 0
	})
	// Anything doubled, such as a buffer flushed twice, is on the stream
	// once the providers have stopped: they exit after the server has
	// confirmed all they sent.
	for _, p := range replicas {
		p.Stop(t)
	}
	evs, err := stream.Events()
	if err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]clusterTrigger(nil), restarts...), before...), afterwards...)
	finished := checkAnswered(t, evs, all, nil)
	checkDryRunPassed(t, finished, append(append([]clusterTrigger(nil), before...), afterwards...))
	for _, tr := range restarts {
		if d := finished[tr.ID].Data; d.Status != keptnv2.StatusSucceeded || d.Result != keptnv2.ResultFailed ||
			!strings.Contains(d.Message, "the rollout did not converge") {
			t.Errorf("finished for restart %s: %s/%s %q, want succeeded/fail \"... the rollout did not converge ...\"", tr.ID, d.Status, d.Result, d.Message)
		}
	}
}

// TestNATSSameEventTwiceToTwoReplicas: the same triggered event (same id)
// is published twice in a row, as a sender retrying would, to 2 replicas
// in a queue group, which picks a member at random for each copy. When the
// copies go to different replicas, one claims the event on the cluster and
// runs it; the other finds it taken and sends nothing ("event already
// taken by another replica; sending nothing"). When they go to the same
// one, its in-memory window turns the second away. Either way exactly one
// started and one finished reach NATS, from exactly one replica. Ids are
// tried in rounds until at least one had its copies on different
// replicas, since otherwise the ledger was not put to the test.
func TestNATSSameEventTwiceToTwoReplicas(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := clusterContext(t)
	ledgerNS := cp.newLedgerNamespace(ctx, t)
	stage, ns := cp.newStage(ctx, t)
	cp.createDeployment(ctx, t, ns, "carts", false)
	srv := startNATS(t)
	keptn := srv.connect(t, "shipyard-controller")
	rec := record(t, keptn)

	env := map[string]string{"DRY_RUN": "true"}
	replicas := []*provider{
		cp.startNATSReplica(ctx, t, "replica-a-"+randomSuffix(), srv.URL, ledgerNS, env),
		cp.startNATSReplica(ctx, t, "replica-b-"+randomSuffix(), srv.URL, ledgerNS, env),
	}
	awaitSubscribed(ctx, t, keptn, replicas...)

	const (
		perRound  = 5
		maxRounds = 8 // no split in 40 ids: odds of 2^-40
	)
	var all []clusterTrigger
	split, same := 0, 0
	for round := 1; round <= maxRounds && split == 0; round++ {
		var triggers []clusterTrigger
		for range perRound {
			tr := newClusterTrigger(t, "01-scale-up.json", stage, "carts", map[string]any{"replicas": "+1"})
			triggers = append(triggers, tr)
			publish(t, keptn, tr.trigger, tr.trigger)
		}
		all = append(all, triggers...)
		// Both copies are accounted for once one replica finished the
		// event and one turned the other copy away.
		waitUntil(ctx, t, waitTimeout, fmt.Sprintf("round %d: both copies of each event handled", round), func() bool {
			for _, tr := range triggers {
				fins, turned := 0, 0
				for _, p := range replicas {
					fins += len(p.logLinesFor(logFinished, tr.ID))
					turned += len(p.logLinesFor(logTaken, tr.ID)) + len(p.logLinesFor(logDuplicate, tr.ID))
				}
				if fins == 0 || turned == 0 {
					return false
				}
			}
			return true
		})
		for _, tr := range triggers {
			var ran, taken, dup []string
			for _, p := range replicas {
				for range p.logLinesFor(logFinished, tr.ID) {
					ran = append(ran, p.Name)
				}
				for range p.logLinesFor(logTaken, tr.ID) {
					taken = append(taken, p.Name)
				}
				for range p.logLinesFor(logDuplicate, tr.ID) {
					dup = append(dup, p.Name)
				}
			}
			switch {
			case len(ran) != 1 || len(taken)+len(dup) != 1:
				t.Errorf("event %s: run by %v, turned away as taken by %v and as a duplicate by %v; want it run once and turned away once",
					tr.ID, ran, taken, dup)
			case len(taken) == 1 && taken[0] != ran[0]:
				split++
			case len(dup) == 1 && dup[0] == ran[0]:
				same++
			default:
				t.Errorf("event %s: run by %s, turned away by %v%v", tr.ID, ran[0], taken, dup)
			}
		}
	}
	t.Logf("%d events: the copies of %d went to different replicas, of %d to the same one", len(all), split, same)
	if split == 0 {
		t.Fatalf("in %d events, no two copies of one went to different replicas: the claim on the cluster was not put to the test", len(all))
	}
	rec.settle(ctx, t, nil, replicas...)
	finished := checkAnswered(t, rec.Events(), all, nil)
	checkDryRunPassed(t, finished, all)
}

// awaitEvents waits, bounded, until done holds of what rec recorded.
func awaitEvents(ctx context.Context, t *testing.T, rec *recorder, what string, done func([]keptnEvent) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if evs, err := rec.await(ctx, done); err != nil {
		t.Fatalf("%s: %v; on NATS: %d events, %d started, %d finished", what, err, len(evs), len(startedIDs(evs)), countType(evs, keptnevent.FinishedType))
	}
}

func countType(evs []keptnEvent, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

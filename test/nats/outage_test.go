package nats

import (
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// TestNATSKillDuringAnOutage: a replica's action ends while NATS is down,
// so its finished event waits, unconfirmed, in the replica's connection;
// then the replica is SIGKILLed, which loses that buffer. The event's
// record on the cluster says "finishing" and holds the finished event, so
// once the dead replica's heartbeat has lapsed another replica sends that
// very event, with the action's real result, after NATS is back. Keptn
// gets exactly one finished event.
//
// Before a publish had to be confirmed by the server, the replica recorded
// the event "finished" as soon as it sat in the buffer, and nothing was
// ever sent.
func TestNATSKillDuringAnOutage(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := clusterContext(t)
	ledgerNS := cp.newLedgerNamespace(ctx, t)
	stage, ns := cp.newStage(ctx, t)
	cp.createDeployment(ctx, t, ns, "stuck", true)
	srv := startRestartableNATS(t)
	keptn, stream := srv.keptn(t)

	victimName := "victim-" + randomSuffix()
	victim := cp.startNATSReplica(ctx, t, victimName, srv.URL, ledgerNS, nil)
	awaitSubscribed(ctx, t, keptn, victim)
	// A restart whose rollout cannot converge: it fails after 4 s.
	restart := newClusterTrigger(t, "07-restart.json", stage, "stuck", map[string]any{"timeout": "4s"})
	publishCluster(t, keptn, restart)
	stream.await(ctx, t, waitTimeout, "the restart's started event", func(evs []keptnEvent) bool {
		return startedIDs(evs)[restart.ID]
	})
	// The survivor joins after the event went to the victim.
	survivor := cp.startNATSReplica(ctx, t, "survivor-"+randomSuffix(), srv.URL, ledgerNS, nil)

	srv.stop(t)
	waitUntil(ctx, t, 30*time.Second, "the restart to end during the outage, its finished event unconfirmed", func() bool {
		return len(victim.logLinesFor(logUnconfirmed, restart.ID)) > 0
	})
	waitUntil(ctx, t, waitTimeout, "the finished event on the cluster's record", func() bool {
		leases, err := cp.client.CoordinationV1().Leases(ledgerNS).List(ctx, metav1.ListOptions{LabelSelector: "keptn-action-provider.io/state=finishing"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases.Items {
			if l.Annotations["keptn-action-provider.io/triggeredid"] == restart.ID {
				return strings.Contains(l.Annotations["keptn-action-provider.io/finished"], restart.ID)
			}
		}
		return false
	})
	t.Logf("SIGKILL to %s during the outage, its finished event in its connection's buffer", victimName)
	victim.Kill(t)
	srv.start(t)

	stream.await(ctx, t, waitTimeout, "the restart's finished event, from the survivor", func(evs []keptnEvent) bool {
		return len(missingFinished(evs, []string{restart.ID})) == 0
	})
	// Nothing is left for a search for orphans to report, and the
	// survivor has stopped, its events confirmed by the server and so on
	// the stream: anything doubled is there.
	cp.awaitNothingToRecover(ctx, t, ledgerNS)
	survivor.Stop(t)
	evs, err := stream.Events()
	if err != nil {
		t.Fatal(err)
	}
	finished := checkAnswered(t, evs, []clusterTrigger{restart}, nil)
	if d := finished[restart.ID].Data; d.Status != keptnv2.StatusSucceeded || d.Result != keptnv2.ResultFailed ||
		!strings.Contains(d.Message, "the rollout did not converge") {
		t.Errorf("finished for the restart: %s/%s %q; want the action's own result, succeeded/fail \"... the rollout did not converge ...\"",
			d.Status, d.Result, d.Message)
	}
	if n := countType(evs, keptnevent.FinishedType); n != 1 {
		t.Errorf("%d finished events on NATS, want 1", n)
	}
	if n := len(survivor.logLinesFor(logOrphan, restart.ID)); n != 1 {
		t.Errorf("the survivor logged %d reports of the restart, want 1", n)
	}
}

package nats

// Helpers of the tests in replicas_test.go: the provider in TRANSPORT=nats
// mode against a real Kubernetes control plane, where its cross-replica
// ledger lives (claims of events, records of running actions, heartbeats
// of replicas). In sandbox mode there is no ledger, so those tests need
// both nats-server and the control plane that test/controlplane starts.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	natsgo "github.com/nats-io/nats.go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/testsupport/controlplane"
)

// controlPlaneEnv names the env file of a running control plane, as
// test/controlplane/controlplane.sh start DIR writes it (DIR/env: KUBECONFIG=...).
// make test starts one and sets it.
const controlPlaneEnv = controlplane.EnvVar

const (
	// clusterProject is the Keptn project of the tests' events: their
	// workloads are in namespace <clusterProject>-<stage>.
	clusterProject = "natstest"
	// clusterTestTimeout bounds one test against the control plane.
	clusterTestTimeout = 85 * time.Second
	// pollEvery is the pause between two looks at a log, the API server or
	// a stream.
	pollEvery = 20 * time.Millisecond
	// heartbeatPeriod is the providers' HEARTBEAT_PERIOD: a replica that
	// stops beating is taken for dead 3 periods later.
	heartbeatPeriod = 2 * time.Second
)

// Log lines of the provider the tests look for.
const (
	logInvalid      = "invalid event on NATS; ignored"
	logFinished     = "action finished"
	logTaken        = "event already taken by another replica; sending nothing"
	logDuplicate    = "duplicate delivery of an accepted event; not running it again"
	logOrphan       = "reported an action orphaned by a replica that stopped"
	logGraceOver    = "grace period over; cancelling running actions, which still report finished"
	logDisconnected = "disconnected from NATS; reconnecting, and buffering what is published meanwhile"
	logReconnected  = "reconnected to NATS"
	logUnconfirmed  = "NATS has not confirmed the event yet; retrying"
)

// controlPlane is the cluster the tests run against.
type controlPlane struct {
	kubeconfig string
	host       string
	client     kubernetes.Interface
}

// cluster is the control plane of CONTROLPLANE_ENV.
var cluster = &testsupport.Component[*controlPlane]{
	EnvVar:  controlPlaneEnv,
	What:    "control plane (the cross-replica ledger exists only against a real cluster)",
	Connect: connectCluster,
}

// requireCluster skips the test when nats-server is not installed or no
// control plane is configured, and fails it when either is there but
// unusable.
func requireCluster(t *testing.T) *controlPlane {
	t.Helper()
	requireSetup(t)
	return cluster.Require(t)
}

// connectCluster connects to the control plane of the env file.
func connectCluster(envPath string) (*controlPlane, error) {
	c, err := controlplane.Connect(envPath)
	if err != nil {
		return nil, err
	}
	return &controlPlane{kubeconfig: c.Env["KUBECONFIG"], host: c.Config.Host, client: c.Client}, nil
}

// clusterContext bounds a whole test against the control plane.
func clusterContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// randomSuffix is a short random DNS label fragment.
func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNamespace creates namespace name, deleted when the test ends.
func (cp *controlPlane) newNamespace(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	_, err := cp.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"action-provider/test": "nats"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cp.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
}

// newLedgerNamespace creates the providers' own namespace (POD_NAMESPACE),
// where their Leases live: one per test, shared by the test's replicas as
// by the pods of one deployment, so that no two tests' claims, records and
// heartbeats meet.
func (cp *controlPlane) newLedgerNamespace(ctx context.Context, t *testing.T) string {
	t.Helper()
	ns := "apnats-ledger-" + randomSuffix()
	cp.newNamespace(ctx, t, ns)
	return ns
}

// newStage creates the namespace <clusterProject>-<stage> of a fresh
// stage, where the test's events act, and returns the stage.
func (cp *controlPlane) newStage(ctx context.Context, t *testing.T) (stage, ns string) {
	t.Helper()
	stage = "s" + randomSuffix()
	ns = clusterProject + "-" + stage
	cp.newNamespace(ctx, t, ns)
	return stage, ns
}

// createDeployment creates a Deployment of one replica in ns, without
// waiting for it. A stuck one's pods can be scheduled on no node, so that
// its rollouts never converge: a restart of it waits its whole verify
// timeout, the long-running action of these tests.
func (cp *controlPlane) createDeployment(ctx context.Context, t *testing.T, ns, name string, stuck bool) {
	t.Helper()
	one, zero := int32(1), int64(0)
	spec := corev1.PodSpec{
		// kwok runs no container: the image is never pulled.
		Containers:                    []corev1.Container{{Name: "app", Image: "registry.invalid/" + name + ":1"}},
		TerminationGracePeriodSeconds: &zero,
	}
	if stuck {
		spec.NodeSelector = map[string]string{"action-provider-test/node": "none"}
	}
	_, err := cp.client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
}

// recordedStarted reports whether the ledger in ns records the action of
// event id as started: what another replica needs to report it once this
// one dies.
func (cp *controlPlane) recordedStarted(ctx context.Context, ns, id string) (bool, error) {
	leases, err := cp.client.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: "keptn-action-provider.io/state=started"})
	if err != nil {
		return false, err
	}
	for _, l := range leases.Items {
		if l.Annotations["keptn-action-provider.io/triggeredid"] == id {
			return true, nil
		}
	}
	return false, nil
}

// startNATSReplica starts the provider as one replica of a deployment in
// TRANSPORT=nats mode: its own NATS connection, in queue group
// "action-provider" on natsURL, acting on the control plane (SANDBOX=false)
// with its ledger in ledgerNS, under POD_NAME name, and env on top. It
// waits until /readyz answers, and checks the provider uses the cluster.
func (cp *controlPlane) startNATSReplica(ctx context.Context, t *testing.T, name, natsURL, ledgerNS string, env map[string]string) *provider {
	t.Helper()
	all := map[string]string{
		"TRANSPORT":          "nats",
		"NATS_URL":           natsURL,
		"NATS_QUEUE_GROUP":   "action-provider",
		"SANDBOX":            "false",
		"KUBECONFIG":         cp.kubeconfig,
		"DRY_RUN":            "false",
		"POD_NAMESPACE":      ledgerNS,
		"HEARTBEAT_PERIOD":   heartbeatPeriod.String(),
		"ALLOWED_NAMESPACES": "*",
		"ACTION_COOLDOWN":    "0s",
		"VERIFY_TIMEOUT":     "60s",
		"SHUTDOWN_GRACE":     "5s",
		"SHUTDOWN_FLUSH":     "5s",
	}
	for k, v := range env {
		all[k] = v
	}
	// In NATS mode nothing is POSTed: EVENTBROKER and RCV_* are unused
	// (startProvider still sets them).
	p := startProvider(ctx, t, name, "http://127.0.0.1:1/event", all)
	if line := p.logLine("using Kubernetes cluster"); line == nil || line["cluster"] != cp.host {
		t.Fatalf("%s: no log line saying it uses the cluster at %s:\n%s", name, cp.host, p.Log)
	}
	return p
}

// awaitNothingToRecover waits until no record in the ledger namespace ns
// is one a replica's search for orphans takes over (started, finishing or
// recovering): from then on no replica can report an action again, so a
// doubled report, if any, has been sent already.
func (cp *controlPlane) awaitNothingToRecover(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	const selector = "keptn-action-provider.io/state in (started,finishing,recovering)"
	var left []string
	if !testsupport.Poll(ctx, waitTimeout, func() bool {
		leases, err := cp.client.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		left = left[:0]
		for _, l := range leases.Items {
			left = append(left, l.Annotations["keptn-action-provider.io/triggeredid"]+" "+l.Labels["keptn-action-provider.io/state"])
		}
		return len(left) == 0
	}) {
		t.Fatalf("records an orphan search would take, still there after %s: %v", waitTimeout, left)
	}
}

// awaitSubscribed returns once every one of ps has its queue subscription
// in place on the NATS server. /readyz does not tell: it is OK as soon as
// the connection is up, which may be before the subscription reaches the
// server, and an event published then is lost (NATS core keeps nothing for
// a subscriber to come). So this publishes messages that are no events on
// the triggered subject, one at a time, until each of ps has logged one as
// invalid: the queue group hands them to its members at random.
func awaitSubscribed(ctx context.Context, t *testing.T, nc *natsgo.Conn, ps ...*provider) {
	t.Helper()
	base := map[*provider]int{}
	for _, p := range ps {
		base[p] = len(p.logLines(logInvalid))
	}
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		waiting := 0
		for _, p := range ps {
			if len(p.logLines(logInvalid)) <= base[p] {
				waiting++
			}
		}
		if waiting == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%d of %d replicas not subscribed to %s within %s", waiting, len(ps), triggeredTopic, waitTimeout)
		}
		if err := nc.Publish(triggeredTopic, []byte(fmt.Sprintf("probe %d: not an event", i))); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		sleep(ctx, pollEvery)
	}
}

// logLinesFor returns p's log lines whose msg is msg about event id.
func (p *provider) logLinesFor(msg, id string) []map[string]any {
	var out []map[string]any
	for _, l := range p.logLines(msg) {
		if l["triggeredid"] == id {
			out = append(out, l)
		}
	}
	return out
}

// gauge reads a metric without labels from p's /metrics.
func (p *provider) gauge(ctx context.Context, t *testing.T, name string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.opsURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.Name, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %s: %v", p.Name, line, err)
			}
			return f
		}
	}
	t.Fatalf("%s: no metric %s in /metrics", p.Name, name)
	return 0
}

// waitUntil polls cond until it holds, and fails the test after timeout
// with what.
func waitUntil(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		sleep(ctx, pollEvery)
	}
}

// clusterTrigger is an action.triggered event for a workload of the
// control plane: namespace <clusterProject>-<Stage>, service Service.
type clusterTrigger struct {
	trigger
	Stage, Service, Action string
}

// newClusterTrigger makes an action.triggered event from an example in
// examples/events, with a fresh id and shkeptncontext, project
// clusterProject, stage and service, and the action's value (nil: none).
func newClusterTrigger(t *testing.T, example, stage, service string, value any) clusterTrigger {
	t.Helper()
	ev := testsupport.Example(t, example)
	tr := clusterTrigger{trigger: trigger{ID: uuid.NewString(), KeptnContext: uuid.NewString(), Known: true}, Stage: stage, Service: service}
	ev["id"], ev["shkeptncontext"] = tr.ID, tr.KeptnContext
	ev["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	data := ev["data"].(map[string]any)
	data["project"], data["stage"], data["service"] = clusterProject, stage, service
	act := data["action"].(map[string]any)
	tr.Action, _ = act["action"].(string)
	if value == nil {
		delete(act, "value")
	} else {
		act["value"] = value
	}
	var err error
	if tr.Body, err = json.Marshal(ev); err != nil {
		t.Fatal(err)
	}
	return tr
}

// dryScales makes n scale events (+1) on the service in stage, each a dry
// run by its value: decided, claimed, recorded and reported, nothing
// written, so that they neither contend for the target's lock nor wait for
// a rollout.
func dryScales(t *testing.T, n int, stage, service string) []clusterTrigger {
	t.Helper()
	var out []clusterTrigger
	for range n {
		out = append(out, newClusterTrigger(t, "01-scale-up.json", stage, service, map[string]any{"replicas": "+1", "dryRun": true}))
	}
	return out
}

func publishCluster(t *testing.T, nc *natsgo.Conn, triggers ...clusterTrigger) {
	t.Helper()
	for _, tr := range triggers {
		publish(t, nc, tr.trigger)
	}
}

func clusterIDs(triggers ...[]clusterTrigger) []string {
	var out []string
	for _, ts := range triggers {
		for _, tr := range ts {
			out = append(out, tr.ID)
		}
	}
	return out
}

// startedIDs returns the events that have a started event among evs.
func startedIDs(evs []keptnEvent) map[string]bool {
	out := map[string]bool{}
	for _, ev := range evs {
		if ev.Type == keptnevent.StartedType {
			out[ev.Triggeredid] = true
		}
	}
	return out
}

// checkAnswered checks what reached NATS for the triggers: for each,
// exactly one started and then exactly one finished, each on the subject of
// its type, answering it (triggeredid, shkeptncontext), about its project,
// stage and service; or, when lost says so, nothing at all; and nothing
// besides for any other event. It returns the finished events by
// triggered id.
func checkAnswered(t *testing.T, evs []keptnEvent, triggers []clusterTrigger, lost func(id string) bool) map[string]keptnEvent {
	t.Helper()
	byTrigger := map[string][]keptnEvent{}
	for _, ev := range evs {
		byTrigger[ev.Triggeredid] = append(byTrigger[ev.Triggeredid], ev)
	}
	finished := map[string]keptnEvent{}
	errs := 0
	fail := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, tr := range triggers {
		got := byTrigger[tr.ID]
		delete(byTrigger, tr.ID)
		if len(got) == 0 && lost != nil && lost(tr.ID) {
			continue
		}
		if len(got) != 2 || got[0].Type != keptnevent.StartedType || got[1].Type != keptnevent.FinishedType {
			fail("%s %s: %s on NATS, want exactly one started then one finished", tr.Action, tr.ID, types(got))
			continue
		}
		for _, ev := range got {
			if ev.Subject != ev.Type || ev.Shkeptncontext != tr.KeptnContext || ev.Source != "action-provider" || ev.ID == "" || ev.ID == tr.ID {
				fail("%s for %s: subject %q, shkeptncontext %q (want %q), source %q, id %q",
					ev.Type, tr.ID, ev.Subject, ev.Shkeptncontext, tr.KeptnContext, ev.Source, ev.ID)
			}
			if d := ev.Data; d.Project != clusterProject || d.Stage != tr.Stage || d.Service != tr.Service {
				fail("%s for %s: data %s/%s/%s, want %s/%s/%s", ev.Type, tr.ID, d.Project, d.Stage, d.Service, clusterProject, tr.Stage, tr.Service)
			}
		}
		fin := got[1]
		if d := fin.Data; d.Status == "" || d.Result == "" || d.Message == "" {
			fail("finished for %s: status %q, result %q, message %q", tr.ID, d.Status, d.Result, d.Message)
		}
		finished[tr.ID] = fin
	}
	for id, got := range byTrigger {
		fail("%d events on NATS (%s) answer %q, which no test event has", len(got), types(got), id)
	}
	if errs > 10 {
		t.Errorf("... and %d more", errs-10)
	}
	return finished
}

// checkDryRunPassed checks that the finished events of dry-run scales
// passed as dry runs.
func checkDryRunPassed(t *testing.T, finished map[string]keptnEvent, triggers []clusterTrigger) {
	t.Helper()
	for _, tr := range triggers {
		fin, ok := finished[tr.ID]
		if !ok {
			continue // reported by checkAnswered, or lost
		}
		if d := fin.Data; d.Status != keptnv2.StatusSucceeded || d.Result != keptnv2.ResultPass || !strings.HasPrefix(d.Message, "dry run: ") {
			t.Errorf("finished for scale %s: %s/%s %q, want succeeded/pass \"dry run: ...\"", tr.ID, d.Status, d.Result, d.Message)
		}
	}
}

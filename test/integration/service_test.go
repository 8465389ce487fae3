package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestServiceEndToEnd runs the built binary against the control plane, as a
// distributor sidecar would drive it: POST a triggered event, expect 202,
// then started and exactly one finished at the event broker (an in-test
// sink), and the change on the API server. It ends with SIGTERM.
func TestServiceEndToEnd(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)

	sink := &eventsink.Sink{}
	broker := testsupport.ServeSink(t, sink)
	p := startProvider(ctx, t, map[string]string{
		"EVENTBROKER":        broker,
		"SCALE_MAX_REPLICAS": "10",
	})

	// It acts on this cluster, not on a sandbox.
	if line := p.logLine("using Kubernetes cluster"); line == nil || line["cluster"] != cp.config.Host {
		t.Fatalf("no log line saying it uses the cluster at %s:\n%s", cp.config.Host, p.log)
	}

	missing := "gone" + randomSuffix()
	var answered [][2]string // triggered id, stage
	for _, tc := range []struct {
		name    string
		example string // examples/events/ file the event is made from
		stage   string
		value   any
		// The finished event; {ns} is the namespace. Failures are matched
		// as a substring, passes as the start of the message.
		status   keptnv2.StatusType
		result   keptnv2.ResultType
		message  string
		replicas int32 // of carts afterwards, on the API server; -1: not checked
	}{
		{"scale up (examples/events/01-scale-up.json)", "01-scale-up.json", stage, map[string]string{"replicas": "+1"},
			keptnv2.StatusSucceeded, keptnv2.ResultPass, "scaled deployment {ns}/carts from 1 to 2 replicas", 2},
		{"helm-service's scaling (examples/events/02-scaling-legacy.json)", "02-scaling-legacy.json", stage, "-1",
			keptnv2.StatusSucceeded, keptnv2.ResultPass, "scaled deployment {ns}/carts from 2 to 1 replica", 1},
		{"above SCALE_MAX_REPLICAS", "01-scale-up.json", stage, map[string]string{"replicas": "11"},
			keptnv2.StatusSucceeded, keptnv2.ResultFailed,
			"refused (maximum replicas): scaling deployment {ns}/carts from 1 to 11 replicas is above the maximum of 10 (SCALE_MAX_REPLICAS)", 1},
		{"namespace does not exist", "01-scale-up.json", missing, map[string]string{"replicas": "+1"},
			keptnv2.StatusErrored, keptnv2.ResultFailed, "no deployment carts or carts-primary, nor rollout carts, in namespace " + project + "-" + missing, -1},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			before := read(ctx, t, cp.client, carts.ref(ns))
			id, body := triggered(t, tc.example, tc.stage, tc.value)
			if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted || answer != "accepted" {
				t.Fatalf("POST = %d %q, want 202 accepted", code, answer)
			}
			fin := awaitFinished(ctx, t, sink, id)
			checkEvents(t, sink, id, tc.stage)
			answered = append(answered, [2]string{id, tc.stage})

			want := strings.ReplaceAll(tc.message, "{ns}", ns)
			// A pass goes on with how the rollout went.
			if fin.Data.Status != tc.status || fin.Data.Result != tc.result ||
				(tc.result == keptnv2.ResultPass && !strings.HasPrefix(fin.Data.Message, want+"; rollout converged in ")) ||
				(tc.result != keptnv2.ResultPass && !strings.Contains(fin.Data.Message, want)) {
				t.Errorf("finished = %s/%s %q, want %s/%s %q", fin.Data.Status, fin.Data.Result, fin.Data.Message, tc.status, tc.result, want)
			}
			after := read(ctx, t, cp.client, carts.ref(ns))
			if tc.replicas >= 0 && after.replicas != tc.replicas {
				t.Fatalf("spec.replicas of carts on the API server = %d, want %d", after.replicas, tc.replicas)
			}
			if after.replicas == before.replicas && after.generation != before.generation {
				t.Errorf("carts was written (generation %d -> %d) although its replicas stay %d", before.generation, after.generation, after.replicas)
			}
			if tc.stage == missing {
				_, err := cp.client.CoreV1().Namespaces().Get(ctx, project+"-"+missing, metav1.GetOptions{})
				if !apierrors.IsNotFound(err) {
					t.Errorf("namespace %s-%s: %v, want it not to exist", project, missing, err)
				}
			}
			waitConverged(ctx, t, cp.client, carts.ref(ns), after.replicas)
		})
		if !ok {
			t.FailNow() // the next steps start from this one's replicas
		}
	}

	t.Run("the distributor's re-POST of an event does not run it again", func(t *testing.T) {
		id, body := triggered(t, "01-scale-up.json", stage, map[string]string{"replicas": "+1"})
		if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
			t.Fatalf("first POST = %d %q, want 202", code, answer)
		}
		awaitFinished(ctx, t, sink, id)
		if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusOK || !strings.Contains(answer, "duplicate") {
			t.Fatalf("second POST = %d %q, want 200 naming it a duplicate", code, answer)
		}
		checkEvents(t, sink, id, stage)
		answered = append(answered, [2]string{id, stage})
		if n := read(ctx, t, cp.client, carts.ref(ns)).replicas; n != 2 {
			t.Fatalf("spec.replicas of carts on the API server = %d, want 2 (1, +1 once)", n)
		}
		waitConverged(ctx, t, cp.client, carts.ref(ns), 2)
	})

	t.Run("SIGTERM", func(t *testing.T) {
		if err := p.terminate(t, 30*time.Second); err != nil {
			t.Fatalf("after SIGTERM the process exited with %v, want status 0\n%s", err, p.log)
		}
		if p.logLine("stopped") == nil {
			t.Errorf("no 'stopped' log line:\n%s", p.log)
		}
		// The process has handled and answered all it accepted: nothing
		// more can come for any event.
		for _, a := range answered {
			checkEvents(t, sink, a[0], a[1])
		}
		if _, err := http.Get(p.opsURL + "/readyz"); err == nil {
			t.Errorf("/readyz still answers after the process exited")
		}
	})
}

// TestServiceSIGTERMWhenIdle: a provider that is ready and has handled
// nothing exits with status 0, promptly, on SIGTERM.
func TestServiceSIGTERMWhenIdle(t *testing.T) {
	requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	broker := testsupport.ServeSink(t, &eventsink.Sink{})
	p := startProvider(ctx, t, map[string]string{"EVENTBROKER": broker})
	start := time.Now()
	if err := p.terminate(t, 30*time.Second); err != nil {
		t.Fatalf("after SIGTERM the process exited with %v, want status 0\n%s", err, p.log)
	}
	t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// provider is the action-provider binary running as a child process.
type provider struct {
	*testsupport.Process
	log    *testsupport.SyncBuffer // stdout and stderr
	rcvURL string
	opsURL string
}

// startProvider starts the binary against the control plane, on loopback
// ports, with env on top of the defaults below, and waits until /readyz
// answers. It is killed, if still running, when the test ends.
func startProvider(ctx context.Context, t *testing.T, env map[string]string) *provider {
	t.Helper()
	// The ports are picked free and then given to the process, so another
	// process may take one in between: a start that fails on a port in use
	// is tried again on other ports.
	for attempt := 1; ; attempt++ {
		p, err := tryStartProvider(ctx, t, env)
		if err == nil {
			return p
		}
		if p != nil && attempt < 3 && p.InUse() {
			t.Logf("attempt %d: %v; trying other ports", attempt, err)
			continue
		}
		if p != nil {
			t.Fatalf("start %s: %v\n%s", providerBin, err, p.log)
		}
		t.Fatalf("start %s: %v", providerBin, err)
	}
}

func tryStartProvider(ctx context.Context, t *testing.T, extra map[string]string) (*provider, error) {
	rcvPort, opsPort := testsupport.FreePort(t), testsupport.FreePort(t)
	env := map[string]string{
		"KUBECONFIG":                cluster.env["KUBECONFIG"],
		"SANDBOX":                   "false",
		"RCV_HOST":                  "127.0.0.1",
		"RCV_PORT":                  strconv.Itoa(rcvPort),
		"OPS_PORT":                  strconv.Itoa(opsPort),
		"LOG_FORMAT":                "json",
		"LOG_LEVEL":                 "debug",
		"EVENTBROKER_RETRY_TIMEOUT": "20s",
		"SHUTDOWN_GRACE":            "20s",
		"SHUTDOWN_FLUSH":            "5s",
		"POD_NAMESPACE":             ledgerNamespace,
		// Deny by default: the tests' namespaces, "itest-<stage>", named.
		"ALLOWED_NAMESPACES": project + "-*",
		"VERIFY_TIMEOUT":     "30s",
		// Steps of one test act on one workload in quick succession; the
		// cooldown has tests of its own.
		"ACTION_COOLDOWN": "0s",
	}
	for k, v := range extra {
		env[k] = v
	}
	proc, err := testsupport.Start(t, "action-provider", providerBin, nil, env)
	if err != nil {
		return nil, err
	}
	p := &provider{
		Process: proc, log: proc.Log,
		rcvURL: fmt.Sprintf("http://127.0.0.1:%d/", rcvPort),
		opsURL: fmt.Sprintf("http://127.0.0.1:%d", opsPort),
	}
	return p, p.AwaitReady(ctx, p.opsURL+"/readyz", waitTimeout)
}

// terminate sends SIGTERM and waits, at most timeout, for the exit.
func (p *provider) terminate(t *testing.T, timeout time.Duration) error {
	t.Helper()
	return p.Terminate(t, timeout)
}

// logLine returns the first JSON log line whose msg is msg.
func (p *provider) logLine(msg string) map[string]any {
	if lines := p.log.LogLines(msg); len(lines) > 0 {
		return lines[0]
	}
	return nil
}

// triggered makes an action.triggered event from an example: a fresh id and
// context, project itest, the given stage, service carts, and value.
func triggered(t *testing.T, example, stage string, value any) (id string, body []byte) {
	t.Helper()
	ev := testsupport.Example(t, example)
	id = "itest-" + randomSuffix() + randomSuffix()
	ev["id"] = id
	ev["shkeptncontext"] = "ctx-" + id
	data := ev["data"].(map[string]any)
	data["project"], data["stage"], data["service"] = project, stage, "carts"
	data["action"].(map[string]any)["value"] = value
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return id, body
}

// post sends a structured-mode event, as the distributor does.
func post(ctx context.Context, t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func awaitFinished(ctx context.Context, t *testing.T, sink *eventsink.Sink, id string) eventsink.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	fin, err := sink.AwaitFinished(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return fin
}

// checkEvents checks that the sink got exactly a started then a finished
// event for id, each answering the triggered event. Called once every
// provider sending to sink has exited (terminate), which is after each
// has handled every event it accepted and delivered every event it will,
// it also shows that nothing more follows.
func checkEvents(t *testing.T, sink *eventsink.Sink, id, stage string) {
	t.Helper()
	evs := sink.For(id)
	if len(evs) != 2 || evs[0].Type != keptnevent.StartedType || evs[1].Type != keptnevent.FinishedType {
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
		}
		t.Fatalf("events for %s: %v, want exactly one started then one finished", id, types)
	}
	for _, ev := range evs {
		if ev.KeptnContext != "ctx-"+id || ev.Source != "action-provider" || ev.ID == "" || ev.ID == id {
			t.Errorf("%s: shkeptncontext %q, source %q, id %q", ev.Type, ev.KeptnContext, ev.Source, ev.ID)
		}
		if ev.Data.Project != project || ev.Data.Stage != stage || ev.Data.Service != "carts" {
			t.Errorf("%s: data %s/%s/%s, want %s/%s/carts", ev.Type, ev.Data.Project, ev.Data.Stage, ev.Data.Service, project, stage)
		}
	}
}

// TestRedeliveryToAnotherReplicaRunsOnce: the same triggered event reaches
// two replicas of the provider at the same time, as when NATS or the
// distributor delivers it twice. One claims it, runs it and reports it; the
// other sends nothing at all, since Keptn waits for a finished event for
// every started one.
func TestRedeliveryToAnotherReplicaRunsOnce(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)

	sink := &eventsink.Sink{}
	broker := testsupport.ServeSink(t, sink)
	env := map[string]string{"EVENTBROKER": broker}
	a, b := startProvider(ctx, t, with(env, "POD_NAME", "replica-a")), startProvider(ctx, t, with(env, "POD_NAME", "replica-b"))

	id, body := triggered(t, "01-scale-up.json", stage, map[string]string{"replicas": "+1"})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, p := range []*provider{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = post(ctx, t, p.rcvURL, body)
		}()
	}
	wg.Wait()
	if codes[0] != http.StatusAccepted || codes[1] != http.StatusAccepted {
		t.Fatalf("POSTs answered %v, want both 202: each replica accepts before it claims", codes)
	}
	fin := awaitFinished(ctx, t, sink, id)
	checkEvents(t, sink, id, stage)
	if fin.Data.Result != keptnv2.ResultPass || !strings.HasPrefix(fin.Data.Message, "scaled deployment "+ns+"/carts from 1 to 2 replicas") {
		t.Fatalf("finished %s/%s %q, want the scale from 1 to 2", fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}
	if n := read(ctx, t, cp.client, carts.ref(ns)).replicas; n != 2 {
		t.Fatalf("spec.replicas of carts = %d, want 2 (1, +1 once)", n)
	}
	// The replica that lost the claim says so.
	eventually(ctx, t, "a log line from the replica that lost the claim", func(context.Context) (bool, string, error) {
		return a.logLine("event already taken by another replica; sending nothing") != nil ||
			b.logLine("event already taken by another replica; sending nothing") != nil, "", nil
	})
	// Both have handled and answered all they accepted: nothing more can come.
	for _, p := range []*provider{a, b} {
		if err := p.terminate(t, 30*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.Name, err)
		}
	}
	checkEvents(t, sink, id, stage)
}

// with returns a copy of env with k set to v.
func with(env map[string]string, k, v string) map[string]string {
	c := map[string]string{k: v}
	for key, val := range env {
		if key != k {
			c[key] = val
		}
	}
	return c
}

// TestCatalogWebhookMasksItsSecret: a catalog (ACTIONS_CONFIG) declares a
// webhook whose token comes from the environment. The server it calls
// echoes the token back, as a misbehaving server might; neither the
// finished event nor any log line may carry it.
func TestCatalogWebhookMasksItsSecret(t *testing.T) {
	requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	const token = "pager-token-0123456789"
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "paged team %s with %s", r.URL.Query().Get("team"), r.Header.Get("Authorization"))
	}))
	t.Cleanup(hook.Close)
	catalog := filepath.Join(t.TempDir(), "actions.yaml")
	err := os.WriteFile(catalog, []byte(`actions:
  - name: page-oncall
    kind: webhook
    settings:
      url: "`+hook.URL+`/page?team={{index .Value \"team\"}}"
      headers: {Authorization: 'Bearer {{secret "token"}}'}
      secrets: {token: {env: PAGER_TOKEN}}
      allow: [loopback]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sink := &eventsink.Sink{}
	broker := testsupport.ServeSink(t, sink)
	p := startProvider(ctx, t, map[string]string{
		"EVENTBROKER": broker, "ACTIONS_CONFIG": catalog, "PAGER_TOKEN": token,
	})

	id, body := triggered(t, "03-unknown-action.json", "production", map[string]string{"team": "carts"})
	// examples/events/03-unknown-action.json's action is page-oncall: no
	// handler of the built-in catalog answers it, this catalog's does.
	if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
		t.Fatalf("POST = %d %q, want 202: the catalog declares page-oncall", code, answer)
	}
	fin := awaitFinished(ctx, t, sink, id)
	want := "answered 202 Accepted: paged team carts with Bearer ***"
	if fin.Data.Result != keptnv2.ResultPass || !strings.Contains(fin.Data.Message, want) || strings.Contains(fin.Data.Message, token) {
		t.Errorf("finished %s/%s %q, want a pass containing %q and never the token", fin.Data.Status, fin.Data.Result, fin.Data.Message, want)
	}
	if calls.Load() != 1 {
		t.Errorf("the webhook was called %d times, want 1", calls.Load())
	}
	if err := p.terminate(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(p.log.String(), token) {
		t.Errorf("the token reached the log:\n%s", p.log)
	}
}

// TestKilledReplicaActionIsReportedInterrupted: a replica is SIGKILLed while
// its action runs (a restart waiting for a rollout that cannot converge).
// Its started event was sent; Keptn would wait for the finished one forever.
// Another replica finds the action orphaned once the dead one's heartbeat
// lapses, and reports it: errored, "interrupted", exactly once.
func TestKilledReplicaActionIsReportedInterrupted(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 1}.create(ctx, t, cp.client, ns)
	updateDeployment(ctx, t, cp.client, ns, "carts", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"action-provider-test/node": "none"}
	})

	sink := &eventsink.Sink{}
	broker := testsupport.ServeSink(t, sink)
	env := map[string]string{"EVENTBROKER": broker, "HEARTBEAT_PERIOD": "2s", "VERIFY_TIMEOUT": "2m", "ACTION_TIMEOUT": "3m"}
	doomed := startProvider(ctx, t, with(env, "POD_NAME", "doomed-"+randomSuffix()))
	survivor := startProvider(ctx, t, with(env, "POD_NAME", "survivor-"+randomSuffix()))

	id, body := triggered(t, "07-restart.json", stage, nil)
	if code, answer := post(ctx, t, doomed.rcvURL, body); code != http.StatusAccepted {
		t.Fatalf("POST = %d %q", code, answer)
	}
	eventually(ctx, t, "the started event", func(context.Context) (bool, string, error) {
		return len(sink.For(id)) == 1, "", nil
	})
	// The action now waits for its rollout; kill the replica under it.
	eventually(ctx, t, "the action to be recorded as started on the cluster", func(ctx context.Context) (bool, string, error) {
		leases, err := cp.client.CoordinationV1().Leases(ledgerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "keptn-action-provider.io/state=started"})
		if err != nil {
			return false, "", err
		}
		for _, l := range leases.Items {
			if l.Annotations["keptn-action-provider.io/triggeredid"] == id {
				return true, "", nil
			}
		}
		return false, "", nil
	})
	if err := doomed.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	fin := awaitFinished(ctx, t, sink, id)
	checkEvents(t, sink, id, stage)
	if fin.Data.Status != keptnv2.StatusErrored || fin.Data.Result != keptnv2.ResultFailed ||
		!strings.HasPrefix(fin.Data.Message, "interrupted: replica doomed-") {
		t.Fatalf("finished %s/%s %q, want errored/fail \"interrupted: replica doomed-…\"", fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}
	// The survivor has handled and answered all it will, and logged it:
	// nothing more can come.
	if err := survivor.terminate(t, 30*time.Second); err != nil {
		t.Errorf("the survivor exited with %v after SIGTERM", err)
	}
	checkEvents(t, sink, id, stage)
	if survivor.logLine("reported an action orphaned by a replica that stopped") == nil {
		t.Errorf("the survivor did not say it reported the orphan:\n%s", survivor.log)
	}
}

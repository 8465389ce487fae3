package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/receiver"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// harness is a provider serving on loopback, its event sink and its log.
type harness struct {
	t       *testing.T
	p       *Server
	in      *HTTPIntake
	sink    *eventsink.Sink
	log     *testsupport.SyncBuffer
	cancel  context.CancelFunc
	stopped chan error
}

func testConfig() config.Config {
	return config.Config{
		RcvHost: "127.0.0.1", RcvPort: 0, RcvPath: "/", OpsPort: 0,
		DeliveryRetryTime: 5 * time.Second, MaxEventBytes: 64 << 10, EventSource: "action-provider",
		MaxBodyBytes: 1 << 20, Workers: 4, QueueSize: 16,
		ActionTimeout: 5 * time.Second, ShutdownGrace: 5 * time.Second, ShutdownFlush: 2 * time.Second,
		DedupTTL: time.Minute, DedupCapacity: 1000,
	}
}

func start(t *testing.T, cfg config.Config, handlers map[string]action.Handler, sink *eventsink.Sink) *harness {
	t.Helper()
	return startWith(t, cfg, handlers, sink, nil)
}

// startWith is start with a cross-replica claimer.
func startWith(t *testing.T, cfg config.Config, handlers map[string]action.Handler, sink *eventsink.Sink, claims lifecycle.Claimer) *harness {
	t.Helper()
	if sink == nil {
		sink = &eventsink.Sink{}
	}
	cfg.EventBroker = testsupport.ServeSink(t, sink)

	var reg action.Registry
	for name, h := range handlers {
		if err := reg.Register(name, h); err != nil {
			t.Fatal(err)
		}
	}
	buf := &testsupport.SyncBuffer{}
	log := logrus.New()
	log.SetOutput(buf)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})

	p, in := assemble(cfg, &reg, claims, log)
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, p: p, in: in, sink: sink, log: buf, cancel: cancel, stopped: make(chan error, 1)}
	go func() { h.stopped <- p.Serve(ctx) }()
	t.Cleanup(func() { h.stop() })
	h.awaitReady()
	return h
}

// assemble builds a server as the composition root does in HTTP mode, from
// handlers in reg and claims (nil: none).
func assemble(cfg config.Config, reg *action.Registry, claims lifecycle.Claimer, log logrus.FieldLogger) (*Server, *HTTPIntake) {
	prom := prometheus.NewRegistry()
	m := metrics.New(prom)
	publisher := &delivery.HTTP{URL: cfg.EventBroker, Client: delivery.NewClient(cfg.Workers),
		Backoff: retry.Backoff{Bound: cfg.DeliveryRetryTime}, Metrics: m, Log: log}
	lc := lifecycle.New(lifecycle.Config{Workers: cfg.Workers, QueueSize: cfg.QueueSize, ActionTimeout: cfg.ActionTimeout},
		reg, dedup.New(cfg.DedupTTL, cfg.DedupCapacity, nil), claims,
		keptnevent.Replier{Source: cfg.EventSource, MaxBytes: cfg.MaxEventBytes}, publisher, log, m)
	in := NewHTTPIntake(cfg, &receiver.Receiver{Submitter: lc, MaxBodyBytes: cfg.MaxBodyBytes, QueueWait: cfg.QueueWait, Log: log, Metrics: m})
	return New(cfg, Parts{Lifecycle: lc, Intake: in, Prometheus: prom, Log: log}), in
}

func (h *harness) awaitReady() {
	h.t.Helper()
	testsupport.Eventually(h.t, 10*time.Second, "the provider to be ready", func() bool {
		code, _ := h.get("/readyz")
		return code == http.StatusOK
	})
}

// stop is SIGTERM: it cancels Serve's context and waits for Serve to return.
func (h *harness) stop() error {
	h.cancel()
	select {
	case err, ok := <-h.stopped:
		if ok {
			close(h.stopped)
		}
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatal("provider did not stop within 30s")
		return nil
	}
}

func (h *harness) get(path string) (int, string) {
	resp, err := http.Get(h.p.OpsURL() + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) post(body []byte) (int, string) {
	h.t.Helper()
	resp, err := http.Post(h.in.URL(), "application/cloudevents+json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (h *harness) awaitFinished(id string) eventsink.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := h.sink.AwaitFinished(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ev
}

func trigger(id, actionName string, value any) []byte {
	ev := map[string]any{
		"specversion": "1.0", "id": id, "source": "shipyard-controller", "type": keptnevent.TriggeredType,
		"shkeptncontext": "ctx-" + id, "gitcommitid": "commit-" + id, "shkeptnspecversion": "0.2.3", "triggeredid": "",
		"data": map[string]any{
			"project": "sockshop", "stage": "production", "service": "carts",
			"labels":  map[string]string{"owner": "team-carts"},
			"action":  map[string]any{"action": actionName, "value": value},
			"problem": map[string]any{"problemTitle": "Response time degradation"},
		},
	}
	b, _ := json.Marshal(ev)
	return b
}

// bigLabels is a triggered event whose labels alone take n bytes.
func bigLabels(n int) []byte {
	var ev map[string]any
	_ = json.Unmarshal(trigger("big", "scale", nil), &ev)
	ev["data"].(map[string]any)["labels"] = map[string]string{"pad": strings.Repeat("x", n)}
	b, _ := json.Marshal(ev)
	return b
}

func TestHandledActionGetsStartedThenOneFinished(t *testing.T) {
	var got action.Request
	h := start(t, testConfig(), map[string]action.Handler{
		"scale": testsupport.Handler(func(_ context.Context, req action.Request) (action.Outcome, error) {
			got = req
			return action.Pass("scaled deployment sockshop-production/carts from 1 to 2 replicas"), nil
		}),
	}, nil)

	code, body := h.post(trigger("t1", "scale", map[string]string{"replicas": "+1"}))
	if code != http.StatusAccepted || body != "accepted" {
		t.Fatalf("answer = %d %q, want 202 accepted", code, body)
	}
	fin := h.awaitFinished("t1")
	evs := h.sink.For("t1")
	if len(evs) != 2 || evs[0].Type != keptnevent.StartedType || evs[1].Type != keptnevent.FinishedType {
		t.Fatalf("events for t1 = %+v, want started then finished", evs)
	}
	for _, ev := range evs {
		if ev.KeptnContext != "ctx-t1" || ev.GitCommitID != "commit-t1" || ev.KeptnSpec != "0.2.3" || ev.Source != "action-provider" {
			t.Errorf("%s: context/gitcommit/spec/source = %q %q %q %q", ev.Type, ev.KeptnContext, ev.GitCommitID, ev.KeptnSpec, ev.Source)
		}
		if ev.Data.Project != "sockshop" || ev.Data.Stage != "production" || ev.Data.Service != "carts" || ev.Data.Labels["owner"] != "team-carts" {
			t.Errorf("%s: data = %+v", ev.Type, ev.Data)
		}
	}
	if fin.Data.Status != keptnv2.StatusSucceeded || fin.Data.Result != keptnv2.ResultPass ||
		fin.Data.Message != "scaled deployment sockshop-production/carts from 1 to 2 replicas" {
		t.Errorf("finished = %+v", fin.Data)
	}
	if got.Action != "scale" || string(got.Value) != `{"replicas":"+1"}` || got.TriggeredID != "t1" ||
		got.KeptnContext != "ctx-t1" || got.Problem.ProblemTitle != "Response time degradation" {
		t.Errorf("handler got %+v", got)
	}
	// Every log line about the event names it.
	h.stop()
	for _, line := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		if strings.Contains(line, `"triggeredid":"t1"`) && (!strings.Contains(line, `"shkeptncontext":"ctx-t1"`) || !strings.Contains(line, `"action":"scale"`)) {
			t.Errorf("log line lacks context or action: %s", line)
		}
	}
	if !strings.Contains(h.log.String(), `"msg":"action finished"`) {
		t.Errorf("no 'action finished' log line:\n%s", h.log)
	}
}

func TestUnknownActionGetsNoEvent(t *testing.T) {
	h := start(t, testConfig(), map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil)
	code, body := h.post(trigger("unknown-1", "page-oncall", nil))
	if code != http.StatusOK || !strings.Contains(body, `no handler for action "page-oncall"`) {
		t.Fatalf("answer = %d %q", code, body)
	}
	// A known action after it is finished; the unknown one left no trace.
	h.post(trigger("known-1", "scale", nil))
	h.awaitFinished("known-1")
	if evs := h.sink.For("unknown-1"); len(evs) != 0 {
		t.Fatalf("unknown action produced events: %+v", evs)
	}
	if _, m := h.get("/metrics"); !strings.Contains(m, `action_provider_events_received_total{outcome="unknown_action",type="sh.keptn.event.action.triggered"} 1`) {
		t.Errorf("unknown_action not counted:\n%s", grep(m, "events_received"))
	}
}

func TestBadInputIsRefusedAndTheProcessLives(t *testing.T) {
	h := start(t, testConfig(), map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil)
	huge := append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 2<<20)...), `"}`...)
	for _, tc := range []struct {
		name string
		body []byte
		code int
		says string
	}{
		// Answered 2xx with the reason: the distributor re-POSTs anything
		// else three times, holding up every other event for seconds.
		{"malformed JSON", []byte(`{"id": `), 200, "rejected: malformed JSON body"},
		{"not a CloudEvent", []byte(`{"hello":"world"}`), 200, "CloudEvent"},
		{"wrong type", bytes.Replace(trigger("w", "scale", nil), []byte("action.triggered"), []byte("action.finished"), 1), 200, "rejected: event type \"sh.keptn.event.action.finished\" is not sh.keptn.event.action.triggered"},
		{"data.action a string", []byte(`{"specversion":"1.0","id":"s1","source":"x","type":"sh.keptn.event.action.triggered","shkeptncontext":"c","data":{"project":"p","stage":"s","service":"c","action":"scale"}}`), 200, "data.action must be an object"},
		{"missing service", bytes.Replace(trigger("m", "scale", nil), []byte(`"service":"carts"`), []byte(`"service":""`), 1), 200, "rejected: missing required data.service"},
		{"huge body", huge, 200, "rejected: body larger than 1048576 bytes"},
		{"labels too large to answer", bigLabels(70 << 10), 200, "rejected: its finished event would be larger than MAX_EVENT_BYTES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.post(tc.body)
			if code != tc.code || !strings.Contains(body, tc.says) || strings.Count(body, "\n") > 0 {
				t.Errorf("answer = %d %q, want %d saying %q on one line", code, body, tc.code, tc.says)
			}
		})
	}
	resp, err := http.Get(h.in.URL())
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the receiver = %v %v, want 405", resp.StatusCode, err)
	}
	resp.Body.Close()
	// Still alive and working.
	if code, _ := h.post(trigger("after", "scale", nil)); code != http.StatusAccepted {
		t.Fatalf("valid event after bad ones: %d", code)
	}
	h.awaitFinished("after")
	if !strings.Contains(h.log.String(), `"event_id":"s1"`) {
		t.Errorf("refusal log does not name the event id s1:\n%s", h.log)
	}
	if len(h.sink.Events()) != 2 {
		t.Errorf("bad input produced events: %+v", h.sink.Events())
	}
}

func TestEveryStartedActionFinishesExactlyOnce(t *testing.T) {
	cfg := testConfig()
	cfg.ActionTimeout = 200 * time.Millisecond
	h := start(t, cfg, map[string]action.Handler{
		"fails": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			return action.Outcome{}, errors.New("deployments.apps \"carts\" is forbidden")
		}),
		"panics": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			var replicas []int32
			return action.Pass(fmt.Sprint(replicas[len(replicas)-1])), nil // a real bug: index out of range
		}),
		"hangs": testsupport.Handler(func(ctx context.Context, _ action.Request) (action.Outcome, error) {
			<-ctx.Done()
			return action.Outcome{}, fmt.Errorf("waiting for rollout: %w", ctx.Err())
		}),
		"warns": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			return action.Warning("scaled, but 1/2 pods ready"), nil
		}),
		"refuses": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			return action.Fail("nothing to roll back to"), nil
		}),
	}, nil)
	for _, tc := range []struct {
		action string
		status keptnv2.StatusType
		result keptnv2.ResultType
		says   string
	}{
		{"fails", keptnv2.StatusErrored, keptnv2.ResultFailed, `deployments.apps "carts" is forbidden`},
		{"panics", keptnv2.StatusErrored, keptnv2.ResultFailed, "action panics crashed (panic: runtime error: index out of range [-1])"},
		{"hangs", keptnv2.StatusErrored, keptnv2.ResultFailed, "timed out after 200ms: waiting for rollout: context deadline exceeded"},
		{"warns", keptnv2.StatusSucceeded, keptnv2.ResultWarning, "scaled, but 1/2 pods ready"},
		{"refuses", keptnv2.StatusSucceeded, keptnv2.ResultFailed, "nothing to roll back to"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			id := "id-" + tc.action
			if code, _ := h.post(trigger(id, tc.action, nil)); code != http.StatusAccepted {
				t.Fatalf("answer %d", code)
			}
			fin := h.awaitFinished(id)
			if fin.Data.Status != tc.status || fin.Data.Result != tc.result || !strings.Contains(fin.Data.Message, tc.says) {
				t.Errorf("finished = %s/%s %q, want %s/%s saying %q", fin.Data.Status, fin.Data.Result, fin.Data.Message, tc.status, tc.result, tc.says)
			}
		})
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"id-fails", "id-panics", "id-hangs", "id-warns", "id-refuses"} {
		if evs := h.sink.For(id); len(evs) != 2 {
			t.Errorf("%s: %d events, want exactly started + finished", id, len(evs))
		}
	}
	if !strings.Contains(h.log.String(), "goroutine") {
		t.Error("the panic's stack is not in the log")
	}
}

func TestDuplicateDeliveryRunsOnce(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	h := start(t, testConfig(), map[string]action.Handler{
		"scale": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			runs.Add(1)
			<-release
			return action.Pass("ok"), nil
		}),
	}, nil)
	ev := trigger("dup", "scale", nil)
	if code, _ := h.post(ev); code != http.StatusAccepted {
		t.Fatal(code)
	}
	// The distributor re-POSTs while the action is still running, and again after.
	if code, body := h.post(ev); code != http.StatusOK || !strings.Contains(body, "duplicate") {
		t.Errorf("redelivery = %d %q", code, body)
	}
	close(release)
	h.awaitFinished("dup")
	if code, _ := h.post(ev); code != http.StatusOK {
		t.Errorf("late redelivery = %d", code)
	}
	h.stop()
	if runs.Load() != 1 || len(h.sink.For("dup")) != 2 {
		t.Errorf("runs = %d, events = %d; want 1 run, 2 events", runs.Load(), len(h.sink.For("dup")))
	}
}

// A burst larger than the queue is taken whole while the workers keep up
// within QUEUE_WAIT: the distributor gave each event over, and a 503 would
// lose it if its retries did not get through within its 5 s.
func TestBurstLargerThanTheQueueIsTakenWhole(t *testing.T) {
	cfg := testConfig()
	cfg.Workers, cfg.QueueSize = 1, 1
	cfg.QueueWait = 3 * time.Second
	h := start(t, cfg, map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil)
	const burst = 12
	var wg sync.WaitGroup
	codes := make([]int, burst)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(h.in.URL(), "application/cloudevents+json", bytes.NewReader(trigger(fmt.Sprint("burst-", i), "scale", nil)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusAccepted {
			t.Errorf("burst-%d: %d, want 202", i, code)
		}
		h.awaitFinished(fmt.Sprint("burst-", i))
	}
}

func TestFullQueueAnswers503AfterQueueWaitAndForgetsTheEvent(t *testing.T) {
	cfg := testConfig()
	cfg.Workers, cfg.QueueSize = 1, 1
	cfg.QueueWait = 50 * time.Millisecond
	release := make(chan struct{})
	h := start(t, cfg, map[string]action.Handler{
		"scale": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			<-release
			return action.Pass("ok"), nil
		}),
	}, nil)
	h.post(trigger("busy-1", "scale", nil)) // runs, blocks the only worker
	h.sink.Await(context.Background(), func(evs []eventsink.Event) bool { return len(evs) == 1 })
	h.post(trigger("busy-2", "scale", nil)) // waits in the queue
	code, body := h.post(trigger("busy-3", "scale", nil))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "busy") {
		t.Fatalf("answer on a full queue = %d %q, want 503 busy", code, body)
	}
	close(release)
	h.awaitFinished("busy-2")
	// The refused event was not remembered: its redelivery is accepted.
	if code, _ := h.post(trigger("busy-3", "scale", nil)); code != http.StatusAccepted {
		t.Fatalf("redelivery after 503 = %d, want 202", code)
	}
	h.awaitFinished("busy-3")
}

func TestShutdownFinishesInFlightActions(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 2
	// Long enough for the quick actions to end once released on a loaded
	// machine; the slow one outlives it whatever the load.
	cfg.ShutdownGrace = 3 * time.Second
	running := make(chan string, 3)
	release := make(chan struct{}) // closed once the drain has begun
	h := start(t, cfg, map[string]action.Handler{
		// Finishes within the grace period, once released.
		"quick": testsupport.Handler(func(ctx context.Context, req action.Request) (action.Outcome, error) {
			running <- req.TriggeredID
			select {
			case <-release:
				return action.Pass("done in time"), nil
			case <-ctx.Done():
				return action.Outcome{}, ctx.Err()
			}
		}),
		// Outlives the grace period and is cancelled.
		"slow": testsupport.Handler(func(ctx context.Context, req action.Request) (action.Outcome, error) {
			running <- req.TriggeredID
			<-ctx.Done()
			return action.Outcome{}, fmt.Errorf("waiting for rollout: %w", ctx.Err())
		}),
	}, nil)
	h.post(trigger("q", "quick", nil))
	h.post(trigger("s", "slow", nil))
	h.post(trigger("queued", "quick", nil)) // no free worker: waits in the queue
	for range 2 {
		testsupport.Receive(t, running, 10*time.Second, "q and s to run")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	testsupport.Eventually(t, 10*time.Second, "/readyz to turn false while draining", func() bool {
		code, _ := h.get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if resp, err := http.Post(h.in.URL(), "application/cloudevents+json", bytes.NewReader(trigger("late", "quick", nil))); err == nil {
		if resp.StatusCode == http.StatusAccepted {
			t.Error("an event was accepted while draining")
		}
		resp.Body.Close()
	}
	close(release) // q ends; queued then runs and ends, within the grace period
	if id := testsupport.Receive(t, running, 10*time.Second, "the queued action to run while draining"); id != "queued" {
		t.Errorf("%s ran while draining, want queued", id)
	}
	if err := testsupport.Receive(t, stopped, 30*time.Second, "Serve to return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}

	want := map[string]struct {
		status keptnv2.StatusType
		says   string
	}{
		"q":      {keptnv2.StatusSucceeded, "done in time"},
		"s":      {keptnv2.StatusErrored, "interrupted: the provider shut down while the action ran: waiting for rollout: context canceled"},
		"queued": {keptnv2.StatusSucceeded, "done in time"},
	}
	for id, w := range want {
		evs := h.sink.For(id)
		if len(evs) != 2 || evs[1].Type != keptnevent.FinishedType {
			t.Errorf("%s: events %+v, want started + finished", id, evs)
			continue
		}
		if evs[1].Data.Status != w.status || evs[1].Data.Message != w.says {
			t.Errorf("%s: finished %s %q, want %s %q", id, evs[1].Data.Status, evs[1].Data.Message, w.status, w.says)
		}
	}
	if evs := h.sink.For("late"); len(evs) != 0 {
		t.Errorf("event sent while draining got events: %+v", evs)
	}
}

// Events still queued when the grace period ends were promised (202) but
// never began: each reports that it did not run, instead of vanishing.
func TestShutdownReportsQueuedActionsThatNeverRan(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 1
	cfg.ShutdownGrace = 200 * time.Millisecond
	running := make(chan struct{}, 1)
	var ran atomic.Int32
	h := start(t, cfg, map[string]action.Handler{
		"slow": testsupport.Handler(func(ctx context.Context, _ action.Request) (action.Outcome, error) {
			ran.Add(1)
			running <- struct{}{}
			<-ctx.Done()
			return action.Outcome{}, ctx.Err()
		}),
	}, nil)
	h.post(trigger("first", "slow", nil))
	<-running
	h.post(trigger("second", "slow", nil))
	h.post(trigger("third", "slow", nil))
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 1 {
		t.Errorf("%d actions ran, want only the first", ran.Load())
	}
	for _, id := range []string{"second", "third"} {
		evs := h.sink.For(id)
		if len(evs) != 2 || evs[1].Data.Status != keptnv2.StatusErrored ||
			evs[1].Data.Message != "not run: the provider shut down before the action could start" {
			t.Errorf("%s: %+v", id, evs)
		}
	}
}

// The event endpoint refuses for a while (the distributor restarting), then
// takes events again: nothing is lost, and no finished precedes its started.
func TestBrokerOutageLosesNothing(t *testing.T) {
	var down atomic.Bool
	var refusals atomic.Int32
	down.Store(true)
	sink := &eventsink.Sink{Refuse: func() int {
		if down.Load() {
			refusals.Add(1)
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	h := start(t, testConfig(), map[string]action.Handler{"scale": testsupport.Passes("ok")}, sink)
	const n = 20
	for i := range n {
		if code, _ := h.post(trigger(fmt.Sprint("o", i), "scale", nil)); code != http.StatusAccepted {
			t.Fatalf("event %d: %d", i, code)
		}
	}
	// Every worker has tried to deliver a started event, and been refused.
	testsupport.Eventually(t, 10*time.Second, "the provider to try the refusing broker", func() bool {
		return refusals.Load() >= int32(testConfig().Workers)
	})
	if len(sink.Events()) != 0 {
		t.Fatal("events got through a refusing broker")
	}
	down.Store(false)
	for i := range n {
		h.awaitFinished(fmt.Sprint("o", i))
	}
	h.stop()
	for i := range n {
		evs := sink.For(fmt.Sprint("o", i))
		if len(evs) != 2 || evs[0].Type != keptnevent.StartedType || evs[1].Type != keptnevent.FinishedType {
			t.Errorf("o%d: %d events %v", i, len(evs), evs)
		}
	}
}

// Delivery retries are about an event too, and say which.
func TestRetryLogLinesNameTheEvent(t *testing.T) {
	var refusals atomic.Int32
	sink := &eventsink.Sink{Refuse: func() int {
		if refusals.Add(1) <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	h := start(t, testConfig(), map[string]action.Handler{"scale": testsupport.Passes("ok")}, sink)
	h.post(trigger("r1", "scale", nil))
	h.awaitFinished("r1")
	h.stop()
	retries := 0
	for _, line := range strings.Split(h.log.String(), "\n") {
		if !strings.Contains(line, "retrying") {
			continue
		}
		retries++
		for _, want := range []string{`"shkeptncontext":"ctx-r1"`, `"triggeredid":"r1"`, `"action":"scale"`} {
			if !strings.Contains(line, want) {
				t.Errorf("retry log line lacks %s: %s", want, line)
			}
		}
	}
	if retries != 2 {
		t.Errorf("%d retry log lines, want 2", retries)
	}
}

// A started event that cannot be delivered means Keptn does not know the
// action exists: it must not run, and no finished may follow.
func TestUndeliverableStartedDoesNotRunTheAction(t *testing.T) {
	cfg := testConfig()
	cfg.DeliveryRetryTime = 200 * time.Millisecond
	var runs atomic.Int32
	sink := &eventsink.Sink{Refuse: func() int { return http.StatusBadGateway }}
	h := start(t, cfg, map[string]action.Handler{
		"scale": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			runs.Add(1)
			return action.Pass("ok"), nil
		}),
	}, sink)
	h.post(trigger("nostart", "scale", nil))
	testsupport.Eventually(t, 10*time.Second, "an error log about the lost started event", func() bool {
		return strings.Contains(h.log.String(), "started event not delivered")
	})
	h.stop()
	if runs.Load() != 0 {
		t.Errorf("the action ran %d times without a delivered started", runs.Load())
	}
	if !strings.Contains(h.log.String(), `\"triggeredid\":\"nostart\"`) {
		t.Errorf("the error log does not carry the whole event")
	}
}

func TestMetricsCountActions(t *testing.T) {
	h := start(t, testConfig(), map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil)
	h.post(trigger("m1", "scale", nil))
	h.awaitFinished("m1")
	_, m := h.get("/metrics")
	for _, want := range []string{
		`action_provider_actions_total{action="scale",result="pass",status="succeeded"} 1`,
		`action_provider_events_received_total{outcome="accepted",type="sh.keptn.event.action.triggered"} 1`,
		`action_provider_deliveries_total{outcome="delivered",type="sh.keptn.event.action.started"} 1`,
		`action_provider_action_duration_seconds_count{action="scale"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// claimer stands for the cluster's record of taken events.
type claimer map[string]error // triggered id → nil: taken elsewhere; an error: cannot tell

func (c claimer) Claim(_ context.Context, id string) (bool, error) {
	err, known := c[id]
	if !known {
		return true, nil
	}
	return false, err
}

func (claimer) Started(context.Context, string, []byte) error   { return nil }
func (claimer) Finishing(context.Context, string, []byte) error { return nil }
func (claimer) Finished(context.Context, string) error          { return nil }
func (claimer) Heartbeat(context.Context) error                 { return nil }
func (claimer) Sweep(context.Context) (int, error)              { return 0, nil }
func (claimer) Orphans(context.Context) ([]lifecycle.Orphan, error) {
	return nil, nil
}

func TestEventClaimedByAnotherReplicaGetsNoEvent(t *testing.T) {
	var runs atomic.Int32
	h := startWith(t, testConfig(), map[string]action.Handler{
		"scale": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			runs.Add(1)
			return action.Pass("ok"), nil
		}),
	}, nil, claimer{"elsewhere": nil, "unknowable": errors.New("leases is forbidden")})

	for _, id := range []string{"elsewhere", "unknowable", "mine"} {
		if code, _ := h.post(trigger(id, "scale", nil)); code != http.StatusAccepted {
			t.Fatalf("%s: POST = %d, want 202", id, code)
		}
	}
	h.awaitFinished("unknowable") // the record could not be read: run anyway
	h.awaitFinished("mine")
	h.stop()
	if evs := h.sink.For("elsewhere"); len(evs) != 0 {
		t.Errorf("an event another replica took got %d events, want none", len(evs))
	}
	if runs.Load() != 2 {
		t.Errorf("%d runs, want 2 (unknowable and mine)", runs.Load())
	}
	for _, want := range []string{"event already taken by another replica; sending nothing", "leases is forbidden"} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestRefusalIsSucceededFail(t *testing.T) {
	h := start(t, testConfig(), map[string]action.Handler{
		"restart": testsupport.Handler(func(context.Context, action.Request) (action.Outcome, error) {
			return action.Outcome{}, fmt.Errorf("restart: %w", action.Refuse("cooldown", "restart changed carts 1m0s ago"))
		}),
	}, nil)
	if code, _ := h.post(trigger("r1", "restart", nil)); code != http.StatusAccepted {
		t.Fatal(code)
	}
	fin := h.awaitFinished("r1")
	if fin.Data.Status != keptnv2.StatusSucceeded || fin.Data.Result != keptnv2.ResultFailed ||
		fin.Data.Message != "restart: refused (cooldown): restart changed carts 1m0s ago" {
		t.Errorf("finished = %s/%s %q, want succeeded/fail naming the rule", fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}
}

// orphaning is a cluster record holding one action a dead replica started.
type orphaning struct {
	claimer
	once     sync.Once
	record   []byte
	finished chan string
}

func (o *orphaning) Orphans(context.Context) (orphans []lifecycle.Orphan, _ error) {
	o.once.Do(func() {
		orphans = []lifecycle.Orphan{{ID: "lost", Record: o.record, Replica: "action-provider-7c9d-xk2p",
			Since: time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)}}
	})
	return orphans, nil
}

func (o *orphaning) Finished(_ context.Context, id string) error { o.finished <- id; return nil }

func TestActionOfADeadReplicaIsReportedInterrupted(t *testing.T) {
	// What lifecycle.Started would have recorded for the event "lost".
	ev, err := keptnevent.Decode(http.Header{"Content-Type": []string{"application/cloudevents+json"}}, trigger("lost", "scale", nil))
	if err != nil {
		t.Fatal(err)
	}
	record, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	claims := &orphaning{claimer: claimer{}, record: record, finished: make(chan string, 1)}
	h := startWith(t, testConfig(), map[string]action.Handler{"scale": testsupport.Handler(
		func(context.Context, action.Request) (action.Outcome, error) { return action.Pass("ok"), nil })}, nil, claims)

	fin := h.awaitFinished("lost")
	if fin.Data.Status != keptnv2.StatusErrored || fin.Data.Result != keptnv2.ResultFailed ||
		!strings.HasPrefix(fin.Data.Message, "interrupted: replica action-provider-7c9d-xk2p stopped (killed or crashed) while running this action, started at 2026-11-24T03:00:00Z") {
		t.Errorf("finished = %s/%s %q", fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}
	if fin.KeptnContext != "ctx-lost" || fin.Data.Project != "sockshop" {
		t.Errorf("finished does not answer the triggered event: context %q, project %q", fin.KeptnContext, fin.Data.Project)
	}
	select {
	case id := <-claims.finished:
		if id != "lost" {
			t.Errorf("recorded finished for %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Error("the orphan's record was not marked finished")
	}
	if evs := h.sink.For("lost"); len(evs) != 1 {
		t.Errorf("%d events for the orphan, want only its finished (its started was sent by the dead replica)", len(evs))
	}
}

// brokerDown is an event broker that refuses everything.
func brokerDown() *eventsink.Sink {
	return &eventsink.Sink{Refuse: func() int { return http.StatusServiceUnavailable }}
}

// The whole shutdown ends within SHUTDOWN_GRACE + SHUTDOWN_FLUSH, whatever
// is still being delivered: the kubelet kills the process at the pod's
// grace period, and what is unsent then stays on the cluster's record for
// another replica. A recovery publishing to a broker that is down used to
// hold Serve for all of EVENTBROKER_RETRY_TIMEOUT.
func TestShutdownEndsWithinItsBound(t *testing.T) {
	ev, err := keptnevent.Decode(http.Header{"Content-Type": []string{"application/cloudevents+json"}}, trigger("lost", "scale", nil))
	if err != nil {
		t.Fatal(err)
	}
	record, _ := json.Marshal(ev)
	claims := &orphaning{claimer: claimer{}, record: record, finished: make(chan string, 1)}
	cfg := testConfig()
	cfg.ShutdownGrace, cfg.ShutdownFlush = 200*time.Millisecond, time.Second
	cfg.DeliveryRetryTime = time.Minute
	h := startWith(t, cfg, map[string]action.Handler{"scale": testsupport.Passes("ok")}, brokerDown(), claims)
	// The orphan's finished event is being retried against the down broker.
	testsupport.Eventually(t, 10*time.Second, "the orphan's finished event retried", func() bool {
		return strings.Contains(h.log.String(), "finished event not delivered yet") ||
			strings.Contains(h.log.String(), "event broker did not accept the event; retrying")
	})
	begin := time.Now()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// The bound plus room for a loaded machine; far below the retry bound.
	if took, bound := time.Since(begin), cfg.ShutdownGrace+cfg.ShutdownFlush; took > bound+5*time.Second {
		t.Errorf("shutdown took %s; its bound is %s", took, bound)
	}
	if !strings.Contains(h.log.String(), "finished events not delivered before the shutdown's bound") {
		t.Errorf("the log does not say what was left unsent:\n%s", h.log)
	}
}

// OPS_HOST narrows the ops port to one address.
func TestOpsHostBindsOneAddress(t *testing.T) {
	cfg := testConfig()
	cfg.OpsHost = "127.0.0.1"
	h := start(t, cfg, map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil)
	if got := h.p.opsLn.Addr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
		t.Errorf("ops port bound to %s; want 127.0.0.1", got)
	}
	if code, _ := h.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
}

// A finished event on its way when SIGTERM arrives is let through, within
// SHUTDOWN_FLUSH: cut short after the broker took it, it would stay
// unrecorded, and another replica would send it again.
func TestShutdownLetsADeliveryUnderWayFinish(t *testing.T) {
	ev, err := keptnevent.Decode(http.Header{"Content-Type": []string{"application/cloudevents+json"}}, trigger("lost", "scale", nil))
	if err != nil {
		t.Fatal(err)
	}
	record, _ := json.Marshal(ev)
	claims := &orphaning{claimer: claimer{}, record: record, finished: make(chan string, 1)}
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sink := &eventsink.Sink{Refuse: func() int {
		once.Do(func() { close(arrived); <-release })
		return 0
	}}
	cfg := testConfig()
	cfg.ShutdownGrace, cfg.ShutdownFlush = 200*time.Millisecond, 20*time.Second
	h := startWith(t, cfg, map[string]action.Handler{"scale": testsupport.Passes("ok")}, sink, claims)
	var unblockOnce sync.Once
	unblock := func() { unblockOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the sink's server closes, whatever happens
	<-arrived          // the orphan's finished event is at the broker
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	testsupport.Eventually(t, 10*time.Second, "shutdown to begin", func() bool {
		return strings.Contains(h.log.String(), "shutting down")
	})
	unblock()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-claims.finished:
		if id != "lost" {
			t.Errorf("recorded finished for %q", id)
		}
	default:
		t.Fatalf("the delivered finished event was not recorded as such:\n%s", h.log)
	}
	if evs := h.sink.For("lost"); len(evs) != 1 {
		t.Errorf("%d events for the orphan; want its one finished", len(evs))
	}
}

// TestGatesAreMaintainedEveryHeartbeat: the gates' own work (resuming a
// suspended GitOps owner) runs on every replica, at once and then every
// HEARTBEAT_PERIOD, and stops with the server.
func TestGatesAreMaintainedEveryHeartbeat(t *testing.T) {
	cfg := testConfig()
	cfg.HeartbeatPeriod = 10 * time.Millisecond
	cfg.EventBroker = testsupport.ServeSink(t, &eventsink.Sink{})
	log := logrus.New()
	log.SetOutput(io.Discard)
	p, _ := assemble(cfg, &action.Registry{}, nil, log)
	calls := make(chan struct{}, 100)
	p.maintain = func(ctx context.Context) {
		if ctx.Err() == nil {
			calls <- struct{}{}
		}
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	for range 3 {
		testsupport.Receive(t, calls, 10*time.Second, "a maintenance pass")
	}
	cancel()
	if err := testsupport.Receive(t, done, 30*time.Second, "Serve to return"); err != nil {
		t.Fatal(err)
	}
}

// outage is a cluster that does not answer: every heartbeat and every look
// for orphans waits, as the ledger's writes retry, until its context ends.
type outage struct {
	claimer
	waiting chan struct{} // closed once the first call waits
	once    sync.Once
}

func (o *outage) wait(ctx context.Context) error {
	o.once.Do(func() { close(o.waiting) })
	<-ctx.Done()
	return ctx.Err()
}

func (o *outage) Heartbeat(ctx context.Context) error { return o.wait(ctx) }
func (o *outage) Orphans(ctx context.Context) ([]lifecycle.Orphan, error) {
	return nil, o.wait(ctx)
}

// With no action running, recovery's last pass gets SHUTDOWN_FLUSH, not
// also the SHUTDOWN_GRACE the actions did not need: during an API server
// outage a stop used to wait for both (about a minute by default) on
// writes that could not succeed.
func TestShutdownDuringAnOutageTakesOnlyTheFlush(t *testing.T) {
	claims := &outage{waiting: make(chan struct{})}
	cfg := testConfig()
	cfg.ShutdownGrace, cfg.ShutdownFlush = time.Hour, 200*time.Millisecond
	h := startWith(t, cfg, map[string]action.Handler{"scale": testsupport.Passes("ok")}, nil, claims)
	<-claims.waiting
	// h.stop fails the test if Serve has not returned within 30 s; before
	// the fix it returned after the hour of grace.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

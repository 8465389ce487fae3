package natsbus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/server"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// Tests here run a real nats-server, named by NATS_SERVER_BIN (make test
// sets it: test/nats/nats-server.sh installs v2.10.7). Unset, they skip;
// set but unusable, they fail.
const waitTimeout = 20 * time.Second

type natsServer struct {
	*testsupport.Process
	port int
}

func natsServerBin(t *testing.T) string {
	t.Helper()
	bin := testsupport.EnvFile(t, "NATS_SERVER_BIN", "nats-server binary")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("NATS_SERVER_BIN: %v", err)
	}
	return bin
}

// startServer starts nats-server on 127.0.0.1:port (a free one for 0) and
// waits until it takes connections.
func startServer(t *testing.T, port int) *natsServer {
	t.Helper()
	bin := natsServerBin(t)
	if port == 0 {
		port = testsupport.FreePort(t)
	}
	p, err := testsupport.Start(t, "nats-server", bin, []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &natsServer{Process: p, port: port}
	if !testsupport.Poll(context.Background(), waitTimeout, func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil || s.Exited()
	}) || s.Exited() {
		t.Fatalf("nats-server on port %d not up within %s\n%s", port, waitTimeout, s.Log)
	}
	return s
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *natsServer) stop(t *testing.T) { s.Kill(t) }

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func connect(t *testing.T, url string) (*Bus, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	b, err := Connect(Config{URL: url, Group: "action-provider", Name: t.Name(), BufferBytes: 1 << 20, PublishBound: 5 * time.Second}, quietLog(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b, m
}

// triggered is examples/events/01-scale-up.json with id.
func triggered(t *testing.T, id string) []byte {
	t.Helper()
	ev := testsupport.Example(t, "01-scale-up.json")
	ev["id"] = id
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is a lifecycle stand-in that records what it is given. With a
// room channel, an event waits in Submit for room, as in a full queue.
type recorder struct {
	mu      sync.Mutex
	ids     []string
	room    chan struct{} // nil: always room
	waiting chan string   // told of each event that waits for room
}

func (r *recorder) Submit(ctx context.Context, t keptnevent.Triggered) intake.Disposition {
	if r.room != nil {
		r.waiting <- t.ID
		select {
		case <-r.room:
		case <-ctx.Done():
			return intake.Busy
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, t.ID)
	return intake.Accepted
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.Eventually(t, waitTimeout, what, cond)
}

// serveIntake serves b's intake, submitting to r, until the test ends, and
// waits until it has subscribed.
func serveIntake(t *testing.T, b *Bus, r intake.Submitter) {
	t.Helper()
	in := b.Intake(r)
	go func() { _ = in.Serve() }()
	t.Cleanup(func() { _ = in.Stop(context.Background()) })
	eventually(t, "the intake to subscribe", in.subscribed)
}

// dial connects to url as a plain client, until the test ends.
func dial(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestQueueGroupSplitsTheEvents(t *testing.T) {
	s := startServer(t, 0)
	var replicas [2]*recorder
	for i := range replicas {
		b, _ := connect(t, s.url())
		replicas[i] = &recorder{}
		serveIntake(t, b, replicas[i])
	}
	pub := dial(t, s.url())
	const n = 60
	for i := range n {
		if err := pub.Publish(keptnevent.TriggeredType, triggered(t, fmt.Sprintf("ev-%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every event submitted once", func() bool { return len(replicas[0].got())+len(replicas[1].got()) >= n })
	seen := map[string]int{}
	for _, r := range replicas {
		for _, id := range r.got() {
			seen[id]++
		}
	}
	for id, count := range seen {
		if count != 1 {
			t.Errorf("%s submitted %d times", id, count)
		}
	}
	if len(seen) != n || len(replicas[0].got()) == 0 || len(replicas[1].got()) == 0 {
		t.Errorf("%d distinct events, split %d/%d; want %d, each replica some", len(seen), len(replicas[0].got()), len(replicas[1].got()), n)
	}
}

func TestIntakeWaitsOutAFullQueueAndSkipsBadEvents(t *testing.T) {
	s := startServer(t, 0)
	b, m := connect(t, s.url())
	r := &recorder{room: make(chan struct{}), waiting: make(chan string, 1)}
	serveIntake(t, b, r)
	pub := dial(t, s.url())
	for _, body := range [][]byte{[]byte("{not json"), triggered(t, "late")} {
		if err := pub.Publish(keptnevent.TriggeredType, body); err != nil {
			t.Fatal(err)
		}
	}
	// The event waits for room, for as long as it takes: NATS core cannot
	// take it back.
	if id := <-r.waiting; id != "late" {
		t.Fatalf("waiting for room: %q", id)
	}
	if got := r.got(); len(got) != 0 {
		t.Fatalf("accepted %v while the queue was full", got)
	}
	r.room <- struct{}{}
	eventually(t, "the event accepted after the queue freed up", func() bool { return len(r.got()) == 1 })
	if got := testutilCount(t, m, metrics.Invalid); got != 1 {
		t.Errorf("invalid events counted: %v, want 1", got)
	}
}

// testutilCount reads events_received_total{outcome}.
func testutilCount(t *testing.T, m *metrics.Metrics, outcome string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.EventsReceived.WithLabelValues(keptnevent.TriggeredType, outcome))
}

// TestPublishesDuringAnOutageArriveAfterIt: NATS goes away while actions
// finish; their events are buffered and published once it is back.
func TestPublishesDuringAnOutageArriveAfterIt(t *testing.T) {
	s := startServer(t, 0)
	b, _ := connect(t, s.url())
	eventually(t, "connected", b.Connected)

	// The listener reconnects fast, and the bus backs off from 125 ms, so
	// the listener's subscription is back before the buffer is flushed:
	// NATS core keeps nothing for a subscriber that is not there.
	var got atomic.Int32
	listener, err := nats.Connect(s.url(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if _, err := listener.Subscribe(keptnevent.FinishedType, func(*nats.Msg) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := listener.Flush(); err != nil {
		t.Fatal(err)
	}

	s.stop(t)
	eventually(t, "the bus to notice the outage", func() bool { return !b.Connected() })
	const n = 20
	published := make(chan error, n)
	for i := range n {
		ev := keptnevent.Outgoing{ID: fmt.Sprint(i), Type: keptnevent.FinishedType, Body: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		go func() { published <- b.Publish(context.Background(), ev) }()
	}
	startServer(t, s.port)
	for range n {
		if err := <-published; err != nil {
			t.Errorf("publish across the outage: %v, want it delivered once NATS was back", err)
		}
	}
	eventually(t, fmt.Sprintf("all %d events published during the outage to arrive", n), func() bool { return got.Load() == n })
}

// TestPublishIsDeliveredOnlyWhenTheServerHasIt: an event in the client's
// buffer is not delivered: a kill or a shutdown during the outage would
// lose it, and the record would say "finished" with nothing sent.
func TestPublishIsDeliveredOnlyWhenTheServerHasIt(t *testing.T) {
	s := startServer(t, 0)
	m := metrics.New(prometheus.NewRegistry())
	b, err := Connect(Config{URL: s.url(), Group: "action-provider", Name: t.Name(), BufferBytes: 1 << 20,
		PublishBound: 300 * time.Millisecond}, quietLog(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	eventually(t, "connected", b.Connected)
	s.stop(t)
	eventually(t, "the bus to notice the outage", func() bool { return !b.Connected() })
	ev := keptnevent.Outgoing{ID: "x", Type: keptnevent.FinishedType, Body: []byte(`{}`)}
	if err := b.Publish(context.Background(), ev); err == nil {
		t.Fatal("Publish during an outage returned nil; the event is only in the client's buffer")
	}
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues(keptnevent.FinishedType, "failed")); got != 1 {
		t.Errorf("failed deliveries counted: %v, want 1", got)
	}
}

// TestProviderOverNATS: the provider with NATS as its transport takes
// triggered events from the queue group and answers each handled one with
// exactly one started and one finished on their subjects, and leaves an
// unknown action alone.
func TestProviderOverNATS(t *testing.T) {
	s := startServer(t, 0)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	b, err := Connect(Config{URL: s.url(), Group: "action-provider", BufferBytes: 1 << 20, PublishBound: 5 * time.Second}, quietLog(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())

	var actions action.Registry
	if err := actions.Register("scale", testsupport.Handler(func(_ context.Context, req action.Request) (action.Outcome, error) {
		return action.Pass("scaled " + req.TriggeredID), nil
	})); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.OpsPort, cfg.Transport = 0, config.TransportNATS
	// As the composition root assembles it with TRANSPORT=nats.
	lc := lifecycle.New(lifecycle.Config{Workers: cfg.Workers, QueueSize: cfg.QueueSize, ActionTimeout: cfg.ActionTimeout},
		&actions, dedup.New(cfg.DedupTTL, cfg.DedupCapacity, nil), nil,
		keptnevent.Replier{Source: cfg.EventSource, MaxBytes: cfg.MaxEventBytes}, b, quietLog(), m)
	p := server.New(cfg, server.Parts{Lifecycle: lc, Intake: b.Intake(lc), Prometheus: reg, Log: quietLog()})
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	defer cancel()

	listener, err := nats.Connect(s.url())
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	var mu sync.Mutex
	replies := map[string][]string{} // triggeredid → types, in order
	if _, err := listener.Subscribe("sh.keptn.event.action.*", func(msg *nats.Msg) {
		var ev struct {
			Type        string `json:"type"`
			TriggeredID string `json:"triggeredid"`
		}
		if json.Unmarshal(msg.Data, &ev) == nil && msg.Subject == ev.Type && ev.Type != keptnevent.TriggeredType {
			mu.Lock()
			replies[ev.TriggeredID] = append(replies[ev.TriggeredID], ev.Type)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := listener.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the provider to be ready (subscribed and connected)", func() bool {
		resp, err := http.Get(p.OpsURL() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	const n = 10
	for i := range n {
		if err := listener.Publish(keptnevent.TriggeredType, triggered(t, fmt.Sprintf("nats-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	unknown := bytes.Replace(triggered(t, "nats-unknown"), []byte(`"action":"scale"`), []byte(`"action":"page-oncall"`), 1)
	if err := listener.Publish(keptnevent.TriggeredType, unknown); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a started and a finished for every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		done := 0
		for _, types := range replies {
			if len(types) == 2 {
				done++
			}
		}
		return done == n
	})
	// Serve returns once every action has ended and its events are
	// confirmed by the server; the provider's own count of what it
	// published must then match what the listener got, which it receives
	// in a bounded while: anything extra, for any event, would show there.
	cancel()
	if err := testsupport.Receive(t, served, waitTimeout, "the provider to stop"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := testutilCount(t, m, metrics.UnknownAction); got != 1 {
		t.Errorf("unknown actions counted: %v, want 1", got)
	}
	var sent float64
	for _, typ := range []string{keptnevent.StartedType, keptnevent.FinishedType} {
		d := testutil.ToFloat64(m.Deliveries.WithLabelValues(typ, "delivered"))
		if d != n {
			t.Errorf("%s delivered: %v, want %d", typ, d, n)
		}
		sent += d
	}
	eventually(t, "every published event to reach the listener", func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, types := range replies {
			total += len(types)
		}
		return float64(total) >= sent
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("nats-%02d", i)
		if got := replies[id]; len(got) != 2 || got[0] != keptnevent.StartedType || got[1] != keptnevent.FinishedType {
			t.Errorf("%s: %v, want started then finished", id, got)
		}
	}
	if got := replies["nats-unknown"]; len(got) != 0 {
		t.Errorf("the unknown action got %v, want nothing", got)
	}
}

package delivery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

var fast = retry.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, Bound: 5 * time.Second}

func outgoing(id string) keptnevent.Outgoing {
	return keptnevent.Outgoing{ID: id, Type: keptnevent.FinishedType, Body: []byte(
		`{"specversion":"1.0","id":"` + id + `","source":"t","type":"sh.keptn.event.action.finished","triggeredid":"tr","data":{}}`)}
}

func publisher(url string) (*HTTP, *metrics.Metrics) {
	m := metrics.New(prometheus.NewRegistry())
	return &HTTP{URL: url, Client: NewClient(8), Backoff: fast, Metrics: m}, m
}

func TestPublishRetriesUntilAccepted(t *testing.T) {
	var calls atomic.Int32
	sink := &eventsink.Sink{Refuse: func() int {
		if calls.Add(1) <= 3 {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	p, m := publisher(srv.URL)
	if err := p.Publish(context.Background(), outgoing("e1")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := sink.Events(); len(got) != 1 || got[0].ID != "e1" {
		t.Fatalf("sink received %+v, want e1 once", got)
	}
	if r := testutil.ToFloat64(m.DeliveryRetries.WithLabelValues(keptnevent.FinishedType)); r != 3 {
		t.Errorf("retries metric = %v, want 3", r)
	}
	if d := testutil.ToFloat64(m.Deliveries.WithLabelValues(keptnevent.FinishedType, "delivered")); d != 1 {
		t.Errorf("delivered metric = %v, want 1", d)
	}
}

func TestPublishDoesNotRetryARefusedEvent(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
	}))
	defer srv.Close()
	p, m := publisher(srv.URL)
	err := p.Publish(context.Background(), outgoing("e1"))
	var serr *StatusError
	if !errors.As(err, &serr) || serr.Code != http.StatusRequestEntityTooLarge || serr.Body != "payload too large" {
		t.Fatalf("err = %v, want a 413 StatusError with the body", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d attempts, want 1", calls.Load())
	}
	if f := testutil.ToFloat64(m.Deliveries.WithLabelValues(keptnevent.FinishedType, "failed")); f != 1 {
		t.Errorf("failed metric = %v, want 1", f)
	}
}

// The endpoint is down (connection refused) when the event is published and
// comes up a little later on the same address: the event must arrive.
// go-utils' sender reports success on "connection refused" and loses it.
func TestPublishSurvivesAnEndpointThatIsDownThenUp(t *testing.T) {
	port := testsupport.NewRefusingPort(t) // bound, not listening: connections are refused

	p, m := publisher("http://" + port.Addr + "/event")
	p.Backoff.Bound = time.Minute // the endpoint comes up once a retry is seen, however slow the machine
	published := make(chan error, 1)
	go func() { published <- p.Publish(context.Background(), outgoing("late")) }()
	testsupport.Eventually(t, 30*time.Second, "a retry while the endpoint is down", func() bool {
		return testutil.ToFloat64(m.DeliveryRetries.WithLabelValues(keptnevent.FinishedType)) >= 1
	})

	sink := &eventsink.Sink{}
	srv := &http.Server{Handler: sink}
	ln, err := port.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	defer func() { srv.Close(); <-served }()

	if err := testsupport.Receive(t, published, time.Minute, "Publish to return"); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got := sink.Events(); len(got) != 1 || got[0].ID != "late" {
		t.Fatalf("sink received %+v", got)
	}
}

func TestPublishGivesUpAtTheBound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nats unavailable", http.StatusBadGateway)
	}))
	defer srv.Close()
	p, _ := publisher(srv.URL)
	p.Backoff.Bound = 100 * time.Millisecond
	err := p.Publish(context.Background(), outgoing("e1"))
	var serr *StatusError
	if !errors.As(err, &serr) || serr.Code != http.StatusBadGateway {
		t.Fatalf("err = %v, want the last 502", err)
	}
}

func TestPublishReusesConnections(t *testing.T) {
	var conns atomic.Int32
	sink := &eventsink.Sink{OnEvent: func(eventsink.Event) {}}
	srv := httptest.NewUnstartedServer(sink)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	p, _ := publisher(srv.URL)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := p.Publish(context.Background(), outgoing(string(rune('a'+w))+string(rune('0'+i%10)))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := conns.Load(); n > 8 {
		t.Errorf("%d connections for 800 events from 8 senders; want at most 8 (pooled keep-alive)", n)
	}
}

func BenchmarkPublish(b *testing.B) {
	srv := httptest.NewServer(&eventsink.Sink{OnEvent: func(eventsink.Event) {}})
	defer srv.Close()
	p, _ := publisher(srv.URL)
	ev := outgoing("bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Publish(context.Background(), ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

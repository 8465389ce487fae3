package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// BenchmarkEventPath measures one triggered event from the receiver's
// handler (decode, dedup, queue) through a worker (started, a no-op action,
// finished) to delivery over keep-alive HTTP to a loopback sink, with
// parallel senders each waiting for their finished event.
func BenchmarkEventPath(b *testing.B) {
	var waiters sync.Map
	sink := &eventsink.Sink{OnEvent: func(ev eventsink.Event) {
		if ev.Type == keptnevent.FinishedType {
			if ch, ok := waiters.LoadAndDelete(ev.TriggeredID); ok {
				close(ch.(chan struct{}))
			}
		}
	}}
	srv := httptest.NewServer(sink)
	defer srv.Close()

	cfg := testConfig()
	cfg.EventBroker = srv.URL
	cfg.Workers, cfg.QueueSize, cfg.DedupCapacity = 32, 1024, 100_000
	var reg action.Registry
	_ = reg.Register("scale", testsupport.Passes("dry run: would scale deployment sockshop-production/carts from 1 to 2 replicas"))
	log := logrus.New()
	log.SetOutput(&bytes.Buffer{})
	log.SetLevel(logrus.WarnLevel)
	p, in := assemble(cfg, &reg, nil, log)
	if err := p.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	handler := in.srv.Handler

	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 senders on 2 cores, as in bench-load
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("bench-", seq.Add(1))
			ch := make(chan struct{})
			waiters.Store(id, ch)
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(trigger(id, "scale", map[string]string{"replicas": "+1"})))
			req.Header.Set("Content-Type", "application/cloudevents+json")
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("answer %d: %s", rec.Code, rec.Body)
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				b.Fatalf("no finished event for %s", id)
			}
		}
	})
}

// BenchmarkDecode is the receiver's share of the path: one real payload.
func BenchmarkDecode(b *testing.B) {
	body := trigger("bench", "scale", map[string]string{"replicas": "+1"})
	h := http.Header{"Content-Type": {"application/cloudevents+json"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keptnevent.Decode(h, body); err != nil {
			b.Fatal(err)
		}
	}
}

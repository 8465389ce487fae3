package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// floorCommand, as the first argument, makes this binary the floor: the
// least any provider has to do per event, measured like the provider. It
// reads RCV_HOST, RCV_PORT, OPS_PORT and EVENTBROKER as the provider does.
const floorCommand = "floor-receiver"

// floorEvent is what the floor reads of a triggered event and writes of
// its replies.
type floorEvent struct {
	SpecVersion  string    `json:"specversion"`
	ID           string    `json:"id"`
	Source       string    `json:"source"`
	Type         string    `json:"type"`
	ContentType  string    `json:"datacontenttype"`
	KeptnContext string    `json:"shkeptncontext"`
	KeptnSpec    string    `json:"shkeptnspecversion"`
	TriggeredID  string    `json:"triggeredid"`
	Data         floorData `json:"data"`
}

type floorData struct {
	Project string            `json:"project"`
	Stage   string            `json:"stage"`
	Service string            `json:"service"`
	Labels  map[string]string `json:"labels,omitempty"`
	Status  string            `json:"status,omitempty"`
	Result  string            `json:"result,omitempty"`
}

func floorMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runFloor(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	return 0
}

// runFloor decodes each triggered event, answers 202, and POSTs started
// then finished to EVENTBROKER on a pooled client, until ctx ends.
func runFloor(ctx context.Context) error {
	rcv, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("RCV_HOST"), os.Getenv("RCV_PORT")))
	if err != nil {
		return err
	}
	ops, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("OPS_PORT")))
	if err != nil {
		rcv.Close()
		return err
	}
	f := &floor{broker: os.Getenv("EVENTBROKER"), client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
		Timeout:   10 * time.Second,
	}}
	// Ready as soon as it listens: there is nothing else to wait for.
	ready := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	servers := []*http.Server{{Handler: http.HandlerFunc(f.receive(ctx))}, {Handler: ready}}
	errs := make(chan error, len(servers))
	for i, ln := range []net.Listener{rcv, ops} {
		go func() { errs <- servers[i].Serve(ln) }()
	}
	pending := len(servers)
	select {
	case <-ctx.Done():
	case err = <-errs: // a server failed: stop the other
		pending--
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	for ; pending > 0; pending-- {
		<-errs // http.ErrServerClosed
	}
	f.replies.Wait()
	return err
}

type floor struct {
	broker  string
	client  *http.Client
	replies sync.WaitGroup
	seq     atomic.Int64
}

func (f *floor) receive(ctx context.Context) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var ev floorEvent
		err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev)
		if err != nil || ev.Type != triggeredType || ev.ID == "" {
			http.Error(w, "not an action.triggered event", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		f.replies.Go(func() { f.reply(ctx, ev) })
	}
}

// reply POSTs started, then finished.
func (f *floor) reply(ctx context.Context, triggered floorEvent) {
	for _, step := range []struct{ typ, status, result string }{
		{startedType, "", ""},
		{finishedType, "succeeded", "pass"},
	} {
		ev := floorEvent{
			SpecVersion: "1.0", ID: "floor-" + strconv.FormatInt(f.seq.Add(1), 10), Source: "bench-load-floor",
			Type: step.typ, ContentType: "application/json", KeptnContext: triggered.KeptnContext,
			KeptnSpec: triggered.KeptnSpec, TriggeredID: triggered.ID, Data: triggered.Data,
		}
		ev.Data.Status, ev.Data.Result = step.status, step.result
		if err := f.post(ctx, ev); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			return
		}
	}
}

func (f *floor) post(ctx context.Context, ev floorEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.broker, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", ev.Type, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post %s: the broker answered %d", ev.Type, resp.StatusCode)
	}
	return nil
}

// Package eventsink is an event broker endpoint that accepts what the Keptn
// distributor's /event endpoint accepts (structured-mode CloudEvents of at
// most 64 KiB, with a type) and records or hands on what it receives. Tests,
// the demo and the load tool use it in place of a distributor.
package eventsink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
)

// DistributorMaxBytes is the distributor's default payload cap
// (API_PROXY_MAX_PAYLOAD_BYTES_KB=64).
const DistributorMaxBytes = 64 << 10

// Event is one received event, with the Keptn fields tests look at.
type Event struct {
	Type         string            `json:"type"`
	ID           string            `json:"id"`
	Source       string            `json:"source"`
	SpecVersion  string            `json:"specversion"`
	KeptnContext string            `json:"shkeptncontext"`
	TriggeredID  string            `json:"triggeredid"`
	GitCommitID  string            `json:"gitcommitid"`
	KeptnSpec    string            `json:"shkeptnspecversion"`
	Data         keptnv2.EventData `json:"data"`
	Raw          []byte            `json:"-"`
}

// Sink is an http.Handler. Its zero value records every accepted event.
type Sink struct {
	// OnEvent, when set, receives each accepted event instead of the
	// record; it must be safe for concurrent use.
	OnEvent func(Event)
	// Refuse, when set, is asked before each event is accepted: a non-zero
	// status is answered instead, as a failing broker would.
	Refuse func() int

	mu      sync.Mutex
	events  []Event
	refused []string
	changed chan struct{}
}

// ServeHTTP accepts one structured-mode event. Like the distributor's
// /event endpoint, it takes any method, reads the body as a structured-mode
// event whatever the headers say, and answers every refusal with a bare 500
// (a body over 64 KiB included); the reason goes only to the sink's caller
// through Refused.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.Refuse != nil {
		if code := s.Refuse(); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, DistributorMaxBytes))
	if err != nil {
		s.refuse(w, fmt.Sprintf("body over %d bytes", DistributorMaxBytes))
		return
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		s.refuse(w, "invalid event: "+err.Error())
		return
	}
	// A binary-mode event reaches it without specversion in its body.
	if ev.SpecVersion == "" || ev.Type == "" || ev.ID == "" {
		s.refuse(w, "missing specversion, type or id (only structured mode is read)")
		return
	}
	ev.Raw = body
	if s.OnEvent != nil {
		s.OnEvent(ev)
	} else {
		s.record(ev)
	}
	w.WriteHeader(http.StatusOK)
}

// refuse answers a bare 500, as the distributor does, and keeps the reason.
func (s *Sink) refuse(w http.ResponseWriter, reason string) {
	s.mu.Lock()
	s.refused = append(s.refused, reason)
	s.mu.Unlock()
	w.WriteHeader(http.StatusInternalServerError)
}

// Refused lists why each refused event was refused.
func (s *Sink) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

func (s *Sink) record(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Events returns a copy of the recorded events, in arrival order.
func (s *Sink) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// For returns the recorded events answering one triggered event.
func (s *Sink) For(triggeredID string) []Event {
	var out []Event
	for _, ev := range s.Events() {
		if ev.TriggeredID == triggeredID {
			out = append(out, ev)
		}
	}
	return out
}

// Await blocks until done, given the recorded events, returns true, or ctx
// ends; it then returns the events it last saw.
func (s *Sink) Await(ctx context.Context, done func([]Event) bool) ([]Event, error) {
	for {
		s.mu.Lock()
		events := append([]Event(nil), s.events...)
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		if done(events) {
			return events, nil
		}
		select {
		case <-ctx.Done():
			return events, fmt.Errorf("waiting for events (%d received): %w", len(events), ctx.Err())
		case <-changed:
		}
	}
}

// AwaitFinished waits for the finished event answering triggeredID.
func (s *Sink) AwaitFinished(ctx context.Context, triggeredID string) (Event, error) {
	events, err := s.Await(ctx, func(evs []Event) bool { return finished(evs, triggeredID) != nil })
	if err != nil {
		return Event{}, fmt.Errorf("no finished event for %s: %w", triggeredID, err)
	}
	return *finished(events, triggeredID), nil
}

func finished(evs []Event, triggeredID string) *Event {
	for i := range evs {
		if evs[i].TriggeredID == triggeredID && evs[i].Type == keptnv2.GetFinishedEventType(keptnv2.ActionTaskName) {
			return &evs[i]
		}
	}
	return nil
}

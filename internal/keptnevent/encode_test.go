package keptnevent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
)

// wire is a sent event as the distributor and shipyard-controller read it.
type wire struct {
	SpecVersion     string            `json:"specversion"`
	ID              string            `json:"id"`
	Source          string            `json:"source"`
	Type            string            `json:"type"`
	Time            time.Time         `json:"time"`
	DataContentType string            `json:"datacontenttype"`
	KeptnContext    string            `json:"shkeptncontext"`
	TriggeredID     string            `json:"triggeredid"`
	GitCommitID     string            `json:"gitcommitid"`
	KeptnSpec       string            `json:"shkeptnspecversion"`
	Data            keptnv2.EventData `json:"data"`
}

func decodeWire(t *testing.T, o Outgoing) wire {
	t.Helper()
	// What we send must be a valid CloudEvent by the SDK's own reading.
	var ev event.Event
	if err := ev.UnmarshalJSON(o.Body); err != nil {
		t.Fatalf("the SDK cannot read the sent event: %v\n%s", err, o.Body)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("the SDK finds the sent event invalid: %v\n%s", err, o.Body)
	}
	if ev.ID() != o.ID || ev.Type() != o.Type {
		t.Errorf("SDK reads id/type %q/%q, want %q/%q", ev.ID(), ev.Type(), o.ID, o.Type)
	}
	var w wire
	if err := json.Unmarshal(o.Body, &w); err != nil {
		t.Fatalf("sent event is not JSON: %v\n%s", err, o.Body)
	}
	if w.ID != o.ID || w.Type != o.Type {
		t.Errorf("Outgoing says %s/%s, body says %s/%s", o.ID, o.Type, w.ID, w.Type)
	}
	return w
}

func triggered(t *testing.T) Triggered {
	t.Helper()
	tr, err := Decode(ceJSON, example(t, "01-scale-up.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestStartedAndFinishedCarryTheTriggeredContext(t *testing.T) {
	tr := triggered(t)
	at := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	r := Replier{Source: "action-provider", MaxBytes: 64 << 10, Now: func() time.Time { return at }}
	started, err := r.Started(tr)
	if err != nil {
		t.Fatal(err)
	}
	finished, err := r.Finished(tr, keptnv2.StatusSucceeded, keptnv2.ResultPass, "scaled deployment sockshop-production/carts from 1 to 2 replicas")
	if err != nil {
		t.Fatal(err)
	}
	s, f := decodeWire(t, started), decodeWire(t, finished)
	for _, c := range []struct {
		w    wire
		typ  string
		kind string
	}{{s, StartedType, "started"}, {f, FinishedType, "finished"}} {
		w := c.w
		if w.Type != c.typ || w.SpecVersion != "1.0" || w.Source != "action-provider" || !w.Time.Equal(at) {
			t.Errorf("%s: type/specversion/source/time = %q %q %q %v", c.kind, w.Type, w.SpecVersion, w.Source, w.Time)
		}
		if w.TriggeredID != tr.ID || w.KeptnContext != tr.KeptnContext || w.GitCommitID != tr.GitCommitID || w.KeptnSpec != "0.2.4" {
			t.Errorf("%s: triggeredid/shkeptncontext/gitcommitid/shkeptnspecversion = %q %q %q %q", c.kind, w.TriggeredID, w.KeptnContext, w.GitCommitID, w.KeptnSpec)
		}
		if w.DataContentType != "application/json" {
			t.Errorf("%s: datacontenttype = %q", c.kind, w.DataContentType)
		}
		d := w.Data
		if d.Project != "sockshop" || d.Stage != "production" || d.Service != "carts" || d.Labels["buildId"] != "build-17" {
			t.Errorf("%s: data = %+v", c.kind, d)
		}
	}
	if s.ID == f.ID || s.ID == tr.ID {
		t.Errorf("event ids must be new and distinct: started %s, finished %s, triggered %s", s.ID, f.ID, tr.ID)
	}
	if s.Data.Status != "" || s.Data.Result != "" {
		t.Errorf("started carries status/result %q/%q", s.Data.Status, s.Data.Result)
	}
	if f.Data.Status != keptnv2.StatusSucceeded || f.Data.Result != keptnv2.ResultPass ||
		f.Data.Message != "scaled deployment sockshop-production/carts from 1 to 2 replicas" {
		t.Errorf("finished data = %+v", f.Data)
	}
}

func TestFinishedStaysUnderTheLimit(t *testing.T) {
	tr := triggered(t)
	const limit = 8 << 10
	for _, msg := range []string{
		strings.Repeat("x", 100<<10),
		strings.Repeat("ü", 50<<10),    // two bytes each: never cut inside one
		strings.Repeat(`"<>&`, 20<<10), // escaped to longer JSON
		"short and sweet",
	} {
		r := Replier{Source: "p", MaxBytes: limit}
		out, err := r.Finished(tr, keptnv2.StatusErrored, keptnv2.ResultFailed, msg)
		if err != nil {
			t.Fatalf("Finished: %v", err)
		}
		if len(out.Body) > limit {
			t.Errorf("event is %d bytes, over %d", len(out.Body), limit)
		}
		w := decodeWire(t, out)
		if !utf8.ValidString(w.Data.Message) {
			t.Errorf("message is not valid UTF-8 after truncation")
		}
		if len(msg) > limit {
			// Cut, marked, and still filling most of the room left.
			if !strings.HasSuffix(w.Data.Message, truncatedMark) || encodedLen(w.Data.Message) < limit*3/4 {
				t.Errorf("long message should be cut, marked, and still substantial; got %d encoded bytes ending %q",
					encodedLen(w.Data.Message), w.Data.Message[max(0, len(w.Data.Message)-20):])
			}
		} else if w.Data.Message != msg {
			t.Errorf("short message changed: %q", w.Data.Message)
		}
		if w.TriggeredID != tr.ID || w.KeptnContext != tr.KeptnContext || w.Data.Project != "sockshop" {
			t.Errorf("truncation lost identifying fields: %+v", w)
		}
	}
}

func TestFinishedThatCannotFitIsAnError(t *testing.T) {
	tr := triggered(t)
	tr.Data.Labels = map[string]string{"huge": strings.Repeat("l", 10<<10)}
	_, err := Replier{Source: "p", MaxBytes: 4 << 10}.Finished(tr, keptnv2.StatusErrored, keptnv2.ResultFailed, "boom")
	if err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("err = %v, want an over-the-limit error", err)
	}
}

// encodedLen is the length of s as a JSON string, without the quotes.
func encodedLen(s string) int {
	b, _ := json.Marshal(s) // a string always encodes
	return len(b) - 2
}

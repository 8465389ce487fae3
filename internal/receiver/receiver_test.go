package receiver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
)

// submitter answers with a fixed disposition, or, for Busy, waits for ctx
// as the lifecycle waits for room in a full queue.
type submitter struct {
	d        intake.Disposition
	deadline time.Duration // how long Submit's ctx had, seen on the last call
}

func (s *submitter) Submit(ctx context.Context, _ keptnevent.Triggered) intake.Disposition {
	if dl, ok := ctx.Deadline(); ok {
		s.deadline = time.Until(dl)
	}
	if s.d == intake.Busy {
		<-ctx.Done()
	}
	return s.d
}

const valid = `{"specversion":"1.0","id":"e1","source":"shipyard-controller","type":"sh.keptn.event.action.triggered",` +
	`"shkeptncontext":"c1","data":{"project":"p","stage":"s","service":"carts","action":{"action":"scale","value":1}}}`

func TestServeHTTP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		body    string
		d       intake.Disposition
		code    int
		says    string
		outcome string
	}{
		{"accepted", http.MethodPost, valid, intake.Accepted, 202, "accepted", metrics.Accepted},
		{"unknown action", http.MethodPost, valid, intake.Unknown, 200, `ignored: no handler for action "scale"`, metrics.UnknownAction},
		{"duplicate", http.MethodPost, valid, intake.Duplicate, 200, "ignored: duplicate", metrics.Duplicate},
		{"unanswerable", http.MethodPost, valid, intake.Unanswerable, 200, "rejected: its finished event would be larger than MAX_EVENT_BYTES", metrics.Unanswerable},
		{"queue stayed full", http.MethodPost, valid, intake.Busy, 503, "busy", metrics.Busy},
		{"draining", http.MethodPost, valid, intake.Draining, 503, "shutting down", metrics.Draining},
		// Never a 4xx for an event no retry can mend: the distributor
		// re-POSTs it three times and holds every other event meanwhile.
		{"malformed", http.MethodPost, `{"id": `, intake.Accepted, 200, "rejected: malformed JSON body", metrics.Invalid},
		{"trailing data", http.MethodPost, valid + `{}`, intake.Accepted, 200, "rejected: ", metrics.Invalid},
		{"too large", http.MethodPost, valid + strings.Repeat(" ", 4096), intake.Accepted, 200, "rejected: body larger than 2048 bytes", metrics.TooLarge},
		{"not a POST", http.MethodGet, "", intake.Accepted, 405, "only POST", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			log := logrus.New()
			log.SetOutput(io.Discard)
			s := &submitter{d: tc.d}
			rc := &Receiver{Submitter: s, MaxBodyBytes: 2048, QueueWait: 20 * time.Millisecond, Log: log, Metrics: m}
			w := httptest.NewRecorder()
			rc.ServeHTTP(w, httptest.NewRequest(tc.method, "/", bytes.NewBufferString(tc.body)))
			body := strings.TrimSpace(w.Body.String())
			if w.Code != tc.code || !strings.Contains(body, tc.says) || strings.Contains(body, "\n") {
				t.Errorf("answer %d %q; want %d saying %q on one line", w.Code, body, tc.code, tc.says)
			}
			if tc.outcome != "" {
				typ := keptnevent.TriggeredType
				if tc.outcome == metrics.Invalid || tc.outcome == metrics.TooLarge {
					typ = ""
				}
				if got := testutil.ToFloat64(m.EventsReceived.WithLabelValues(typ, tc.outcome)); got != 1 {
					t.Errorf("events_received_total{outcome=%q} = %v, want 1", tc.outcome, got)
				}
			}
		})
	}
}

// A full queue is waited out for QueueWait, and no longer: the distributor's
// 5 s for all its attempts must leave room for a retry.
func TestFullQueueWaitsQueueWait(t *testing.T) {
	for _, tc := range []struct {
		set, want time.Duration
	}{{0, DefaultQueueWait}, {300 * time.Millisecond, 300 * time.Millisecond}} {
		s := &submitter{d: intake.Accepted}
		rc := &Receiver{Submitter: s, MaxBodyBytes: 1 << 20, QueueWait: tc.set, Log: logrus.New(), Metrics: metrics.New(prometheus.NewRegistry())}
		rc.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", strings.NewReader(valid)))
		if s.deadline > tc.want || s.deadline < tc.want/2 {
			t.Errorf("QueueWait %s: Submit had %s, want about %s", tc.set, s.deadline, tc.want)
		}
	}
}

package main

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

func TestMakePlan(t *testing.T) {
	p, err := makePlan(50, 200, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.events) != 200 || len(p.targets) != 50 {
		t.Fatalf("%d events on %d targets, want 200 on 50", len(p.events), len(p.targets))
	}
	shapes := map[shape]int{}
	actions := map[string]int{}
	for _, tg := range p.targets {
		shapes[tg.shape]++
		kinds := map[string]bool{}
		for _, i := range tg.events {
			kinds[p.events[i].action] = true
		}
		switch {
		case tg.shape == single && len(tg.events) != 1,
			tg.shape != single && len(tg.events) < 2,
			tg.shape == mixed && len(kinds) != 2,
			tg.shape != mixed && len(kinds) != 1:
			t.Errorf("%s (%s): %d events, actions %v", tg.name, tg.shape, len(tg.events), kinds)
		}
	}
	for _, ev := range p.events {
		actions[ev.action]++
	}
	if shapes[single] != 10 || shapes[scaleOnly] != 20 || shapes[restartOnly] != 10 || shapes[mixed] != 10 {
		t.Errorf("shapes %v", shapes)
	}
	if actions["scale"]+actions["restart"] != 200 || actions["scale"] == 0 || actions["restart"] == 0 {
		t.Errorf("actions %v", actions)
	}
	sent := 0
	for _, s := range p.senders {
		sent += len(s)
		if len(s) != 50 {
			t.Errorf("a sender has %d events, want 50", len(s))
		}
	}
	if sent != 200 {
		t.Errorf("senders send %d events", sent)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP apiserver_request_total x
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",verb="GET",resource="pods"} 10
apiserver_request_total{code="201",verb="POST",resource="leases",odd="a\"b,c"} 5
apiserver_request_totally_else 99
process_cpu_seconds_total 3
apiserver_flowcontrol_dispatched_requests_total{flow_schema="bench-storm-provider",priority_level="workload-low"} 7 1700000000
`
	s, err := parseMetrics([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.sum("apiserver_request_total", nil); got != 15 {
		t.Errorf("apiserver_request_total = %g, want 15", got)
	}
	if got := s.sum("apiserver_request_total", func(l map[string]string) bool { return l["odd"] == `a"b,c` }); got != 5 {
		t.Errorf("escaped label: %g, want 5", got)
	}
	if got := s.sum("apiserver_flowcontrol_dispatched_requests_total", func(l map[string]string) bool { return l["flow_schema"] == flowSchema }); got != 7 {
		t.Errorf("dispatched = %g, want 7", got)
	}
	if len(s) != 3 {
		t.Errorf("kept %d series, want 3", len(s))
	}
}

func TestHistogramQuantile(t *testing.T) {
	series := func(counts ...float64) snapshot {
		les := []string{"0.1", "0.2", "0.4", "+Inf"}
		var s snapshot
		for i, c := range counts {
			s = append(s, sample{name: "h_bucket", labels: map[string]string{"le": les[i]}, value: c})
		}
		return append(s, sample{name: "h_count", value: counts[len(counts)-1]}, sample{name: "h_sum", value: counts[len(counts)-1] * 0.15})
	}
	before := series(5, 5, 5, 5)
	after := series(55, 105, 105, 105) // +50 under 0.1, +50 in (0.1, 0.2]
	h := histogramDelta(before, after, "h", nil)
	if h.count != 100 {
		t.Fatalf("count %g", h.count)
	}
	if q := h.quantile(0.5); math.Abs(q-0.1) > 1e-9 {
		t.Errorf("p50 = %g, want 0.1", q)
	}
	if q := h.quantile(0.75); math.Abs(q-0.15) > 1e-9 {
		t.Errorf("p75 = %g, want 0.15", q)
	}
	if q := (histogram{}).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("empty: %g, want NaN", q)
	}
}

func TestRates(t *testing.T) {
	t0 := time.Unix(0, 0)
	// A token bucket of 10/s and burst 20: 20 at once, then 10 a second.
	s := []dispatched{{t0, 0}, {t0.Add(100 * time.Millisecond), 20}}
	for i := 1; i <= 5; i++ {
		s = append(s, dispatched{t0.Add(100*time.Millisecond + time.Duration(i)*time.Second), 20 + 10*float64(i)})
	}
	f := rates(s, 10)
	if f.excess < 18 || f.excess > 20 {
		t.Errorf("excess %g, want the burst, about 19", f.excess)
	}
	if f.peak1s < 19 || f.peak1s > 30 {
		t.Errorf("busiest second %g", f.peak1s)
	}
}

func TestDispatchedOf(t *testing.T) {
	dump := "PriorityLevelName, ActiveQueues, IsIdle, IsQuiescing, WaitingRequests, ExecutingRequests, DispatchedRequests, RejectedRequests\n" +
		"exempt,            0,            true,   false,       0,               0,                 42,                 0\n" +
		"workload-low,      0,            true,   false,       0,               1,                 17,                 0\n"
	if n, err := dispatchedOf([]byte(dump), "workload-low"); err != nil || n != 17 {
		t.Errorf("= %g, %v; want 17", n, err)
	}
	if _, err := dispatchedOf([]byte(dump), "global-default"); err == nil {
		t.Error("a missing row is no error")
	}
}

// TestJudge: a storm's events as the provider would answer them pass; a
// second pass within the cooldown, a refusal naming no pass, a missing
// finished event and a scale the API server does not show are caught.
func TestJudge(t *testing.T) {
	p, err := makePlan(5, 8, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	answers := make([]posted, len(p.events))
	for i := range answers {
		answers[i] = posted{at: time.Now(), code: http.StatusAccepted}
	}
	// The first event of each target passes; the others are refused by
	// the lock it holds.
	got := map[string][]received{}
	states := map[string]targetState{}
	for _, tg := range p.targets {
		ref := "deployment " + targetNamespace + "/" + tg.name
		first := p.events[tg.events[0]]
		st := targetState{replicas: 2}
		for n, i := range tg.events {
			ev := p.events[i]
			msg := fmt.Sprintf("refused (one action at a time per target): %s is busy: action %s (triggeredid %s) has been running on it since 2026-01-01T00:00:00Z", ref, first.action, first.id)
			if n == 0 {
				if ev.action == "scale" {
					msg = "scaled " + ref + " from 2 to 3 replicas; rollout converged in 1s: 3/3 pods ready"
					st.replicas = 3
				} else {
					msg = "restarted " + ref + " (never restarted); rollout converged in 1s: 2/2 pods ready"
					st.restartedAt = "2026-01-01T00:00:00Z"
				}
			}
			result := keptnv2.ResultFailed
			if n == 0 {
				result = keptnv2.ResultPass
			}
			got[ev.id] = []received{
				{time.Now(), eventsink.Event{Type: keptnevent.StartedType, TriggeredID: ev.id, KeptnContext: "ctx-" + ev.id, Data: keptnv2.EventData{Service: tg.name}}},
				{time.Now(), eventsink.Event{Type: keptnevent.FinishedType, TriggeredID: ev.id, KeptnContext: "ctx-" + ev.id,
					Data: keptnv2.EventData{Service: tg.name, Status: keptnv2.StatusSucceeded, Result: result, Message: msg}}},
			}
		}
		states[tg.name] = st
	}
	if v := judge(p, answers, got, states, 2); len(v.problems) != 0 {
		t.Fatalf("problems with a good storm:\n%s", strings.Join(v.problems, "\n"))
	}

	// Break it: the API server lost a scale, and an event has no finished.
	var scaled, other string
	for _, tg := range p.targets {
		if p.events[tg.events[0]].action == "scale" && scaled == "" {
			scaled = tg.name
		} else if len(tg.events) > 1 && other == "" {
			other = p.events[tg.events[1]].id
		}
	}
	states[scaled] = targetState{replicas: 2}
	got[other] = got[other][:1]
	v := judge(p, answers, got, states, 2)
	joined := strings.Join(v.problems, "\n")
	if !strings.Contains(joined, scaled+": spec.replicas 2") || !strings.Contains(joined, other) {
		t.Errorf("problems do not name the lost scale of %s and the missing finished of %s:\n%s", scaled, other, joined)
	}
}

func TestHeartbeatFigures(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	beats := []beat{
		{renew: at(-1), seen: at(-0.9)},            // before the storm: the anchor
		{renew: at(1), seen: at(3.5)},              // landed 2.5 s late: 4.5 s after the anchor
		{renew: at(3), seen: at(3.1)},              // on time
		{renew: at(5), seen: at(5.1)},              // the last one
		{renew: at(20), seen: at(20), added: true}, // after the storm: ignored
	}
	var r report
	r.heartbeatFigures(beats, t0, at(6), 2*time.Second)
	if r.Heartbeats != 3 || r.HeartbeatGapMs != 2000 || r.HeartbeatLagMs != 2500 || r.HeartbeatLapseMs != 4500 {
		t.Errorf("renewals %d, gap %g, lag %g, closest %g; want 3, 2000, 2500, 4500", r.Heartbeats, r.HeartbeatGapMs, r.HeartbeatLagMs, r.HeartbeatLapseMs)
	}
	if r.failed() {
		t.Errorf("a heartbeat 1.5 s short of lapsing failed: %v", r.Checks)
	}
	// No renewal for 7 s at the end: lapsed.
	r = report{}
	r.heartbeatFigures(beats[:2], t0, at(8), 2*time.Second)
	if !r.failed() {
		t.Errorf("a heartbeat 7 s old passed: %v", r.Checks)
	}
}

func TestThrottled(t *testing.T) {
	var r report
	r.throttled(`{"level":"info","msg":"action finished"}
I1207 12:12:13.766433    8596 request.go:754] "Waited before sending request" delay="1.001515854s" reason="client-side throttling, not priority and fairness" verb="GET"
I1207 12:12:23.785974    8596 request.go:754] "Waited before sending request" delay="1.3s" reason="client-side throttling, not priority and fairness" verb="POST"
`)
	if r.ThrottleLogLines != 2 || r.ThrottleMaxMs != 1300 {
		t.Errorf("%d lines, longest %g ms; want 2, 1300", r.ThrottleLogLines, r.ThrottleMaxMs)
	}
}

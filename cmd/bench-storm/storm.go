package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
)

// received is one event the provider sent, as the sink got it.
type received struct {
	at time.Time
	ev eventsink.Event
}

// recorder keeps what the sink receives, by triggered id.
type recorder struct {
	mu       sync.Mutex
	byID     map[string][]received
	finished map[string]bool
	last     time.Time // the latest finished event
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{byID: map[string][]received{}, finished: map[string]bool{}, changed: make(chan struct{})}
}

func (r *recorder) add(ev eventsink.Event) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[ev.TriggeredID] = append(r.byID[ev.TriggeredID], received{now, ev})
	if ev.Type == keptnevent.FinishedType {
		r.finished[ev.TriggeredID] = true
		r.last = now
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// awaitFinished waits until every id in ids has a finished event, or ctx
// ends; it returns when the last of them arrived.
func (r *recorder) awaitFinished(ctx context.Context, ids []string) (time.Time, error) {
	for {
		r.mu.Lock()
		missing := 0
		for _, id := range ids {
			if !r.finished[id] {
				missing++
			}
		}
		last, changed := r.last, r.changed
		r.mu.Unlock()
		if missing == 0 {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("%d of %d events have no finished event: %w", missing, len(ids), ctx.Err())
		case <-changed:
		}
	}
}

func (r *recorder) snapshot() map[string][]received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]received, len(r.byID))
	for id, evs := range r.byID {
		out[id] = append([]received(nil), evs...)
	}
	return out
}

// posted is how the provider answered one triggered event.
type posted struct {
	at     time.Time // when the POST began
	code   int
	answer string
	err    error
}

// send has each sender POST its events one after the other, all senders
// starting together, each POST on a new TCP connection and within 5 s, as
// the distributor forwards events.
func send(ctx context.Context, p plan, url string) []posted {
	out := make([]posted, len(p.events))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, events := range p.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			defer client.CloseIdleConnections()
			<-start
			for _, i := range events {
				out[i] = post(ctx, client, url, p.events[i].body)
			}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func post(ctx context.Context, c *http.Client, url string, body []byte) posted {
	res := posted{at: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		res.err = err
		return res
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := c.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	res.code, res.answer = resp.StatusCode, strings.TrimSpace(string(b))
	return res
}

// outcome is what became of one event.
type outcome struct {
	started, finished time.Time
	status            keptnv2.StatusType
	result            keptnv2.ResultType
	message           string
	kind              string // pass, lock, cooldown or other
}

// Refusals name the rule and, for the lock and the cooldown, the event
// that holds the target or last changed it (internal/ledger).
var (
	lockRefusal     = regexp.MustCompile(`^refused \(` + regexp.QuoteMeta(ledger.RuleLock) + `\): deployment \S+ is busy: action (\S+) \(triggeredid ([^)\s]+)\)`)
	cooldownRefusal = regexp.MustCompile(`^refused \(` + regexp.QuoteMeta(ledger.RuleCooldown) + `\): (\S+) changed deployment \S+ .* \(triggeredid ([^)\s]+)\)`)
)

// verdict is the check of the events the sink received against the plan
// and the API server's state.
type verdict struct {
	problems []string
	outcomes map[string]outcome
	passes   map[string]int // by action
	refused  map[string]int // by rule: lock, cooldown
}

func (v *verdict) problem(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

// judge checks, for every accepted event, exactly one started then exactly
// one finished; that every refusal is the lock's or the cooldown's and
// names a pass of the same Deployment (of the same action, for the
// cooldown); that each Deployment has the passes its shape allows; and
// that the API server shows each pass's effect and nothing else.
func judge(p plan, answers []posted, got map[string][]received, states map[string]targetState, replicas int32) verdict {
	v := verdict{outcomes: map[string]outcome{}, passes: map[string]int{}, refused: map[string]int{}}
	planned := map[string]int{}
	for i, ev := range p.events {
		planned[ev.id] = i
	}
	for id := range got {
		if _, ok := planned[id]; !ok {
			v.problem("events for triggered id %q, which was never sent", id)
		}
	}
	for i, ev := range p.events {
		if answers[i].code != http.StatusAccepted {
			continue // reported with the POSTs
		}
		evs := got[ev.id]
		if len(evs) != 2 || evs[0].ev.Type != keptnevent.StartedType || evs[1].ev.Type != keptnevent.FinishedType {
			types := make([]string, len(evs))
			for j, r := range evs {
				types[j] = strings.TrimPrefix(r.ev.Type, "sh.keptn.event.action.")
			}
			v.problem("%s (%s on %s): received %v, want exactly one started then one finished", ev.id, ev.action, p.targets[ev.target].name, types)
			continue
		}
		for _, r := range evs {
			if r.ev.KeptnContext != "ctx-"+ev.id || r.ev.Data.Service != p.targets[ev.target].name {
				v.problem("%s: %s has context %q and service %q", ev.id, r.ev.Type, r.ev.KeptnContext, r.ev.Data.Service)
			}
		}
		fin := evs[1].ev.Data
		v.outcomes[ev.id] = outcome{started: evs[0].at, finished: evs[1].at, status: fin.Status, result: fin.Result, message: fin.Message}
	}

	for _, t := range p.targets {
		ref := "deployment " + targetNamespace + "/" + t.name
		passes := map[string]string{} // action → its passing event
		for _, i := range t.events {
			ev := p.events[i]
			o, ok := v.outcomes[ev.id]
			if !ok {
				continue
			}
			switch {
			case o.status == keptnv2.StatusSucceeded && o.result == keptnv2.ResultPass:
				o.kind = "pass"
				want := fmt.Sprintf("scaled %s from %d to %d replicas; rollout converged in ", ref, replicas, replicas+1)
				if ev.action == "restart" {
					want = "restarted " + ref + " (never restarted); rollout converged in "
				}
				if !strings.HasPrefix(o.message, want) {
					v.problem("%s (%s on %s) passed with %q, want it to start %q", ev.id, ev.action, t.name, o.message, want)
				}
				if prev, dup := passes[ev.action]; dup {
					v.problem("%s: %s passed twice on %s (%s and %s), within the cooldown", t.name, ev.action, t.name, prev, ev.id)
				}
				passes[ev.action] = ev.id
				v.passes[ev.action]++
			case o.status == keptnv2.StatusSucceeded && o.result == keptnv2.ResultFailed && lockRefusal.MatchString(o.message):
				o.kind = "lock"
				v.refused["lock"]++
			case o.status == keptnv2.StatusSucceeded && o.result == keptnv2.ResultFailed && cooldownRefusal.MatchString(o.message):
				o.kind = "cooldown"
				v.refused["cooldown"]++
			default:
				o.kind = "other"
				v.problem("%s (%s on %s) finished %s/%s %q: neither a pass nor a refusal by the lock or the cooldown", ev.id, ev.action, t.name, o.status, o.result, o.message)
			}
			v.outcomes[ev.id] = o
		}
		// Each refusal names an event that passed on this Deployment.
		for _, i := range t.events {
			ev := p.events[i]
			o := v.outcomes[ev.id]
			var m []string
			switch o.kind {
			case "lock":
				m = lockRefusal.FindStringSubmatch(o.message)
			case "cooldown":
				m = cooldownRefusal.FindStringSubmatch(o.message)
				if m[1] != ev.action {
					v.problem("%s (%s on %s): refused by the cooldown of %s, another action", ev.id, ev.action, t.name, m[1])
				}
			default:
				continue
			}
			if passes[m[1]] != m[2] {
				v.problem("%s (%s on %s) was refused (%s) naming %s %s, which is not the %s that passed there (%q)", ev.id, ev.action, t.name, o.kind, m[1], m[2], m[1], passes[m[1]])
			}
		}

		counts := map[string]int{}
		for _, i := range t.events {
			counts[p.events[i].action]++
		}
		switch {
		case len(passes) == 0:
			v.problem("%s (%s): nothing passed; the first event to take its lock should have", t.name, t.shape)
		case t.shape != mixed && len(passes) != 1:
			v.problem("%s (%s): %d actions passed, want exactly 1", t.name, t.shape, len(passes))
		}
		for a := range counts {
			if t.shape != mixed && passes[a] == "" {
				v.problem("%s (%s): no %s passed", t.name, t.shape, a)
			}
		}

		st, ok := states[t.name]
		if !ok {
			v.problem("%s is not on the API server", t.name)
			continue
		}
		want := replicas
		if passes["scale"] != "" {
			want++
		}
		if st.replicas != want {
			v.problem("%s: spec.replicas %d on the API server, want %d (passes: %v)", t.name, st.replicas, want, passes)
		}
		if restarted := st.restartedAt != ""; restarted != (passes["restart"] != "") {
			v.problem("%s: restart annotation %q on the API server, but a restart passed: %v", t.name, st.restartedAt, passes["restart"] != "")
		}
	}
	return v
}

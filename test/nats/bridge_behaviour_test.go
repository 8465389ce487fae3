package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// request is one POST a recipient got from a bridge.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
}

// id is the id of the event the request carried.
func (r request) id() string {
	var ev struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(r.body, &ev)
	return ev.ID
}

// recipient stands for a provider's receiver: it records each request and
// answers it with answer(n, first, w, r), n counting requests from 1 and
// first the time of the first, or with 202. answer may hold the request.
type recipient struct {
	answer func(n int, first time.Time, w http.ResponseWriter, r *http.Request)

	mu        sync.Mutex
	requests  []request
	active    int // requests being answered
	maxActive int
}

func (rc *recipient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests = append(rc.requests, request{time.Now(), r.Header.Clone(), body})
	n, first := len(rc.requests), rc.requests[0].at
	rc.active++
	rc.maxActive = max(rc.maxActive, rc.active)
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.active--
		rc.mu.Unlock()
	}()
	if rc.answer == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	rc.answer(n, first, w, r)
}

func (rc *recipient) Requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.requests...)
}

// serve starts rc on 127.0.0.1 for the test.
func (rc *recipient) serve(t *testing.T) string {
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// holdUntil holds a request until at, or until the bridge gives up on it,
// then answers code. The bound keeps a broken bridge from hanging the test.
func holdUntil(r *http.Request, w http.ResponseWriter, at time.Time, code int) {
	select {
	case <-r.Context().Done():
	case <-time.After(min(time.Until(at), waitTimeout)):
	}
	w.WriteHeader(code)
}

// awaitForwards waits, bounded, until b has dealt with n messages.
func awaitForwards(ctx context.Context, t *testing.T, b *Bridge, n int, timeout time.Duration) []Forward {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		fw := b.Forwards()
		if len(fw) >= n {
			return fw
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the bridge dealt with %d messages within %s, want %d", len(fw), timeout, n)
		}
		sleep(ctx, 10*time.Millisecond)
	}
}

// settle waits, bounded, until each bridge is done with every message that
// nc had published before: nc's flush has the server route them, each
// bridge's flush has them in its subscription, and then nothing is pending
// and no goroutine waits or forwards.
func settle(ctx context.Context, t *testing.T, nc *natsgo.Conn, bridges ...*Bridge) {
	t.Helper()
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range bridges {
		if err := b.nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for _, b := range bridges {
		for !b.settled() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("the bridge is not done with its messages within %s", waitTimeout)
			}
			sleep(ctx, 10*time.Millisecond)
		}
	}
}

// checkPauses checks the gap before each re-POST against the distributor's
// pauses; slack allows for the answer before it and a loaded machine.
func checkPauses(t *testing.T, reqs []request, slack time.Duration) {
	t.Helper()
	for i := 1; i < len(reqs); i++ {
		lo, hi := retryPauseBounds(i)
		if gap := reqs[i].at.Sub(reqs[i-1].at); gap < lo || gap > hi+slack {
			t.Errorf("POST %d came %s after the one before, want %s to %s", i+1, gap.Round(time.Millisecond), lo, hi)
		}
	}
}

// TestBridgeBehavesLikeTheDistributor checks the bridge itself, against the
// behaviour of distributor 1.4.5 that the other tests rely on, with a
// recipient in place of the provider.
func TestBridgeBehavesLikeTheDistributor(t *testing.T) {
	requireSetup(t)
	t.Parallel()

	t.Run("structured mode, Keptn's four extensions only", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		rc := &recipient{}
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})

		// 03-unknown-action.json has no gitcommitid; an extension Keptn
		// does not know is dropped on the way.
		tr := newTrigger(t, "03-unknown-action.json", false)
		var ev map[string]any
		_ = json.Unmarshal(tr.Body, &ev)
		ev["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		delete(ev, "triggeredid")
		tr.Body, _ = json.Marshal(ev)
		publish(t, keptn, tr)
		awaitForwards(ctx, t, b, 1, waitTimeout)

		reqs := rc.Requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1", len(reqs))
		}
		r := reqs[0]
		if ct := r.header.Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("Content-Type %q, want application/cloudevents+json", ct)
		}
		for k := range r.header {
			if strings.HasPrefix(strings.ToLower(k), "ce-") {
				t.Errorf("header %s: structured mode has no ce-* headers", k)
			}
		}
		var got map[string]any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatalf("body: %v\n%s", err, r.body)
		}
		want := map[string]any{
			"specversion": "1.0", "id": tr.ID, "type": triggeredTopic, "source": "shipyard-controller",
			"datacontenttype": "application/json", "shkeptncontext": tr.KeptnContext,
			"shkeptnspecversion": "0.2.4", "triggeredid": "", "gitcommitid": "",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %#v, want %#v", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok && k != "time" && k != "data" {
				t.Errorf("attribute %s = %#v: the distributor keeps only Keptn's extensions", k, got[k])
			}
		}
		// And the provider reads it.
		if _, err := keptnevent.Decode(r.header, r.body); err != nil {
			t.Errorf("the provider's decoder refuses the forwarded event: %v", err)
		}
	})

	t.Run("replicas in a group split the events, another group gets a copy", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		var bridges []*Bridge
		for _, group := range []string{"a", "a", "b"} {
			rc := &recipient{}
			bridges = append(bridges, startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: group, Recipient: rc.serve(t)}))
		}
		const n = 30
		publish(t, keptn, newTriggers(t, n, 0)...)
		settle(ctx, t, keptn, bridges...)
		a1, a2, b1 := len(bridges[0].Forwards()), len(bridges[1].Forwards()), len(bridges[2].Forwards())
		t.Logf("group a: %d + %d, group b: %d", a1, a2, b1)
		if a1+a2 != n || a1 == 0 || a2 == 0 {
			t.Errorf("group a got %d + %d events, want %d split between its two members", a1, a2, n)
		}
		if b1 != n {
			t.Errorf("group b got %d events, want all %d", b1, n)
		}
	})

	t.Run("one at a time, every message taken at once, in no set order", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		held, release := make(chan struct{}), make(chan struct{})
		rc := &recipient{answer: func(n int, _ time.Time, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				close(held)
				select {
				case <-release:
				case <-r.Context().Done():
				case <-time.After(waitTimeout):
				}
			}
			w.WriteHeader(http.StatusAccepted)
		}}
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})
		const n = 40
		triggers := newTriggers(t, n, 0)
		publish(t, keptn, triggers...)
		// While the first POST is held, every other message has been taken
		// from NATS and waits for the mutex, and none is POSTed.
		select {
		case <-held:
		case <-time.After(waitTimeout):
			t.Fatalf("no POST within %s", waitTimeout)
		}
		deadline := time.Now().Add(waitTimeout)
		for b.Waiting() < n-1 {
			if time.Now().After(deadline) {
				t.Fatalf("%d messages wait for the mutex while the first POST is held, want %d", b.Waiting(), n-1)
			}
			sleep(ctx, 5*time.Millisecond)
		}
		if pending, _, _ := b.sub.Pending(); pending != 0 {
			t.Errorf("%d messages pending in the subscription, want none: each gets a goroutine at once", pending)
		}
		if got := len(rc.Requests()); got != 1 {
			t.Errorf("%d POSTs while the first is held, want 1", got)
		}
		close(release)
		settle(ctx, t, keptn, b)

		rc.mu.Lock()
		maxActive := rc.maxActive
		rc.mu.Unlock()
		if maxActive != 1 {
			t.Errorf("the recipient had %d POSTs at once, want 1", maxActive)
		}
		var got, want []string
		for _, r := range rc.Requests() {
			got = append(got, r.id())
		}
		for _, tr := range triggers {
			want = append(want, tr.ID)
		}
		inOrder := 0
		for i := range got {
			if got[i] == want[i] {
				inOrder++
			}
		}
		// The goroutines race for the mutex: the order is not kept, and
		// not required either way.
		t.Logf("%d of %d events POSTed in the position they were published in", inOrder, n)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("POSTed %d events, want each of the %d published once", len(got), n)
		}
	})

	t.Run("a non-2xx answer is re-POSTed up to 3 times within 5 s, Retry-After ignored", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		// Three groups: three forwards of one event at once, each with
		// pauses of its own.
		var rcs []*recipient
		var bridges []*Bridge
		for _, group := range []string{"a", "b", "c"} {
			rc := &recipient{answer: func(_ int, _ time.Time, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "60")
				w.WriteHeader(http.StatusServiceUnavailable)
			}}
			rcs = append(rcs, rc)
			bridges = append(bridges, startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: group, Recipient: rc.serve(t)}))
		}
		publish(t, keptn, newTrigger(t, "01-scale-up.json", true))
		settle(ctx, t, keptn, bridges...)
		for i, b := range bridges {
			f, reqs := b.Forwards()[0], rcs[i].Requests()
			checkPauses(t, reqs, 500*time.Millisecond)
			if len(reqs) == 0 {
				t.Fatalf("group %d: no POST", i)
			}
			first, last := reqs[0].at, reqs[len(reqs)-1].at
			if d := last.Sub(first); d >= sendTimeout {
				t.Errorf("POST %d came %s after the first, past the 5 s all attempts share", len(reqs), d.Round(time.Millisecond))
			}
			switch fmt.Sprint(f.Codes) {
			case "[503 503 503 503]":
				// The pauses were short enough for all 4 POSTs: one more
				// pause, then given up and logged.
				t.Logf("group %d: 4 POSTs in %s; given up %s after the last", i, last.Sub(first).Round(time.Millisecond), f.Done.Sub(last).Round(time.Millisecond))
				if len(reqs) != forwardRetries+1 || !f.GaveUp || !strings.Contains(f.Err.Error(), "could not send cloudevent after 3 retries") {
					t.Errorf("group %d: %d POSTs, %v, given up %t; want 4, given up", i, len(reqs), f.Err, f.GaveUp)
				}
				if lo, _ := retryPauseBounds(4); f.Done.Sub(last) < lo {
					t.Errorf("group %d: given up %s after the 4th POST, want a last pause of at least %s", i, f.Done.Sub(last), lo)
				}
				if logged := b.Logged(); len(logged) != 1 || !strings.HasPrefix(logged[0], "Could not send cloud event: ") {
					t.Errorf("group %d logged %q, want one \"Could not send cloud event\"", i, logged)
				}
			case "[503 503 503 0]":
				// The 5 s ran out in the third pause: the fourth attempt
				// sent nothing (or, started just in time, was cut short),
				// and the event counts as sent.
				t.Logf("group %d: 3 POSTs in %s, then the 5 s ran out (%d requests)", i, reqs[2].at.Sub(first).Round(time.Millisecond), len(reqs))
				if len(reqs) < forwardRetries || f.GaveUp || !errors.Is(f.Err, context.DeadlineExceeded) {
					t.Errorf("group %d: %d POSTs, %v, given up %t; want 3, deadline exceeded, not given up", i, len(reqs), f.Err, f.GaveUp)
				}
				if len(b.Logged()) != 0 {
					t.Errorf("group %d logged %q, want nothing", i, b.Logged())
				}
			default:
				t.Errorf("group %d: attempts answered %v (%v), want [503 503 503 503] or [503 503 503 0]", i, f.Codes, f.Err)
			}
		}
	})

	// One event, one bridge, the recipient answering as scripted: what the
	// bridge does, and what the recipient sees.
	for _, tc := range []struct {
		name   string
		answer func(n int, first time.Time, w http.ResponseWriter, r *http.Request)
		codes  string // the bridge's Forward.Codes
		posts  int    // POSTs the recipient got
		err    error  // the Forward's Err, when it must be this
		done   time.Duration
	}{{
		name: "503, 503, then 202: delivered on the third POST",
		answer: func(n int, _ time.Time, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusAccepted}[n < 3])
		},
		codes: "[503 503 202]", posts: 3,
	}, {
		name: "an answer slower than 5 s is abandoned after one POST, and counts as sent",
		answer: func(_ int, _ time.Time, w http.ResponseWriter, r *http.Request) {
			holdUntil(r, w, time.Now().Add(2*sendTimeout), http.StatusAccepted)
		},
		codes: "[0]", posts: 1, err: context.DeadlineExceeded, done: sendTimeout,
	}, {
		name: "a re-POST gets only what is left of the 5 s",
		answer: func(n int, _ time.Time, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			holdUntil(r, w, time.Now().Add(2*sendTimeout), http.StatusAccepted)
		},
		codes: "[500 0]", posts: 2, err: context.DeadlineExceeded, done: sendTimeout,
	}, {
		name: "once the 5 s have run out in a pause, the next attempt sends nothing",
		answer: func(n int, first time.Time, w http.ResponseWriter, r *http.Request) {
			if n == 3 {
				// Answered 4 s after the first POST: the pause after it
				// (1.125 s at least) ends past the 5 s.
				holdUntil(r, w, first.Add(4*time.Second), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		},
		codes: "[503 503 503 0]", posts: 3, err: context.DeadlineExceeded, done: sendTimeout,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			srv := startNATS(t)
			keptn := srv.connect(t, "shipyard-controller")
			rc := &recipient{answer: tc.answer}
			b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})
			tr := newTrigger(t, "01-scale-up.json", true)
			publish(t, keptn, tr)
			settle(ctx, t, keptn, b)
			f, reqs := b.Forwards()[0], rc.Requests()
			if f.ID != tr.ID || fmt.Sprint(f.Codes) != tc.codes || f.GaveUp {
				t.Errorf("event %s: attempts answered %v (%v), given up %t; want %s, not given up", f.ID, f.Codes, f.Err, f.GaveUp, tc.codes)
			}
			if tc.err != nil && !errors.Is(f.Err, tc.err) {
				t.Errorf("error %v, want %v", f.Err, tc.err)
			}
			if len(reqs) != tc.posts {
				t.Errorf("%d POSTs, want %d", len(reqs), tc.posts)
			}
			for _, r := range reqs {
				if r.id() != tr.ID {
					t.Errorf("a POST carried event %q, want %s", r.id(), tr.ID)
				}
			}
			checkPauses(t, reqs, 500*time.Millisecond)
			if tc.done > 0 && len(reqs) > 0 {
				// The 5 s count from the first attempt.
				if d := f.Done.Sub(reqs[0].at); d < tc.done-100*time.Millisecond || d > tc.done+3*time.Second {
					t.Errorf("done %s after the first POST, want about %s", d.Round(time.Millisecond), tc.done)
				}
			}
			if logged := b.Logged(); len(logged) != 0 {
				t.Errorf("logged %q, want nothing", logged)
			}
		})
	}

	t.Run("connection refused: no retry, no log line, the event is lost", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		closed := "http://" + testsupport.NewRefusingPort(t).Addr + "/" // bound, not listening: refused
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: closed})
		publish(t, keptn, newTrigger(t, "01-scale-up.json", true), newTrigger(t, "01-scale-up.json", true))
		settle(ctx, t, keptn, b)
		fw := b.Forwards()
		if len(fw) != 2 {
			t.Fatalf("%d forwards, want 2", len(fw))
		}
		for _, f := range fw {
			if fmt.Sprint(f.Codes) != "[0]" || f.GaveUp || f.Err == nil || !strings.Contains(f.Err.Error(), "connection refused") {
				t.Errorf("event %s: attempts answered %v (%v), given up %t; want one, refused, not given up", f.ID, f.Codes, f.Err, f.GaveUp)
			}
		}
		if logged := b.Logged(); len(logged) != 0 {
			t.Errorf("logged %q, want nothing", logged)
		}
	})

	t.Run("undecodable data is dropped without a word", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		rc := &recipient{}
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})
		for _, data := range []string{
			"not JSON",
			`{"specversion":"1.0","id":"trunc`,
			`{"id":"no-specversion","source":"shipyard-controller","type":"` + triggeredTopic + `","data":{}}`,
			`{"specversion":"1.0","id":"data-a-string","source":"shipyard-controller","type":"` + triggeredTopic + `","data":"scale"}`,
		} {
			if err := keptn.Publish(triggeredTopic, []byte(data)); err != nil {
				t.Fatal(err)
			}
		}
		tr := newTrigger(t, "01-scale-up.json", true)
		publish(t, keptn, tr)
		settle(ctx, t, keptn, b)
		var dropped int
		for _, f := range b.Forwards() {
			if f.ID == tr.ID {
				if !f.Delivered() {
					t.Errorf("the valid event: %v (%v), want delivered", f.Codes, f.Err)
				}
				continue
			}
			dropped++
			if len(f.Codes) != 0 || f.GaveUp {
				t.Errorf("message %q: attempts %v, given up %t; want dropped before any", f.ID, f.Codes, f.GaveUp)
			}
		}
		if dropped != 4 {
			t.Errorf("%d messages dropped, want 4", dropped)
		}
		if reqs := rc.Requests(); len(reqs) != 1 || reqs[0].id() != tr.ID {
			t.Errorf("%d POSTs, want 1, of the valid event", len(reqs))
		}
		if logged := b.Logged(); len(logged) != 0 {
			t.Errorf("logged %q, want nothing", logged)
		}
	})

	t.Run("an event without source is never POSTed, paused over, given up", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		rc := &recipient{}
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})
		start := time.Now()
		if err := keptn.Publish(triggeredTopic, []byte(`{"specversion":"1.0","id":"no-source","type":"`+triggeredTopic+`","data":{}}`)); err != nil {
			t.Fatal(err)
		}
		settle(ctx, t, keptn, b)
		f := b.Forwards()[0]
		if len(f.Codes) != 0 || !f.GaveUp || !strings.Contains(f.Err.Error(), "source") {
			t.Errorf("attempts %v (%v), given up %t; want none, given up over the source", f.Codes, f.Err, f.GaveUp)
		}
		var least time.Duration
		for n := 1; n <= forwardRetries+1; n++ {
			lo, _ := retryPauseBounds(n)
			least += lo
		}
		if d := f.Done.Sub(start); d < least {
			t.Errorf("given up after %s, want the 4 pauses, at least %s", d.Round(time.Millisecond), least)
		}
		if n := len(rc.Requests()); n != 0 {
			t.Errorf("%d POSTs, want none", n)
		}
		if logged := b.Logged(); len(logged) != 1 || !strings.HasPrefix(logged[0], "Could not send cloud event: ") {
			t.Errorf("logged %q, want one \"Could not send cloud event\"", logged)
		}
	})
}

// TestRetryPause pins the distributor's pauses between POSTs: go-utils'
// keptn.GetExpBackoffTime, 0.75 s × n, ±50 %.
func TestRetryPause(t *testing.T) {
	for n := 1; n <= forwardRetries+1; n++ {
		lo, hi := retryPauseBounds(n)
		var least, most time.Duration = hi, lo
		for range 2000 {
			d := retryPause(n)
			if d < lo || d > hi {
				t.Fatalf("pause %d: %s, want %s to %s", n, d, lo, hi)
			}
			least, most = min(least, d), max(most, d)
		}
		// 2000 draws spread over the whole range.
		if spread := hi - lo; least > lo+spread/10 || most < hi-spread/10 {
			t.Errorf("pause %d: drawn from %s to %s, want the whole of %s to %s", n, least, most, lo, hi)
		}
	}
}

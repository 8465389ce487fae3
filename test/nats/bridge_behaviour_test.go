package nats

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// request is one POST a recipient got from a bridge.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
}

// recipient stands for a provider's receiver: it records each request and
// answers with status(n), n counting requests from 1.
type recipient struct {
	mu       sync.Mutex
	requests []request
	status   func(n int) int
}

func (rc *recipient) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests = append(rc.requests, request{time.Now(), r.Header.Clone(), body})
	n := len(rc.requests)
	rc.mu.Unlock()
	code := http.StatusAccepted
	if rc.status != nil {
		code = rc.status(n)
	}
	w.WriteHeader(code)
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
		deadline := time.Now().Add(waitTimeout)
		for len(bridges[0].Forwards())+len(bridges[1].Forwards()) < n || len(bridges[2].Forwards()) < n {
			if time.Now().After(deadline) {
				break
			}
			sleep(ctx, 10*time.Millisecond)
		}
		sleep(ctx, 200*time.Millisecond) // a stray extra one would show by now
		a1, a2, b1 := len(bridges[0].Forwards()), len(bridges[1].Forwards()), len(bridges[2].Forwards())
		t.Logf("group a: %d + %d, group b: %d", a1, a2, b1)
		if a1+a2 != n || a1 == 0 || a2 == 0 {
			t.Errorf("group a got %d + %d events, want %d split between its two members", a1, a2, n)
		}
		if b1 != n {
			t.Errorf("group b got %d events, want all %d", b1, n)
		}
	})

	t.Run("a non-2xx answer is re-POSTed 3 times, 1 to 1.6 s apart", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		rc := &recipient{status: func(int) int { return http.StatusServiceUnavailable }}
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: rc.serve(t)})
		publish(t, keptn, newTrigger(t, "01-scale-up.json", true))
		fw := awaitForwards(ctx, t, b, 1, waitTimeout)
		if got := fmt.Sprint(fw[0].Codes); got != "[503 503 503 503]" {
			t.Errorf("POSTs answered %s, want [503 503 503 503]", got)
		}
		reqs := rc.Requests()
		for i := 1; i < len(reqs); i++ {
			// A little slack for a loaded machine.
			if gap := reqs[i].at.Sub(reqs[i-1].at); gap < retryPauseMin || gap > retryPauseMax+500*time.Millisecond {
				t.Errorf("POST %d came %s after the one before, want %s to %s", i+1, gap.Round(time.Millisecond), retryPauseMin, retryPauseMax)
			}
		}
		if len(reqs) != 4 {
			t.Errorf("%d POSTs, want 4", len(reqs))
		}
	})

	t.Run("connection refused drops the event", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		srv := startNATS(t)
		keptn := srv.connect(t, "shipyard-controller")
		closed := fmt.Sprintf("http://127.0.0.1:%d/", freePort(t)) // nothing listens there
		b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: closed})
		start := time.Now()
		publish(t, keptn, newTrigger(t, "01-scale-up.json", true), newTrigger(t, "01-scale-up.json", true))
		fw := awaitForwards(ctx, t, b, 2, waitTimeout)
		for _, f := range fw {
			if len(f.Codes) != 1 || f.Codes[0] != 0 || f.Err == nil || !strings.Contains(f.Err.Error(), "connection refused") {
				t.Errorf("event %s: POSTs answered %v (%v), want one, refused", f.ID, f.Codes, f.Err)
			}
		}
		if d := time.Since(start); d > retryPauseMin {
			t.Errorf("dropping 2 refused events took %s: a refused POST is not retried", d)
		}
	})
}

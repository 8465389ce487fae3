package nats

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/delivery"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/retry"
)

// defaultMaxEventBytes is the provider's MAX_EVENT_BYTES default, read from
// the configuration's own declaration.
func defaultMaxEventBytes(t *testing.T) int {
	t.Helper()
	f, _ := reflect.TypeFor[config.Config]().FieldByName("MaxEventBytes")
	n, err := strconv.Atoi(f.Tag.Get("default"))
	if err != nil {
		t.Fatalf("MAX_EVENT_BYTES default: %v", err)
	}
	return n
}

// TestRepliesAcceptedByEventEndpoint fails when the provider's events stop
// being accepted by the distributor's /event: it has the provider's own
// Replier build a started and a finished event, the latter with a message
// far over the cap, and sends them with the provider's own HTTP delivery to
// the bridge's /event, then checks they arrive on NATS. It also checks the
// endpoint's rules the provider must keep to, each answered with a bare 500
// and a log line: binary mode ("no specversion"), a body over 65,536 bytes,
// no type.
func TestRepliesAcceptedByEventEndpoint(t *testing.T) {
	requireSetup(t)
	t.Parallel()
	ctx := testContext(t)
	srv := startNATS(t)
	rec := record(t, srv.connect(t, "shipyard-controller"))
	// Nothing is published on the triggered topic: the recipient is never
	// called.
	b := startBridge(ctx, t, &Bridge{NATSURL: srv.URL, Topic: triggeredTopic, Group: "g", Recipient: "http://127.0.0.1:1/"})

	tr := newTrigger(t, "01-scale-up.json", true)
	triggered, err := keptnevent.Decode(http.Header{"Content-Type": {"application/cloudevents+json"}}, tr.Body)
	if err != nil {
		t.Fatal(err)
	}
	maxBytes := defaultMaxEventBytes(t)
	if maxBytes > maxPayloadBytes {
		t.Fatalf("MAX_EVENT_BYTES defaults to %d, over the distributor's cap of %d", maxBytes, maxPayloadBytes)
	}
	replier := keptnevent.Replier{Source: "action-provider", MaxBytes: maxBytes}
	send := func(out keptnevent.Outgoing) error {
		h := &delivery.HTTP{
			URL: b.EventURL(), Client: delivery.NewClient(1),
			// A refusal is final here: retrying would only hide it.
			Backoff: retry.Backoff{Bound: time.Millisecond}, AttemptTimeout: 5 * time.Second,
		}
		return h.Publish(ctx, out)
	}

	started, err := replier.Started(triggered)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(started); err != nil {
		t.Fatalf("started event refused: %v", err)
	}
	// A message that escapes to more bytes than it has, with multi-byte
	// characters, far over the cap.
	huge := strings.Repeat(`rollout "carts" <stuck> ✗ `, 20000)
	finished, err := replier.Finished(triggered, keptnv2.StatusSucceeded, keptnv2.ResultFailed, huge)
	if err != nil {
		t.Fatal(err)
	}
	if len(finished.Body) > maxPayloadBytes {
		t.Fatalf("finished event is %d bytes, over the distributor's %d", len(finished.Body), maxPayloadBytes)
	}
	if err := send(finished); err != nil {
		t.Fatalf("finished event (%d bytes) refused: %v", len(finished.Body), err)
	}
	rec.awaitFinished(ctx, t, waitTimeout, []string{tr.ID})
	checkExactlyOnce(t, rec, []trigger{tr})
	for _, ev := range rec.Events() {
		if ev.Type == keptnevent.FinishedType && !strings.HasSuffix(ev.Data.Message, "…[truncated]") {
			t.Errorf("finished message on NATS ends %q, want it cut and marked", ev.Data.Message[max(0, len(ev.Data.Message)-40):])
		}
	}

	// Without the cap, the same event is refused: the cap is what makes it
	// pass.
	uncapped, err := keptnevent.Replier{Source: "action-provider"}.Finished(triggered, keptnv2.StatusSucceeded, keptnv2.ResultFailed, huge)
	if err != nil {
		t.Fatal(err)
	}
	var status *delivery.StatusError
	if err := send(uncapped); !errors.As(err, &status) || status.Code != http.StatusInternalServerError {
		t.Errorf("a %d-byte event: %v, want 500", len(uncapped.Body), err)
	}

	// logged waits for the bridge's log to have n lines and returns the last.
	logged := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for len(b.Logged()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("the bridge logged %q, want %d lines", b.Logged(), n)
			}
			sleep(ctx, 5*time.Millisecond)
		}
		l := b.Logged()
		return l[len(l)-1]
	}
	if line := logged(1); !strings.HasPrefix(line, "Failed to read body from request: ") {
		t.Errorf("the bridge logged %q for the uncapped event, want \"Failed to read body from request\"", line)
	}
	nLogged := len(b.Logged())

	post := func(header http.Header, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.EventURL(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, strings.TrimSpace(string(answer))
	}

	structured := http.Header{"Content-Type": {"application/cloudevents+json"}}
	t.Run("binary mode gets 500, no specversion", func(t *testing.T) {
		h := http.Header{
			"Content-Type":   {"application/json"},
			"Ce-Specversion": {"1.0"}, "Ce-Id": {"b1"}, "Ce-Source": {"action-provider"},
			"Ce-Type": {keptnevent.StartedType}, "Ce-Shkeptncontext": {tr.KeptnContext}, "Ce-Triggeredid": {tr.ID},
		}
		code, answer := post(h, []byte(`{"project":"sockshop","stage":"production","service":"carts"}`))
		nLogged++
		if line := logged(nLogged); code != http.StatusInternalServerError || answer != "" || !strings.Contains(line, "no specversion") {
			t.Errorf("binary mode: %d %q, logged %q; want a bare 500, \"no specversion\" logged", code, answer, line)
		}
	})

	// sized is a structured event of exactly n bytes, of the triggered
	// type: published, it goes to the bridge's own subscription, not to
	// the recorder.
	sized := func(n int) []byte {
		head := `{"specversion":"1.0","id":"` + uuid.NewString() + `","source":"action-provider","type":"` + triggeredTopic + `","data":{"message":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	t.Run("65,536 bytes pass, 65,537 get 500", func(t *testing.T) {
		if code, answer := post(structured, sized(maxPayloadBytes)); code != http.StatusOK {
			t.Errorf("%d bytes: %d %q, want 200", maxPayloadBytes, code, answer)
		}
		code, answer := post(structured, sized(maxPayloadBytes+1))
		nLogged++
		if line := logged(nLogged); code != http.StatusInternalServerError || answer != "" || !strings.Contains(line, "request body too large") {
			t.Errorf("%d bytes: %d %q, logged %q; want a bare 500, \"request body too large\" logged", maxPayloadBytes+1, code, answer, line)
		}
	})

	t.Run("no type gets 500", func(t *testing.T) {
		code, answer := post(structured, []byte(`{"specversion":"1.0","id":"untyped","source":"action-provider","data":{}}`))
		nLogged++
		if line := logged(nLogged); code != http.StatusInternalServerError || answer != "" || !strings.Contains(line, "no PubSub Topic defined") {
			t.Errorf("no type: %d %q, logged %q; want a bare 500, \"no PubSub Topic defined\" logged", code, answer, line)
		}
	})

	// None of the refused ones reached NATS: the bridge is closed, having
	// flushed what it published, and the recorder has all of that.
	b.Close()
	rec.barrier(ctx, t)
	checkExactlyOnce(t, rec, []trigger{tr})
	if got := len(b.Published()); got != 3 {
		t.Errorf("/event published %d events, want the started, the finished and the one of 65,536 bytes", got)
	}
}

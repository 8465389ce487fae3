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
// endpoint's rules the provider must keep to: binary mode gets 500 "no
// specversion", a body over 64 KiB gets 413.
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
	if err := send(uncapped); !errors.As(err, &status) || status.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte event: %v, want 413", len(uncapped.Body), err)
	}

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

	t.Run("binary mode gets 500 no specversion", func(t *testing.T) {
		h := http.Header{
			"Content-Type":   {"application/json"},
			"Ce-Specversion": {"1.0"}, "Ce-Id": {"b1"}, "Ce-Source": {"action-provider"},
			"Ce-Type": {keptnevent.StartedType}, "Ce-Shkeptncontext": {tr.KeptnContext}, "Ce-Triggeredid": {tr.ID},
		}
		code, answer := post(h, []byte(`{"project":"sockshop","stage":"production","service":"carts"}`))
		if code != http.StatusInternalServerError || !strings.Contains(answer, "no specversion") {
			t.Errorf("binary mode: %d %q, want 500 no specversion", code, answer)
		}
	})

	t.Run("65 KiB gets 413", func(t *testing.T) {
		body := append([]byte(`{"specversion":"1.0","id":"big","source":"action-provider","type":"`+keptnevent.StartedType+`","data":{"message":"`),
			bytes.Repeat([]byte("x"), 65<<10)...)
		body = append(body, `"}}`...)
		code, answer := post(http.Header{"Content-Type": {"application/cloudevents+json"}}, body)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d bytes: %d %q, want 413", len(body), code, answer)
		}
	})

	t.Run("no type gets 500", func(t *testing.T) {
		code, answer := post(http.Header{"Content-Type": {"application/cloudevents+json"}},
			[]byte(`{"specversion":"1.0","id":"untyped","source":"action-provider","data":{}}`))
		if code != http.StatusInternalServerError {
			t.Errorf("no type: %d %q, want 500", code, answer)
		}
	})

	// None of the refused ones reached NATS.
	rec.quiet(ctx, t, 300*time.Millisecond, 5*time.Second)
	checkExactlyOnce(t, rec, []trigger{tr})
	if got := len(b.Published()); got != 2 {
		t.Errorf("/event published %d events, want the started and the finished", got)
	}
}

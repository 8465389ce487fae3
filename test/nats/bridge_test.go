package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"
	"github.com/keptn/go-utils/pkg/lib/keptn"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	natsgo "github.com/nats-io/nats.go"
)

// What the distributor of Keptn 1.4.5 does, as the Bridge reproduces it;
// read in keptn/keptn 1.4.5, distributor/pkg/receiver/receiver.go and
// distributor/pkg/forwarder/forwarder.go, and in what they call: go-utils
// v0.20.4's v0_2_0.HTTPEventSender.Send and keptn.GetExpBackoffTime, and
// cloudevents/sdk-go v2's HTTP protocol.
const (
	// sendTimeout bounds all the POSTs of one event together, pauses
	// included: NATSEventReceiver.sendEvent makes one 5 s context and
	// HTTPEventSender.Send makes every attempt in it.
	sendTimeout = 5 * time.Second
	// forwardRetries is how many times a POST answered with a non-2xx status
	// is made again (v0_2_0.MAX_SEND_RETRIES), after the pauses retryPause
	// gives, as long as sendTimeout has not run out.
	forwardRetries = keptnv2.MAX_SEND_RETRIES
	// maxPayloadBytes is the cap of /event: API_PROXY_MAX_PAYLOAD_BYTES_KB's
	// default of 64. A larger body gets 500, as any body /event cannot read.
	maxPayloadBytes = 64 << 10
	// triggeredTopic is the provider's PUBSUB_TOPIC.
	triggeredTopic = "sh.keptn.event.action.triggered"
)

// retryPause is the pause after the n-th attempt (from 1), the
// distributor's own keptn.GetExpBackoffTime: 0.75 s, 1.5 s, 2.25 s, 3 s for
// n = 1..4, each ±50 %. Retry-After is not looked at.
func retryPause(n int) time.Duration { return keptn.GetExpBackoffTime(n) }

// retryPauseBounds is the range retryPause(n) falls in.
func retryPauseBounds(n int) (lo, hi time.Duration) {
	c := time.Duration(n) * 750 * time.Millisecond
	return c / 2, c * 3 / 2
}

// Bridge stands in for one Keptn 1.4.5 distributor sidecar: what a provider
// replica sees of Keptn. Run one per provider replica, as there is one
// sidecar per pod. It behaves as the distributor does when it does not
// register with the control plane (see below):
//
//   - It subscribes with QueueSubscribe(Topic, Group) (PUBSUB_TOPIC,
//     PUBSUB_GROUP): bridges sharing a group split the events among them;
//     another group gets its own copy of each.
//   - Each message gets a goroutine of its own at once, and every one of
//     them waits for one mutex before it does anything
//     (NATSEventReceiver.handleMessage): events are forwarded one at a time,
//     but not in the order they arrived, since the goroutines race for the
//     mutex. NATS never holds messages back for the bridge.
//   - Data that does not decode as a CloudEvent (no JSON, no specversion),
//     or whose data go-utils' EventData cannot take, is dropped without a
//     word; the bridge records it as a Forward with no Codes.
//   - An event is POSTed in structured mode (Content-Type
//     application/cloudevents+json, no ce-* headers) to Recipient
//     (PUBSUB_RECIPIENT:PORT/PATH). It goes through go-utils'
//     KeptnContextExtendedCE on the way: Keptn's four extensions
//     (shkeptncontext, triggeredid, shkeptnspecversion, gitcommitid) are
//     kept, an empty triggeredid and gitcommitid are added, any other
//     extension is dropped; an event without id gets a new one on each
//     attempt, one without time the time of the attempt.
//   - A non-2xx answer is re-POSTed up to 3 times, after pauses of about
//     0.75, 1.5 and 2.25 s (±50 %, Retry-After ignored), but all attempts
//     share one 5 s deadline: once it has passed, the next attempt sends
//     nothing, fails at once, and the event counts as sent. After a fourth
//     non-2xx answer it pauses once more (about 3 s), then gives up and logs
//     "Could not send cloud event". Throughout, it holds the mutex.
//   - A POST that gets no answer (connection refused, reset, or no answer
//     within what is left of the 5 s) counts as sent: no retry, no log line.
//     The event is lost.
//   - An event the CloudEvents SDK finds invalid (no type or no source) is
//     not POSTed at all; it is "retried" through the same pauses, then given
//     up and logged.
//   - Its /event endpoint takes the provider's events: any method, the body
//     read as a structured-mode event whatever the headers say (a
//     binary-mode event's body has no specversion), at most 64 KiB. A body
//     over that, or one that does not decode, gets a bare 500. An event
//     with no type gets 500; sh.keptn.log.error, and an event the SDK finds
//     invalid, get 200 and are not published; any other is published as it
//     came, structured, on the NATS subject named by its type, and gets 200
//     with no body.
//
// Not reproduced: with K8S_NAMESPACE and K8S_DEPLOYMENT_NAME set (as in
// deploy/ and the chart), the distributor registers with Keptn's control
// plane and forwards only what its subscriptions match, adding
// data.temporaryData.distributor.subscriptionID to each event and dropping
// an id it forwarded for the same subscription in the last 10 s. Its
// /event sends to the uniform log channel, and can forward to a remote API
// instead of NATS.
//
// Listen, then Start; Close when done.
type Bridge struct {
	NATSURL   string
	Topic     string // PUBSUB_TOPIC
	Group     string // PUBSUB_GROUP
	Recipient string // PUBSUB_RECIPIENT:PUBSUB_RECIPIENT_PORT/PUBSUB_RECIPIENT_PATH, e.g. http://127.0.0.1:8080/

	// Refuse, when set, is asked before each request to /event is read: a
	// non-zero status is answered instead, as an event endpoint that is
	// down would. It must be safe for concurrent use.
	Refuse func() int
	// Delay, when set, holds each decoded event this long before it is
	// published and answered, as a distributor slow to publish would.
	Delay time.Duration

	client    *http.Client
	srv       *http.Server
	ln        net.Listener
	serveDone chan struct{}
	nc        *natsgo.Conn
	sub       *natsgo.Subscription
	ctx       context.Context
	cancel    context.CancelFunc
	inflight  sync.WaitGroup // goroutines of messages taken from NATS
	sendMu    sync.Mutex     // the distributor's one mutex: one forward at a time

	mu        sync.Mutex
	stopped   bool // Unsubscribe or Close: no new forward starts
	taken     int  // messages taken from NATS
	waiting   int  // goroutines waiting for sendMu
	forwards  []Forward
	published []string // ids of the events /event published
	refused   int      // requests to /event answered by Refuse
	logged    []string // the error lines the distributor would log
}

// Forward is what became of one message the bridge took from NATS.
type Forward struct {
	ID    string // the event's id
	Codes []int  // the status of each attempt; 0 for one that got no answer
	// Err is the last attempt's error: the transport's, the SDK's for an
	// invalid event, or why the message was dropped.
	Err error
	// GaveUp: the sender returned an error, which the distributor logs as
	// "Could not send cloud event". Otherwise it counts the event as sent,
	// whatever Codes says.
	GaveUp bool
	Done   time.Time // when the bridge was done with it
}

// Delivered says whether the provider answered the event with a 2xx.
func (f Forward) Delivered() bool {
	n := len(f.Codes)
	return n > 0 && f.Codes[n-1] >= 200 && f.Codes[n-1] < 300
}

// Listen binds /event on 127.0.0.1 and a free port, and returns its URL:
// the provider's EVENTBROKER.
func (b *Bridge) Listen() (string, error) {
	if b.ln == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		b.ln = ln
	}
	return b.EventURL(), nil
}

// EventURL is the URL of the /event endpoint, once listening.
func (b *Bridge) EventURL() string { return "http://" + b.ln.Addr().String() + "/event" }

// Start serves /event and subscribes to NATS. It returns once the
// subscription is registered with the server, so that a message published
// afterwards reaches it. ctx bounds the bridge's work.
func (b *Bridge) Start(ctx context.Context) error {
	if b.Topic == "" || b.Group == "" || b.Recipient == "" {
		return errors.New("bridge: Topic, Group and Recipient must be set")
	}
	if _, err := b.Listen(); err != nil {
		return err
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	// The distributor keeps connections to the provider alive.
	b.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
	nc, err := natsgo.Connect(b.NATSURL, natsgo.Name("bridge-"+b.Group), natsgo.MaxReconnects(-1), natsgo.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("bridge: connect to %s: %w", b.NATSURL, err)
	}
	b.nc = nc
	mux := http.NewServeMux()
	mux.HandleFunc("/event", b.serveEvent)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	b.serveDone = make(chan struct{})
	go func() {
		defer close(b.serveDone)
		_ = b.srv.Serve(b.ln)
	}()
	if b.sub, err = nc.QueueSubscribe(b.Topic, b.Group, b.onMessage); err != nil {
		return fmt.Errorf("bridge: subscribe to %s in group %s: %w", b.Topic, b.Group, err)
	}
	// onMessage returns at once, so nothing piles up in the subscription;
	// lift its limit all the same.
	_ = b.sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("bridge: flush the subscription: %w", err)
	}
	return nil
}

// onMessage is the subscription's handler, as NATSEventReceiver.handleMessage
// is: it starts a goroutine for the message and returns; the goroutine waits
// for the one mutex, then forwards the message. A goroutine that gets the
// mutex after Unsubscribe drops its message, as the distributor's process
// exiting would.
func (b *Bridge) onMessage(m *natsgo.Msg) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.inflight.Add(1)
	b.taken++
	b.waiting++
	b.mu.Unlock()
	go func() {
		defer b.inflight.Done()
		b.sendMu.Lock()
		defer b.sendMu.Unlock()
		b.mu.Lock()
		b.waiting--
		stopped := b.stopped
		b.mu.Unlock()
		if !stopped {
			b.forward(m.Data)
		}
	}()
}

// decodeEvent is the distributor's utils.DecodeNATSMessage, for messages
// from NATS and bodies sent to /event alike.
func decodeEvent(data []byte) (cloudevents.Event, error) {
	var cv struct {
		SpecVersion string `json:"specversion"`
	}
	if err := json.Unmarshal(data, &cv); err != nil {
		return cloudevents.Event{}, err
	}
	ev := cloudevents.NewEvent(cv.SpecVersion)
	if err := json.Unmarshal(data, &ev); err != nil {
		return cloudevents.Event{}, err
	}
	return ev, nil
}

// forward is the rest of handleMessage, and sendEvent.
func (b *Bridge) forward(data []byte) {
	ev, err := decodeEvent(data)
	if err != nil {
		b.record(Forward{Err: fmt.Errorf("dropped without a word, not a CloudEvent: %w", err)})
		return
	}
	ke, _ := keptnv2.ToKeptnEvent(ev) // never fails
	out := keptnv2.ToCloudEvent(ke)
	// sendEvent's EventMatcher: with no filters set, it still decodes the
	// data, and an event whose data it cannot take is not sent.
	if err := out.DataAs(&keptnv2.EventData{}); err != nil {
		b.record(Forward{ID: ke.ID, Err: fmt.Errorf("dropped without a word, data not Keptn's: %w", err)})
		return
	}
	b.record(b.send(out))
}

// errInvalid marks an event the CloudEvents SDK refuses to send.
var errInvalid = errors.New("invalid CloudEvent")

// send is go-utils' HTTPEventSender.Send with the 5 s context sendEvent
// gives it. The pauses do not watch that context (they are time.After), so
// a pause may end after the deadline; only Close cuts them short here.
func (b *Bridge) send(ev cloudevents.Event) Forward {
	f := Forward{ID: ev.ID()}
	ctx, cancel := context.WithTimeout(b.ctx, sendTimeout)
	defer cancel()
	for i := 0; i <= forwardRetries; i++ {
		code, err := b.post(ctx, ev)
		f.Err = err
		switch {
		case errors.Is(err, errInvalid):
			// Not a protocol result: "undelivered", paused and tried again.
		case err != nil:
			// No answer: the SDK returns a NACK receipt, which Send takes
			// for success.
			f.Codes = append(f.Codes, 0)
			return f
		default:
			f.Codes = append(f.Codes, code)
			if code >= 200 && code < 300 {
				return f
			}
			f.Err = fmt.Errorf("%d %s", code, http.StatusText(code))
		}
		select {
		case <-b.ctx.Done():
			f.Err = b.ctx.Err()
			return f
		case <-time.After(retryPause(i + 1)):
		}
	}
	f.GaveUp = true
	f.Err = fmt.Errorf("could not send cloudevent after %d retries. Received result from the receiver: %w", forwardRetries, f.Err)
	b.logf("Could not send cloud event: %v", f.Err)
	return f
}

// post is one attempt: the SDK client's defaulters (WithUUIDs,
// WithTimeNow) and its validation, then one POST in structured mode. It
// returns the status, or the transport's error.
func (b *Bridge) post(ctx context.Context, ev cloudevents.Event) (int, error) {
	if ev.ID() == "" {
		ev.Context = ev.Context.Clone()
		ev.SetID(uuid.NewString())
	}
	if ev.Time().IsZero() {
		ev.Context = ev.Context.Clone()
		ev.SetTime(time.Now())
	}
	if err := ev.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %v", errInvalid, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errInvalid, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.Recipient, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

func (b *Bridge) record(f Forward) {
	f.Done = time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forwards = append(b.forwards, f)
}

func (b *Bridge) logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logged = append(b.logged, fmt.Sprintf(format, args...))
}

// serveEvent is the distributor's /event (Forwarder.handleEvent behind its
// httpMiddleWare): a structured-mode CloudEvent in, the same event out on
// NATS, on the subject named by its type. Its refusals have no body; the
// reason goes to the log.
func (b *Bridge) serveEvent(w http.ResponseWriter, r *http.Request) {
	if b.Refuse != nil {
		if code := b.Refuse(); code != 0 {
			b.mu.Lock()
			b.refused++
			b.mu.Unlock()
			http.Error(w, "refused by test", code)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayloadBytes))
	if err != nil {
		b.logf("Failed to read body from request: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	ev, err := decodeEvent(body)
	if err != nil {
		b.logf("Failed to decode CloudEvent: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if b.Delay > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(b.Delay):
		}
	}
	switch {
	case ev.Type() == keptnv2.ErrorLogEventName:
		return // to the uniform log only; 200
	case ev.Type() == "":
		b.logf("Failed to forward CloudEvent: no PubSub Topic defined")
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	// forwardEventToNATSServer: a CloudEvents client without defaulters
	// sends it; what it cannot send is logged, and answered 200 all the same.
	if err := ev.Validate(); err != nil {
		b.logf("Failed to send cloud event: %v", err)
		return
	}
	payload, err := json.Marshal(ev)
	if err == nil {
		err = b.nc.Publish(ev.Type(), payload)
	}
	if err != nil {
		b.logf("Failed to send cloud event: %v", err)
		return
	}
	b.mu.Lock()
	b.published = append(b.published, ev.ID())
	b.mu.Unlock()
}

// Unsubscribe stops taking events from NATS and waits for the goroutines of
// the messages taken: the one forwarding finishes its forward, those
// waiting for the mutex drop theirs. That is what SIGTERM does to the
// distributor: it unsubscribes and exits, and the messages its goroutines
// had not forwarded are lost, as they are in core NATS. /event goes on
// serving until Close.
func (b *Bridge) Unsubscribe() error {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	var err error
	if b.sub != nil {
		err = b.sub.Unsubscribe()
	}
	b.inflight.Wait()
	return err
}

// Close cuts short the retries of a forward under way, unsubscribes, stops
// /event and closes the NATS connection.
func (b *Bridge) Close() {
	if b.cancel != nil {
		b.cancel()
	}
	_ = b.Unsubscribe()
	if b.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.srv.Shutdown(ctx)
		<-b.serveDone
	} else if b.ln != nil {
		b.ln.Close()
	}
	if b.nc != nil {
		_ = b.nc.Flush()
		b.nc.Close()
	}
	if b.client != nil {
		b.client.CloseIdleConnections()
	}
}

// Forwards returns what became of each message taken from NATS so far.
func (b *Bridge) Forwards() []Forward {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Forward(nil), b.forwards...)
}

// Published returns the ids of the events /event published, in order.
func (b *Bridge) Published() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.published...)
}

// Waiting is how many messages taken from NATS wait for the mutex.
func (b *Bridge) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// settled says whether the bridge is done with every message it has taken
// from NATS, and none is pending in its subscription.
func (b *Bridge) settled() bool {
	if n, _, err := b.sub.Pending(); err != nil || n > 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting == 0 && len(b.forwards) == b.taken
}

// Logged returns the error lines the distributor would have logged.
func (b *Bridge) Logged() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logged...)
}

// Refused is how many requests to /event Refuse answered.
func (b *Bridge) Refused() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// startBridge starts b for the test and closes it when the test ends.
func startBridge(ctx context.Context, t *testing.T, b *Bridge) *Bridge {
	t.Helper()
	t.Cleanup(b.Close)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

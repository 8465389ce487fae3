package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"
	"github.com/keptn/go-utils/pkg/api/models"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	natsgo "github.com/nats-io/nats.go"
)

// What the distributor of Keptn 1.4.5 does, as the Bridge reproduces it.
const (
	// forwardTimeout bounds one POST to the provider.
	forwardTimeout = 5 * time.Second
	// forwardRetries is how many times a POST answered with a non-2xx status
	// is made again, each after a pause of retryPauseMin to retryPauseMax.
	forwardRetries = 3
	retryPauseMin  = time.Second
	retryPauseMax  = 1600 * time.Millisecond
	// maxPayloadBytes is the cap of /event: API_PROXY_MAX_PAYLOAD_BYTES_KB's
	// default of 64; a larger body gets 413.
	maxPayloadBytes = 64 << 10
	// triggeredTopic is the provider's PUBSUB_TOPIC.
	triggeredTopic = "sh.keptn.event.action.triggered"
)

// Bridge stands in for one Keptn 1.4.5 distributor sidecar: what a provider
// replica sees of Keptn. Run one per provider replica, as there is one
// sidecar per pod. It behaves as the distributor was checked to behave:
//
//   - It subscribes with QueueSubscribe(Topic, Group) (PUBSUB_TOPIC,
//     PUBSUB_GROUP): bridges sharing a group split the events among them;
//     another group gets its own copy of each.
//   - It forwards each message, one at a time, as an HTTP POST in
//     structured mode (Content-Type application/cloudevents+json, no ce-*
//     headers) to Recipient (PUBSUB_RECIPIENT:PORT/PATH), with a 5 s
//     timeout. The event goes through go-utils' KeptnContextExtendedCE on
//     the way, as in the distributor: Keptn's four extensions
//     (shkeptncontext, triggeredid, shkeptnspecversion, gitcommitid) are
//     kept, an empty triggeredid and gitcommitid are added, any other
//     extension is dropped.
//   - A non-2xx answer is re-POSTed 3 times, 1 to 1.6 s apart, and then
//     given up. A POST that gets no answer at all (connection refused, and
//     here also a timeout) drops the event, silently.
//   - Its /event endpoint takes the provider's events: structured mode
//     only (a binary-mode event has no specversion in its body and gets 500
//     "no specversion"), at most 64 KiB (413 above), and publishes each to
//     the NATS subject named by its type (no type: 500).
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
	// Delay, when set, holds each accepted event this long before it is
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
	inflight  sync.WaitGroup // forwards under way

	mu        sync.Mutex
	stopped   bool // Unsubscribe or Close: no new forward starts
	forwards  []Forward
	published []string // ids of the events /event published
	refused   int      // requests to /event answered by Refuse
}

// Forward is what became of one message the bridge took from NATS.
type Forward struct {
	ID    string // the event's id
	Codes []int  // the status of each POST; 0 for one that got no answer
	Err   error  // the last POST's transport error, if any
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
	// The distributor's NATS client is never a slow consumer that drops
	// messages within a test's volume; lift the limit all the same.
	_ = b.sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("bridge: flush the subscription: %w", err)
	}
	return nil
}

// onMessage is the subscription's handler. nats.go calls it for one message
// at a time, and it returns only once the message is forwarded or given up:
// the distributor hands each message on through an unbuffered channel to
// one loop that forwards it, so that it, too, forwards one at a time.
func (b *Bridge) onMessage(m *natsgo.Msg) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.inflight.Add(1)
	b.mu.Unlock()
	defer b.inflight.Done()
	b.forward(m.Data)
}

func (b *Bridge) forward(data []byte) {
	var ke models.KeptnContextExtendedCE
	if err := json.Unmarshal(data, &ke); err != nil || ke.Type == nil || ke.Source == nil {
		// The distributor logs "could not unmarshal message" and goes on.
		b.record(Forward{ID: ke.ID, Err: fmt.Errorf("not a Keptn event: %v", err)})
		return
	}
	body, err := json.Marshal(keptnv2.ToCloudEvent(ke))
	if err != nil {
		b.record(Forward{ID: ke.ID, Err: err})
		return
	}
	f := Forward{ID: ke.ID}
	defer func() { b.record(f) }()
	for attempt := 0; ; attempt++ {
		code, err := b.post(body)
		f.Codes, f.Err = append(f.Codes, code), err
		if err != nil || (code >= 200 && code < 300) || attempt == forwardRetries {
			return // delivered, dropped (no answer), or given up
		}
		pause := retryPauseMin + rand.N(retryPauseMax-retryPauseMin+1)
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(pause):
		}
	}
}

func (b *Bridge) post(body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(b.ctx, forwardTimeout)
	defer cancel()
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
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forwards = append(b.forwards, f)
}

// serveEvent is the distributor's /event: a structured-mode CloudEvent in,
// the same event out on NATS, on the subject named by its type.
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
	if r.Method != http.MethodPost {
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayloadBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The distributor reads the body as a structured-mode event whatever
	// the headers say: a binary-mode event's body is its data alone.
	var probe struct {
		SpecVersion *string `json:"specversion"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.SpecVersion == nil {
		http.Error(w, "could not decode CloudEvent: no specversion", http.StatusInternalServerError)
		return
	}
	ev := cloudevents.NewEvent()
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "could not decode CloudEvent: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ke, _ := keptnv2.ToKeptnEvent(ev) // never fails
	if b.Delay > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(b.Delay):
		}
	}
	if ke.Type == nil || *ke.Type == "" {
		http.Error(w, "could not publish event: event type must be set", http.StatusInternalServerError)
		return
	}
	// As go-utils' NATS connector publishes: time and specversion are
	// stamped, an id is made up if there is none.
	ke.Time = time.Now().UTC()
	ke.Specversion = cloudevents.VersionV1
	if ke.ID == "" {
		ke.ID = uuid.NewString()
	}
	payload, err := json.Marshal(ke)
	if err == nil {
		err = b.nc.Publish(*ke.Type, payload)
	}
	if err != nil {
		http.Error(w, "could not publish event: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b.mu.Lock()
	b.published = append(b.published, ke.ID)
	b.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Unsubscribe stops taking events from NATS and waits for the forward under
// way, as the distributor does when its pod is terminated (go-utils'
// control plane unsubscribes, then waits for its event handlers). Messages
// NATS had handed to the subscription and that were not forwarded yet are
// lost, as they are in core NATS. /event goes on serving until Close.
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

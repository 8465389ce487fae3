package lifecycle

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/dedup"
	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
)

// The lifecycle's contract: for every event, exactly one started and one
// finished event reach Keptn, or neither, whatever single step fails, and
// whether the provider is shut down or killed at that step. A process that
// dies leaves its record to another process, whose Recover finishes what it
// can; the test plays both.

// Steps of one event's life, in order.
const (
	stepClaim            = "claim"
	stepRecordStarted    = "record started"
	stepPublishStarted   = "publish started"
	stepRun              = "run"
	stepRecordFinishing  = "record finishing"
	stepPublishFinished  = "publish finished"
	stepRecordFinished   = "record finished"
	modeFail             = "fails"            // the step fails once
	modeCancel           = "shutdown cancels" // actions are cancelled at the step
	modeAbandon          = "killed"           // deliveries abandoned at the step, then the process dies
	contractTriggeredID  = "t-1"
	contractKeptnContext = "ctx-1"
)

var steps = []string{stepClaim, stepRecordStarted, stepPublishStarted, stepRun,
	stepRecordFinishing, stepPublishFinished, stepRecordFinished}

func TestContractExactlyOneFinishedPerStarted(t *testing.T) {
	for _, step := range steps {
		for _, mode := range []string{modeFail, modeCancel, modeAbandon} {
			t.Run(step+" "+mode, func(t *testing.T) {
				book := &book{records: map[string]*rec{}, dead: map[string]bool{}}
				pub := &broker{}
				f := &fault{step: step, mode: mode}
				a := newContractLifecycle(t, book.process("a", f), pub, f)
				f.lc = a
				a.Start(context.Background())
				if d := a.Submit(context.Background(), contractEvent()); d != intake.Accepted {
					t.Fatalf("Submit = %v", d)
				}
				a.Close()
				if err := a.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
				if mode == modeAbandon {
					// Killed: nothing more of a's runs. Another process
					// finds what a left on the cluster.
					book.kill("a")
				} else {
					// Alive: its periodic Recover retries what failed.
					for range 3 {
						a.Recover(context.Background())
					}
					a.Abandon()
					book.kill("a") // then it stops; a survivor looks anyway
				}
				b := newContractLifecycle(t, book.process("b", nil), pub, nil)
				for range 3 {
					b.Recover(context.Background())
				}
				if !f.reached {
					t.Fatalf("the event never reached step %q", step)
				}
				started, finished := pub.count(keptnevent.StartedType), pub.count(keptnevent.FinishedType)
				if started > 1 || finished != started {
					t.Fatalf("Keptn got %d started and %d finished events; want exactly one of each, or neither\n%s",
						started, finished, pub.String())
				}
				if want := wantStarted(step, mode); started != want {
					t.Errorf("Keptn got %d started events; want %d", started, want)
				}
			})
		}
	}
}

// wantStarted is whether the started event reaches Keptn: unless its
// delivery failed, or the provider gave up on deliveries before it.
func wantStarted(step, mode string) int {
	switch {
	case step == stepPublishStarted && mode != modeCancel:
		return 0
	case mode == modeAbandon && (step == stepClaim || step == stepRecordStarted):
		return 0
	}
	return 1
}

// fault makes one step of one event fail, or shuts the provider down there.
type fault struct {
	step, mode string
	lc         *Lifecycle

	mu      sync.Mutex
	reached bool
}

// at is called as each step begins; it returns the error the step fails with.
func (f *fault) at(step string) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if step != f.step || f.reached {
		return nil
	}
	f.reached = true
	switch f.mode {
	case modeFail:
		return fmt.Errorf("%s: injected failure", step)
	case modeCancel:
		f.lc.Cancel()
	case modeAbandon:
		f.lc.Abandon()
	}
	return nil
}

// book is the cluster's record of events, as internal/ledger keeps it,
// shared by the processes of one test.
type book struct {
	mu      sync.Mutex
	records map[string]*rec
	dead    map[string]bool
}

type rec struct {
	holder, state    string
	record, finished []byte
}

func (b *book) kill(holder string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead[holder] = true
}

func (b *book) process(holder string, f *fault) *claims {
	return &claims{book: b, holder: holder, fault: f}
}

// claims is one process's view of the book: a Claimer.
type claims struct {
	book   *book
	holder string
	fault  *fault
}

func (c *claims) update(ctx context.Context, step, id string, change func(*rec) error) error {
	if err := c.fault.at(step); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.book.mu.Lock()
	defer c.book.mu.Unlock()
	r, ok := c.book.records[id]
	if !ok {
		return fmt.Errorf("no record of %s", id)
	}
	return change(r)
}

func (c *claims) Claim(ctx context.Context, id string) (bool, error) {
	if err := c.fault.at(stepClaim); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	c.book.mu.Lock()
	defer c.book.mu.Unlock()
	if _, taken := c.book.records[id]; taken {
		return false, nil
	}
	c.book.records[id] = &rec{holder: c.holder}
	return true, nil
}

func (c *claims) Started(ctx context.Context, id string, record []byte) error {
	return c.update(ctx, stepRecordStarted, id, func(r *rec) error {
		r.state, r.record = "started", record
		return nil
	})
}

func (c *claims) Finishing(ctx context.Context, id string, finished []byte) error {
	return c.update(ctx, stepRecordFinishing, id, func(r *rec) error {
		if r.holder != c.holder {
			return ErrTakenOver
		}
		r.state, r.finished = "finishing", finished
		return nil
	})
}

func (c *claims) Finished(ctx context.Context, id string) error {
	return c.update(ctx, stepRecordFinished, id, func(r *rec) error {
		r.state, r.record, r.finished = "finished", nil, nil
		return nil
	})
}

func (c *claims) Heartbeat(context.Context) error    { return nil }
func (c *claims) Sweep(context.Context) (int, error) { return 0, nil }

func (c *claims) Orphans(context.Context) ([]Orphan, error) {
	c.book.mu.Lock()
	defer c.book.mu.Unlock()
	var orphans []Orphan
	for id, r := range c.book.records {
		switch r.state {
		case "started", "finishing", "recovering":
		default:
			continue
		}
		if r.holder == c.holder || !c.book.dead[r.holder] {
			continue
		}
		orphans = append(orphans, Orphan{ID: id, Record: r.record, Finished: r.finished, Replica: r.holder})
		r.holder, r.state = c.holder, "recovering"
	}
	return orphans, nil
}

// broker is the event broker: what Keptn received.
type broker struct {
	mu     sync.Mutex
	events []keptnevent.Outgoing
	fault  *fault
}

func (b *broker) Publish(ctx context.Context, ev keptnevent.Outgoing) error {
	step := stepPublishStarted
	if ev.Type == keptnevent.FinishedType {
		step = stepPublishFinished
	}
	if err := b.fault.at(step); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	return nil
}

func (b *broker) count(eventType string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, ev := range b.events {
		if ev.Type == eventType && ev.TriggeredID == contractTriggeredID {
			n++
		}
	}
	return n
}

func (b *broker) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := ""
	for _, ev := range b.events {
		s += ev.Type + " " + string(ev.Body) + "\n"
	}
	return s
}

// handlerFunc is the action: it passes, unless its step is the one to fail.
type handlerFunc func(context.Context, action.Request) (action.Outcome, error)

func (h handlerFunc) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	return h(ctx, req)
}

func newContractLifecycle(t *testing.T, c *claims, pub *broker, f *fault) *Lifecycle {
	t.Helper()
	pub.fault = f
	var reg action.Registry
	err := reg.Register("scale", handlerFunc(func(ctx context.Context, _ action.Request) (action.Outcome, error) {
		if err := f.at(stepRun); err != nil {
			return action.Outcome{}, err
		}
		if err := ctx.Err(); err != nil {
			return action.Outcome{}, err
		}
		return action.Pass("scaled"), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	return New(Config{Workers: 1, QueueSize: 1, ActionTimeout: time.Minute}, &reg, dedup.New(time.Minute, 100, nil),
		c, keptnevent.Replier{Source: "test", MaxBytes: 64 << 10}, pub, log, metrics.New(prometheus.NewRegistry()))
}

func contractEvent() keptnevent.Triggered {
	body := []byte(`{"specversion":"1.0","id":"` + contractTriggeredID + `","source":"shipyard-controller",` +
		`"type":"sh.keptn.event.action.triggered","shkeptncontext":"` + contractKeptnContext + `",` +
		`"data":{"project":"sockshop","stage":"production","service":"carts","action":{"action":"scale","value":1}}}`)
	t, err := keptnevent.Decode(http.Header{"Content-Type": {"application/cloudevents+json"}}, body)
	if err != nil {
		panic(err)
	}
	return t
}

var _ Claimer = (*claims)(nil)

// At shutdown, actions are cancelled before the queue is drained. A queued
// event that another process already took must still be recognised as
// taken: cancelling actions must not turn its claim into "run anyway".
func TestClaimDuringShutdownLeavesAnotherProcesssEventAlone(t *testing.T) {
	book := &book{records: map[string]*rec{contractTriggeredID: {holder: "other", state: "started"}}, dead: map[string]bool{}}
	pub := &broker{}
	a := newContractLifecycle(t, book.process("a", nil), pub, nil)
	a.Start(context.Background())
	a.Cancel() // SIGTERM's grace is over: actions are cancelled
	if d := a.Submit(context.Background(), contractEvent()); d != intake.Accepted {
		t.Fatalf("Submit = %v", d)
	}
	a.Close()
	if err := a.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := pub.count(keptnevent.StartedType) + pub.count(keptnevent.FinishedType); n != 0 {
		t.Fatalf("Keptn got %d events for an event another process owns:\n%s", n, pub.String())
	}
}

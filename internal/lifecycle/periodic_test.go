package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/intake"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// counting is a Claimer that counts the periodic calls the provider makes
// through the Lifecycle, and fails them when told to.
type counting struct {
	*claims
	beats, sweeps atomic.Int32
	fail          bool
}

func (c *counting) Heartbeat(context.Context) error {
	c.beats.Add(1)
	if c.fail {
		return errors.New("the API server is away")
	}
	return nil
}

func (c *counting) Sweep(context.Context) (int, error) {
	c.sweeps.Add(1)
	if c.fail {
		return 0, errors.New("the API server is away")
	}
	return 3, nil
}

// Beat and Sweep reach the cluster's record every time they are called,
// whether or not the last call failed: a heartbeat that is not sent makes
// other replicas take this one's actions for orphans. Without a record
// they do nothing.
func TestBeatAndSweepReachTheRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail bool
	}{
		{"the record answers", false},
		{"the record fails", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			book := &book{records: map[string]*rec{}, dead: map[string]bool{}}
			c := &counting{claims: book.process("a", nil), fail: tc.fail}
			l := newContractLifecycle(t, c.claims, &broker{}, nil)
			l.claims = c
			for range 2 {
				l.Beat(context.Background())
				l.Sweep(context.Background())
			}
			if b, s := c.beats.Load(), c.sweeps.Load(); b != 2 || s != 2 {
				t.Errorf("%d heartbeats and %d sweeps for 2 calls of each; want 2 and 2", b, s)
			}
		})
	}
	t.Run("no record", func(t *testing.T) {
		l := newContractLifecycle(t, nil, &broker{}, nil)
		l.claims = nil
		l.Beat(context.Background())
		l.Sweep(context.Background())
	})
}

// Recover reports each orphan once: with the finished event its process
// was sending, or, when it died mid-action, with one that says so. An
// orphan without a usable record (no triggered event, or one without an
// id, or one that does not decode as a triggered event) cannot be
// answered, and nothing is sent for it.
func TestRecoverReportsOrphans(t *testing.T) {
	record := inFlight(contractEvent())
	for _, tc := range []struct {
		name     string
		record   []byte
		finished []byte
		want     string // in the one finished event sent; "" for none sent
	}{
		{"died mid-action", record, nil, `"status":"errored"`},
		{"died sending its finished event", record, []byte(`{"the":"finished event"}`), `{"the":"finished event"}`},
		{"a record without an id", []byte(`{"type":"sh.keptn.event.action.triggered"}`), nil, ""},
		{"an unreadable record", []byte(`{"id":`), nil, ""},
		{"a record of another shape", []byte(`{"id":"` + contractTriggeredID + `","data":"not an object"}`), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			book := &book{records: map[string]*rec{contractTriggeredID: {
				holder: "dead", state: "started", record: tc.record, finished: tc.finished}}, dead: map[string]bool{"dead": true}}
			pub := &broker{}
			b := newContractLifecycle(t, book.process("b", nil), pub, nil)
			b.Recover(context.Background())
			b.Recover(context.Background())
			n := pub.count(keptnevent.FinishedType)
			switch {
			case tc.want == "" && n != 0:
				t.Fatalf("sent %d finished events for an unusable record:\n%s", n, pub)
			case tc.want != "" && (n != 1 || !strings.Contains(pub.String(), tc.want)):
				t.Fatalf("sent %d finished events; want one containing %s:\n%s", n, tc.want, pub)
			}
		})
	}
}

// run and Report turn what a handler did into the finished event's status,
// result and message: a panic, a timeout and a shutdown each become an
// error a person can read; a handler that returns normally is never
// reported as crashed.
func TestRunAndReport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handler  handlerFunc
		shutdown bool // the provider shut down before the action could start
		status   keptnv2.StatusType
		result   keptnv2.ResultType
		message  string // in the message
	}{
		{"passes", func(context.Context, action.Request) (action.Outcome, error) { return action.Pass("scaled"), nil },
			false, keptnv2.StatusSucceeded, keptnv2.ResultPass, "scaled"},
		{"warns", func(context.Context, action.Request) (action.Outcome, error) { return action.Warning("slow"), nil },
			false, keptnv2.StatusSucceeded, keptnv2.ResultWarning, "slow"},
		{"no result", func(context.Context, action.Request) (action.Outcome, error) {
			return action.Outcome{Message: "done"}, nil
		},
			false, keptnv2.StatusSucceeded, keptnv2.ResultPass, "done"},
		{"fails", func(context.Context, action.Request) (action.Outcome, error) {
			return action.Outcome{}, errors.New("boom")
		},
			false, keptnv2.StatusErrored, keptnv2.ResultFailed, "boom"},
		{"refuses", func(context.Context, action.Request) (action.Outcome, error) {
			return action.Outcome{}, action.Refuse("cooldown", "not yet")
		}, false, keptnv2.StatusSucceeded, keptnv2.ResultFailed, "refused (cooldown): not yet"},
		{"panics", func(context.Context, action.Request) (action.Outcome, error) { panic("boom") },
			false, keptnv2.StatusErrored, keptnv2.ResultFailed, "action scale crashed (panic: boom)"},
		{"times out", func(ctx context.Context, _ action.Request) (action.Outcome, error) {
			<-ctx.Done()
			return action.Outcome{}, ctx.Err()
		}, false, keptnv2.StatusErrored, keptnv2.ResultFailed, "timed out after 10ms"},
		{"shut down first", func(context.Context, action.Request) (action.Outcome, error) { return action.Pass("ran"), nil },
			true, keptnv2.StatusErrored, keptnv2.ResultFailed, "not run: the provider shut down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newContractLifecycle(t, nil, &broker{}, nil)
			l.cfg.ActionTimeout = 10 * time.Millisecond
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.shutdown {
				cancel()
			}
			out, err := l.run(parent, job{event: contractEvent(), action: "scale", handler: tc.handler, log: l.log})
			status, result, message := Report(out, err)
			if status != tc.status || result != tc.result || !strings.Contains(message, tc.message) {
				t.Errorf("reported %s/%s %q; want %s/%s containing %q", status, result, message, tc.status, tc.result, tc.message)
			}
		})
	}
}

// listing is a Claimer whose Orphans hands over a fixed list, in order.
type listing struct {
	*claims
	orphans []Orphan
}

func (c *listing) Orphans(context.Context) ([]Orphan, error) { return c.orphans, nil }

// An orphan that cannot be answered does not keep Recover from the ones
// after it.
func TestRecoverGoesOnAfterAnUnusableOrphan(t *testing.T) {
	book := &book{records: map[string]*rec{}, dead: map[string]bool{}}
	pub := &broker{}
	c := &listing{claims: book.process("b", nil), orphans: []Orphan{
		{ID: "unusable", Record: []byte(`{"id":`), Replica: "dead"},
		{ID: contractTriggeredID, Record: inFlight(contractEvent()), Replica: "dead"},
	}}
	book.records[contractTriggeredID] = &rec{holder: "b", state: "recovering"}
	b := newContractLifecycle(t, c.claims, pub, nil)
	b.claims = c
	b.Recover(context.Background())
	if n := pub.count(keptnevent.FinishedType); n != 1 {
		t.Fatalf("sent %d finished events; want one, for the usable orphan after the unusable one:\n%s", n, pub)
	}
}

// A refusal is counted by its rule, and an orphan answered by this
// replica is counted: the dashboard's refusals panel and the "orphans
// were recovered" alert read them.
func TestRefusalsAndOrphansAreCounted(t *testing.T) {
	l := newContractLifecycle(t, nil, &broker{}, nil)
	l.claims = nil
	var reg action.Registry
	if err := reg.Register("scale", handlerFunc(func(context.Context, action.Request) (action.Outcome, error) {
		return action.Outcome{}, action.Refuse("budget", "spent")
	})); err != nil {
		t.Fatal(err)
	}
	l.registry = &reg
	l.Start(context.Background())
	if d := l.Submit(context.Background(), contractEvent()); d != intake.Accepted {
		t.Fatalf("Submit = %v", d)
	}
	l.Close()
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(l.metrics.Refusals.WithLabelValues("budget")); n != 1 {
		t.Errorf("refusals{rule=budget} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(l.metrics.QueueCapacity); n != 1 {
		t.Errorf("queue capacity = %v, want QueueSize 1", n)
	}

	book := &book{records: map[string]*rec{contractTriggeredID: {
		holder: "dead", state: "started", record: inFlight(contractEvent())}}, dead: map[string]bool{"dead": true}}
	b := newContractLifecycle(t, book.process("b", nil), &broker{}, nil)
	b.Recover(context.Background())
	if n := testutil.ToFloat64(b.metrics.OrphansRecovered); n != 1 {
		t.Errorf("orphans recovered = %v, want 1", n)
	}
}

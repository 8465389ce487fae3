package lifecycle

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

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

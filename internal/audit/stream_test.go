package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

func triggered(id string) keptnevent.Triggered {
	t := keptnevent.Triggered{ID: id, KeptnContext: "ctx-" + id}
	t.Data.Project, t.Data.Stage, t.Data.Service = "sockshop", "production", "carts"
	t.Data.Action.Action = "scale"
	return t
}

func TestFinishedWritesTheDocumentedLine(t *testing.T) {
	var buf bytes.Buffer
	s := NewStream(&buf, "action-provider-7c9d-xk2p", &secret.Masker{})
	s.now = func() time.Time { return time.Date(2026, 11, 24, 3, 0, 0, 123456789, time.FixedZone("CET", 3600)) }
	ctx, note := WithNote(context.Background())
	NoteFrom(ctx).Target("deployment sockshop-production/carts")
	NoteFrom(ctx).Change("replicas 1", "replicas 3")
	NoteFrom(ctx).Approver("by kubectl-annotate")
	err := s.Finished(Finish{Event: triggered("id-1"), Action: "scale", Status: "succeeded", Result: "pass",
		Message: "scaled deployment sockshop-production/carts from 1 to 3 replicas", Duration: 1500 * time.Millisecond, Note: note})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"time":"2026-11-24T02:00:00.123456789Z","shkeptncontext":"ctx-id-1","triggeredid":"id-1",` +
		`"project":"sockshop","stage":"production","service":"carts","action":"scale","status":"succeeded","result":"pass",` +
		`"message":"scaled deployment sockshop-production/carts from 1 to 3 replicas","duration_ms":1500,` +
		`"target":"deployment sockshop-production/carts","before":"replicas 1","after":"replicas 3",` +
		`"approver":"by kubectl-annotate","replica":"action-provider-7c9d-xk2p"}` + "\n"
	if buf.String() != want {
		t.Errorf("line\n got %s\nwant %s", buf.String(), want)
	}
}

func TestFinishedNamesTheRefusingRule(t *testing.T) {
	var buf bytes.Buffer
	s := NewStream(&buf, "", nil)
	refusal := action.Refuse("cooldown", "scale changed deployment ns/carts 1m ago")
	if err := s.Finished(Finish{Event: triggered("id-2"), Status: string(keptnv2.StatusSucceeded),
		Result: string(keptnv2.ResultFailed), Message: refusal.Error(), Err: fmt.Errorf("gate: %w", refusal)}); err != nil {
		t.Fatal(err)
	}
	var l Line
	if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
		t.Fatal(err)
	}
	if l.RefusedRule != "cooldown" || l.Action != "scale" || l.Result != "fail" || l.Target != "" {
		t.Errorf("line %+v: want refused_rule cooldown, the event's action, no target", l)
	}
	if strings.Contains(buf.String(), `"approver"`) || strings.Contains(buf.String(), `"replica"`) {
		t.Errorf("empty optional fields written: %s", buf.String())
	}
}

func TestEveryTextFieldIsMasked(t *testing.T) {
	var buf bytes.Buffer
	m := &secret.Masker{}
	m.Add("s3cr3t-token")
	s := NewStream(&buf, "r", m)
	ctx, note := WithNote(context.Background())
	NoteFrom(ctx).Change("token s3cr3t-token", "header Bearer s3cr3t-token")
	if err := s.Finished(Finish{Event: triggered("id-3"), Message: "POST ?t=s3cr3t-token answered 500", Note: note}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "s3cr3t") || strings.Count(buf.String(), secret.Mask) != 3 {
		t.Errorf("line not masked: %s", buf.String())
	}
}

func TestNilStreamAndNilNoteDoNothing(t *testing.T) {
	var s *Stream
	if err := s.Finished(Finish{Event: triggered("x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := NoteFrom(context.Background())
	n.Target("x") // no panic
	if s, err := OpenStream(StreamOff, "r", nil); s != nil || err != nil {
		t.Fatalf("OpenStream(off) = %v, %v; want nil, nil", s, err)
	}
}

// Concurrent writers to one file give whole lines, one per action, and
// the file is the operator's only: mode 0600, appended to.
func TestFileStreamConcurrentWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte("earlier line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStream(path, "r", &secret.Masker{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 50
	long := strings.Repeat("x", 8192) // beyond PIPE_BUF: still one write
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Finished(Finish{Event: triggered(id), Message: long}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	seen := map[string]bool{}
	sc.Scan()
	if sc.Text() != "earlier line" {
		t.Fatalf("first line %q: the file was not appended to", sc.Text())
	}
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a whole line: %v: %.80s", err, sc.Text())
		}
		seen[l.TriggeredID] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct lines, want %d", len(seen), writers*each)
	}
	fresh := filepath.Join(t.TempDir(), "new.jsonl")
	s2, err := OpenStream(fresh, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	fi, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("new audit log has mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenStreamFailsOnABadPath(t *testing.T) {
	_, err := OpenStream(filepath.Join(t.TempDir(), "missing", "audit.jsonl"), "r", nil)
	if err == nil || !strings.Contains(err.Error(), "AUDIT_LOG") {
		t.Fatalf("err = %v; want one naming AUDIT_LOG", err)
	}
}

func TestSummarizeKeepsTheOutcome(t *testing.T) {
	tr := triggered("id-9")
	record, _ := json.Marshal(tr)
	finished := []byte(`{"shkeptncontext":"ctx-id-9","data":{"project":"sockshop","stage":"production","service":"carts",` +
		`"status":"succeeded","result":"fail","message":"refused (cooldown): ` + strings.Repeat("y", 2000) + `"}}`)
	var o Outcome
	if err := json.Unmarshal([]byte(Summarize(record, finished)), &o); err != nil {
		t.Fatal(err)
	}
	if o.Action != "scale" || o.Stage != "production" || o.Result != "fail" || o.ShKeptnContext != "ctx-id-9" ||
		!strings.HasPrefix(o.Message, "refused (cooldown)") || len(o.Message) > maxOutcomeMessage {
		t.Errorf("outcome %+v", o)
	}
	if Summarize(nil, nil) != "" {
		t.Error("Summarize of nothing is not empty")
	}
}

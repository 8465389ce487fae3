package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/history"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestHistoryAfterActions: the binary scales, restarts and refuses on the
// control plane; history.Read, and the binary's history command, then find
// the audit Events of the two changes and the ledger's records of all
// three, oldest first.
func TestHistoryAfterActions(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)

	sink := &eventsink.Sink{}
	auditLog := filepath.Join(t.TempDir(), "audit.jsonl")
	p := startProvider(ctx, t, map[string]string{"EVENTBROKER": testsupport.ServeSink(t, sink), "SCALE_MAX_REPLICAS": "10", "AUDIT_LOG": auditLog})
	steps := []struct {
		example string
		value   any
		reason  string // the audit Event's; "" for a refusal
	}{
		{"01-scale-up.json", map[string]string{"replicas": "+1"}, "Scaled"},
		{"07-restart.json", nil, "Restarted"},
		{"01-scale-up.json", map[string]string{"replicas": "11"}, ""},
	}
	var ids []string
	for _, s := range steps {
		id, body := triggered(t, s.example, stage, s.value)
		if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %q", s.example, code, answer)
		}
		fin := awaitFinished(ctx, t, sink, id)
		if (s.reason == "") != (fin.Data.Result == "fail") {
			t.Fatalf("%s: finished %s/%s %q", s.example, fin.Data.Status, fin.Data.Result, fin.Data.Message)
		}
		ids = append(ids, id)
	}
	// AUDIT_LOG: one line per action, with what the pipeline knew.
	var audited []map[string]any
	eventually(ctx, t, "an audit line per action", func(context.Context) (bool, string, error) {
		b, err := os.ReadFile(auditLog)
		if err != nil && !os.IsNotExist(err) {
			return false, "", err
		}
		audited = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				audited = append(audited, m)
			}
		}
		return len(audited) == len(ids), fmt.Sprintf("%d lines", len(audited)), nil
	})
	target := "deployment " + ns + "/carts"
	for i, l := range audited {
		if l["v"] != 1.0 || l["triggeredid"] != ids[i] || l["target"] != target || l["duration_ms"] == nil {
			t.Errorf("audit line %d: %v", i, l)
		}
	}
	if l := audited[0]; l["before"] != "1 replica" || l["after"] != "2 replicas" || l["result"] != "pass" {
		t.Errorf("the scale's audit line: %v", l)
	}
	if l := audited[2]; l["refused_rule"] == nil || l["result"] != "fail" {
		t.Errorf("the refusal's audit line: %v", l)
	}

	// The last record, "finished", is written just after the finished
	// event is delivered.
	var all []history.Entry
	eventually(ctx, t, "the ledger records every action finished", func(ctx context.Context) (bool, string, error) {
		var err error
		all, err = history.Read(ctx, cp.api, history.Options{Since: time.Hour, LedgerNamespace: ledgerNamespace})
		if err != nil {
			return false, "", err
		}
		finished := 0
		for _, e := range ours(all, ids) {
			if e.Source == history.SourceLedger && e.What == history.StateFinished {
				finished++
			}
		}
		return finished == len(ids), fmt.Sprintf("%d of %d finished", finished, len(ids)), nil
	})

	got := ours(all, ids)
	var seq []string
	for _, e := range got {
		seq = append(seq, e.Source+":"+e.What+":"+e.TriggeredID)
	}
	// Events keep whole seconds: within one, the claims come first.
	pos := map[string]int{}
	for i, s := range seq {
		pos[s] = i
	}
	for _, w := range []string{"ledger:finished:" + ids[0], "event:Scaled:" + ids[0], "ledger:finished:" + ids[1],
		"event:Restarted:" + ids[1], "ledger:finished:" + ids[2]} {
		if _, ok := pos[w]; !ok {
			t.Errorf("history lacks %s: %v", w, seq)
		}
	}
	if len(seq) != 5 || pos["ledger:finished:"+ids[0]] > pos["event:Scaled:"+ids[0]] || pos["ledger:finished:"+ids[1]] > pos["event:Restarted:"+ids[1]] ||
		pos["event:Scaled:"+ids[0]] > pos["event:Restarted:"+ids[1]] || pos["ledger:finished:"+ids[1]] > pos["ledger:finished:"+ids[2]] {
		t.Fatalf("history, oldest first: %v", seq)
	}
	at := func(s string) history.Entry { return got[pos[s]] }
	for i, e := range got {
		if i > 0 && e.Time.Truncate(time.Second).Before(got[i-1].Time.Truncate(time.Second)) {
			t.Errorf("entry %d (%s) is older than the one before it", i, e.Time)
		}
		switch {
		case e.Source == history.SourceEvent && (e.Namespace != ns || e.Target != "Deployment/carts" || e.Context != "ctx-"+e.TriggeredID || e.Replica == ""):
			t.Errorf("event entry %+v: want the target in %s, the context and the replica", e, ns)
		case e.Source == history.SourceLedger && e.TriggeredID != ids[2] && (e.Namespace != ns || e.Target != "Deployment/carts"):
			t.Errorf("ledger entry %+v: want it joined to its Event's target", e)
		case e.Source == history.SourceLedger && e.Replica == "":
			t.Errorf("ledger entry %+v: no holder", e)
		}
	}
	if sc, re := at("event:Scaled:"+ids[0]), at("event:Restarted:"+ids[1]); sc.Action != "scale" || re.Action != "restart" || !strings.Contains(sc.Message, "replicas") {
		t.Errorf("actions %q, %q; message %q", sc.Action, re.Action, sc.Message)
	}

	// --namespace keeps what happened there: the two changes.
	inNS, err := history.Read(ctx, cp.api, history.Options{Since: time.Hour, Namespaces: []string{ns}, LedgerNamespace: ledgerNamespace})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ours(inNS, ids)); n != 4 || len(inNS) != 4 {
		t.Errorf("--namespace %s: %d entries (%d ours), want the 4 of the two changes", ns, len(inNS), n)
	}

	// The binary's command, as an operator runs it.
	env := []string{"KUBECONFIG=" + cluster.env["KUBECONFIG"], "SANDBOX=false", "POD_NAMESPACE=" + ledgerNamespace, "HOME=" + t.TempDir()}
	out := historyCommand(ctx, t, env, "--since", "1h", "--namespace", ns, "--output", "json")
	var js []history.Entry
	if err := json.Unmarshal(out, &js); err != nil {
		t.Fatalf("--output json: %v\n%s", err, out)
	}
	if len(js) != 4 || js[3].What != "Restarted" || js[3].TriggeredID != ids[1] {
		t.Errorf("--output json:\n%s", out)
	}
	table := string(historyCommand(ctx, t, env, "--namespace", ns))
	t.Logf("action-provider history --namespace %s:\n%s", ns, table)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "TIME") || lines[6] != "2 actions, 0 refused or failed, 0 in flight" ||
		!strings.Contains(lines[4], "Restarted") || !strings.Contains(lines[4], ns+"/Deployment/carts") || lines[5] != "" {
		t.Errorf("table:\n%s", table)
	}
}

// ours keeps the entries of the triggered ids: other tests share the
// cluster and the ledger's namespace.
func ours(entries []history.Entry, ids []string) []history.Entry {
	var out []history.Entry
	for _, e := range entries {
		for _, id := range ids {
			if e.TriggeredID == id {
				out = append(out, e)
			}
		}
	}
	return out
}

// historyCommand runs action-provider history with args and returns its
// standard output.
func historyCommand(ctx context.Context, t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, providerBin, append([]string{"history"}, args...)...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("action-provider history %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

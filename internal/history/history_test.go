package history

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

var now = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

// recorded writes an audit Event as audit.Recorder does.
func recorded(t *testing.T, c *fake.Clientset, at time.Time, ref workload.Ref, e audit.Entry) {
	t.Helper()
	ts := metav1.NewTime(at)
	typ := corev1.EventTypeNormal
	if e.Warning {
		typ = corev1.EventTypeWarning
	}
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: ref.Name + "." + at.Format("150405"), Namespace: ref.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: string(ref.Kind), Namespace: ref.Namespace, Name: ref.Name},
		Reason:         e.Reason, Message: e.Message(), Type: typ, Action: e.Action,
		Source: corev1.EventSource{Component: audit.Component}, FirstTimestamp: ts, LastTimestamp: ts,
		ReportingController: audit.Component, ReportingInstance: "provider-0",
	}
	if _, err := c.CoreV1().Events(ref.Namespace).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// claimed writes a claimed event's Lease as the ledger does.
func claimed(t *testing.T, c *fake.Clientset, at time.Time, id, state string, annotations map[string]string) {
	t.Helper()
	acquired := metav1.NewMicroTime(at)
	holder := "provider-0.a1b2c3"
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: "event-" + id, Namespace: "keptn",
			Labels:      map[string]string{recordLabel: recordEvent},
			Annotations: map[string]string{triggeredIDKey: id},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &acquired, RenewTime: &acquired},
	}
	if state != "" {
		l.Labels[stateLabel] = state
	}
	for k, v := range annotations {
		l.Annotations[k] = v
	}
	if _, err := c.CoordinationV1().Leases("keptn").Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func inFlight(t *testing.T, id, actionName string) string {
	t.Helper()
	tr := keptnevent.Triggered{ID: id, KeptnContext: "ctx-" + id}
	tr.Data.Project, tr.Data.Stage, tr.Data.Service, tr.Data.Action.Action = "sockshop", "production", "carts", actionName
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixture: in sockshop-production, carts scaled (id-1) and restarted
// (id-2); in sockshop-staging, orders restarted with a warning (id-3) a
// day and a half ago; a refusal the ledger kept the outcome of (id-4); a
// scale still running (id-5); an unrelated Event of another component.
func fixture(t *testing.T) *fake.Clientset {
	c := fake.NewClientset()
	carts := workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-production", Name: "carts"}
	orders := workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-staging", Name: "orders"}
	recorded(t, c, now.Add(-50*time.Minute), carts, audit.Entry{Reason: "Scaled", Action: "scale", Change: "replicas 1 → 3", Context: "ctx-id-1", Trigger: "id-1"})
	recorded(t, c, now.Add(-20*time.Minute), carts, audit.Entry{Reason: "Restarted", Action: "restart", Change: "pods replaced", Context: "ctx-id-2", Trigger: "id-2"})
	recorded(t, c, now.Add(-36*time.Hour), orders, audit.Entry{Reason: "Restarted", Action: "restart", Change: "pods replaced", Context: "ctx-id-3", Trigger: "id-3", Warning: true})
	claimed(t, c, now.Add(-51*time.Minute), "id-1", StateFinished, nil)
	claimed(t, c, now.Add(-21*time.Minute), "id-2", StateFinished, nil)
	claimed(t, c, now.Add(-10*time.Minute), "id-4", StateFinished, map[string]string{
		audit.OutcomeAnnotation: `{"action":"scale","shkeptncontext":"ctx-id-4","stage":"production","status":"succeeded","result":"fail","message":"refused (cooldown): scale changed deployment sockshop-production/carts 40m ago"}`,
	})
	claimed(t, c, now.Add(-1*time.Minute), "id-5", StateStarted, map[string]string{recordKey: inFlight(t, "id-5", "scale")})
	other := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "carts.x", Namespace: "sockshop-production"},
		InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: "sockshop-production", Name: "carts"},
		Reason:         "ScalingReplicaSet", Source: corev1.EventSource{Component: "deployment-controller"},
		LastTimestamp: metav1.NewTime(now.Add(-50 * time.Minute)),
	}
	if _, err := c.CoreV1().Events("sockshop-production").Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func opts(edit func(*Options)) Options {
	o := Options{LedgerNamespace: "keptn", Now: func() time.Time { return now }}
	if edit != nil {
		edit(&o)
	}
	return o
}

type row struct{ source, target, action, what, result, id string }

func rows(entries []Entry) []row {
	var out []row
	for _, e := range entries {
		out = append(out, row{e.Source, e.Namespace + "/" + e.Target, e.Action, e.What, e.Result, e.TriggeredID})
	}
	return out
}

func check(t *testing.T, got []Entry, want []row) {
	t.Helper()
	g := rows(got)
	if len(g) != len(want) {
		t.Fatalf("got %d entries, want %d:\n%v", len(g), len(want), g)
	}
	for i := range want {
		if g[i] != want[i] {
			t.Errorf("entry %d\n got %+v\nwant %+v", i, g[i], want[i])
		}
	}
}

func TestReadMergesEventsAndLedgerOldestFirst(t *testing.T) {
	got, err := Read(context.Background(), adapt.Clientset(fixture(t)), opts(nil))
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, []row{
		{SourceLedger, "sockshop-production/Deployment/carts", "scale", StateFinished, "", "id-1"},
		{SourceEvent, "sockshop-production/Deployment/carts", "scale", "Scaled", "Normal", "id-1"},
		{SourceLedger, "sockshop-production/Deployment/carts", "restart", StateFinished, "", "id-2"},
		{SourceEvent, "sockshop-production/Deployment/carts", "restart", "Restarted", "Normal", "id-2"},
		{SourceLedger, "keptn/", "scale", StateFinished, "fail", "id-4"},
		{SourceLedger, "keptn/", "scale", StateStarted, "", "id-5"},
	})
	if e := got[1]; e.Message != "replicas 1 → 3" || e.Context != "ctx-id-1" || e.Replica != "provider-0" {
		t.Errorf("Scaled entry %+v: want the change as message, the context and the replica", e)
	}
	if e := got[0]; e.Replica != "provider-0.a1b2c3" || !e.Time.Equal(now.Add(-51*time.Minute)) {
		t.Errorf("ledger entry %+v: want the holder and the claim's time", e)
	}
	if e := got[5]; !e.InFlight() || e.Context != "ctx-id-5" || e.Message != "sockshop/production/carts" {
		t.Errorf("in-flight entry %+v", e)
	}
}

func TestReadSinceAndNamespaces(t *testing.T) {
	c := fixture(t)
	got, err := Read(context.Background(), adapt.Clientset(c), opts(func(o *Options) { o.Since = 48 * time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[0].TriggeredID != "id-3" || got[0].Result != corev1.EventTypeWarning {
		t.Fatalf("48h: %v; want the staging restart first", rows(got))
	}
	got, err = Read(context.Background(), adapt.Clientset(c), opts(func(o *Options) {
		o.Since, o.Namespaces = 48*time.Hour, []string{"sockshop-staging"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, []row{{SourceEvent, "sockshop-staging/Deployment/orders", "restart", "Restarted", "Warning", "id-3"}})
	got, err = Read(context.Background(), adapt.Clientset(c), opts(func(o *Options) {
		o.Since, o.Namespaces = 30*time.Minute, []string{"sockshop-production"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, []row{
		{SourceLedger, "sockshop-production/Deployment/carts", "restart", StateFinished, "", "id-2"},
		{SourceEvent, "sockshop-production/Deployment/carts", "restart", "Restarted", "Normal", "id-2"},
	})
}

func TestTableAndJSON(t *testing.T) {
	entries, err := Read(context.Background(), adapt.Clientset(fixture(t)), opts(nil))
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := Table(&table, entries, time.UTC); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(table.String(), "\n"), "\n")
	t.Logf("\n%s", table.String())
	if !strings.HasPrefix(lines[0], "TIME ") || !strings.Contains(lines[0], "TRIGGEREDID") {
		t.Errorf("header %q", lines[0])
	}
	want := "4 actions, 1 refused or failed, 1 in flight"
	if last := lines[len(lines)-1]; last != want {
		t.Errorf("summary %q, want %q", last, want)
	}
	// Columns are aligned: every row's TRIGGEREDID starts where the header's does.
	col := strings.Index(lines[0], "TRIGGEREDID")
	for _, l := range lines[1 : len(lines)-2] {
		if !strings.HasPrefix(l[col:], "id-") {
			t.Errorf("row not aligned at column %d: %q", col, l)
		}
	}
	if !strings.Contains(lines[len(lines)-3], "2026-11-24 02:59:00  -") || !strings.Contains(lines[len(lines)-3], "started") {
		t.Errorf("newest row, last: %q", lines[len(lines)-3])
	}

	var js bytes.Buffer
	if err := JSON(&js, entries); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != len(entries) {
		t.Fatalf("JSON: %v, %d entries", err, len(back))
	}
	for _, k := range []string{"time", "source", "namespace", "target", "action", "what", "result", "message", "triggeredid", "shkeptncontext", "replica"} {
		if _, ok := back[1][k]; !ok {
			t.Errorf("JSON entry lacks %q: %v", k, back[1])
		}
	}
	js.Reset()
	if err := JSON(&js, nil); err != nil || strings.TrimSpace(js.String()) != "[]" {
		t.Errorf("JSON of nothing = %q, %v; want []", js.String(), err)
	}
}

// A provider that may not list Events everywhere gets an error naming
// where, not an empty history.
func TestReadReportsAForbiddenList(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("list", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("events"), "", nil)
	})
	_, err := Read(context.Background(), adapt.Clientset(c), opts(nil))
	if err == nil || !strings.Contains(err.Error(), "all namespaces") {
		t.Fatalf("err = %v", err)
	}
}

package restart

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
)

var stamp = time.Date(2026, 11, 24, 3, 4, 5, 0, time.UTC)

func newHandler(t *testing.T) (*Handler, *sandbox.Cluster) {
	t.Helper()
	c, err := sandbox.New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	h := New(&pipeline.Pipeline{Client: c, Policy: guard.Policy{Namespaces: []string{"*"}}, VerifyInterval: time.Millisecond})
	h.now = func() time.Time { return stamp }
	return h, c
}

func request(value string) action.Request {
	req := action.Request{Action: "restart", Project: "sockshop", Stage: "production", Service: "carts"}
	if value != "" {
		req.Value = json.RawMessage(value)
	}
	return req
}

// templateStamp reads the restart annotation of a workload's pod template.
func templateStamp(t *testing.T, c kube.Interface, kind, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	var tmpl map[string]string
	switch kind {
	case "deployment":
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = d.Spec.Template.Annotations
	case "statefulset":
		s, err := c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = s.Spec.Template.Annotations
	case "daemonset":
		d, err := c.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tmpl = d.Spec.Template.Annotations
	}
	return tmpl[Annotation]
}

func TestRestart(t *testing.T) {
	tests := []struct {
		name           string
		value          string
		dryRun         bool
		kind, ns, wl   string
		want           string // start of the pass message
		wantStampAfter string
	}{
		{"the service's deployment", "", false, "deployment", "sockshop-production", "carts",
			"restarted deployment sockshop-production/carts (never restarted)", "2026-11-24T03:04:05Z"},
		{"a statefulset by name", `{"kind": "sts", "name": "carts-db"}`, false, "statefulset", "sockshop-production", "carts-db",
			"restarted statefulset sockshop-production/carts-db (never restarted)", "2026-11-24T03:04:05Z"},
		{"a daemonset elsewhere", `{"kind": "daemonset", "namespace": "monitoring", "name": "node-exporter"}`, false, "daemonset", "monitoring", "node-exporter",
			"restarted daemonset monitoring/node-exporter (never restarted)", "2026-11-24T03:04:05Z"},
		{"dry run in the value", `{"dryRun": true}`, false, "deployment", "sockshop-production", "carts",
			"dry run: would restart deployment sockshop-production/carts (never restarted)", ""},
		{"dry run of the provider", "", true, "deployment", "sockshop-production", "carts",
			"dry run: would restart deployment sockshop-production/carts", ""},
		{"no wait", `{"wait": false}`, false, "deployment", "sockshop-production", "carts",
			"restarted deployment sockshop-production/carts (never restarted); not waiting for the rollout (wait: false)", "2026-11-24T03:04:05Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c := newHandler(t)
			req := request(tt.value)
			req.DryRun = tt.dryRun
			got, err := h.Run(context.Background(), req)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got.Result != keptnv2.ResultPass || !strings.HasPrefix(got.Message, tt.want) {
				t.Errorf("Run = %+v, want a pass starting %q", got, tt.want)
			}
			if s := templateStamp(t, c, tt.kind, tt.ns, tt.wl); s != tt.wantStampAfter {
				t.Errorf("restartedAt afterwards = %q, want %q", s, tt.wantStampAfter)
			}
		})
	}
}

func TestRestartSaysWhenItLastRestarted(t *testing.T) {
	h, _ := newHandler(t)
	ctx := context.Background()
	if _, err := h.Run(ctx, request(`{"wait": false}`)); err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return stamp.Add(time.Hour) }
	got, err := h.Run(ctx, request(`{"wait": false}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "restarted deployment sockshop-production/carts (last restarted 2026-11-24T03:04:05Z)"; !strings.HasPrefix(got.Message, want) {
		t.Errorf("second restart: %q, want it to start %q", got.Message, want)
	}
}

func TestRestartRefusesPausedDeployment(t *testing.T) {
	h, c := newHandler(t)
	ctx := context.Background()
	d, err := c.AppsV1().Deployments("sockshop-production").Get(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Paused = true
	if _, err := c.AppsV1().Deployments("sockshop-production").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(ctx, request(""))
	if err == nil || !strings.Contains(err.Error(), "cannot restart deployment sockshop-production/carts: it is paused; resume it first") {
		t.Fatalf("Run error = %v, want the paused refusal", err)
	}
	if s := templateStamp(t, c, "deployment", "sockshop-production", "carts"); s != "" {
		t.Errorf("a paused deployment was stamped %q", s)
	}
}

func TestRestartValueErrors(t *testing.T) {
	tests := map[string]string{
		`"now"`:              `invalid value for action "restart": a value of type a string is not understood; accepted forms: no value`,
		`{"wait": "no"}`:     `"wait" is a JSON string, want bool`,
		`{"replicas": 2}`:    `unknown key "replicas"`,
		`{"timeout": "-1s"}`: `"-1s" is not a positive duration`,
		`{"kind": "pod"}`:    `unknown kind "pod"`,
	}
	for value, want := range tests {
		h, _ := newHandler(t)
		_, err := h.Run(context.Background(), request(value))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("value %s: error %v, want it to contain %q", value, err, want)
		}
	}
}

package scale_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/scale"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// newPipeline runs the action with every namespace allowed and no ledger or
// audit: those stages have tests of their own.
func newPipeline(c kube.Interface) *pipeline.Pipeline {
	return &pipeline.Pipeline{Client: c, Policy: guard.Policy{Namespaces: []string{"*"}}, VerifyTimeout: 5 * time.Second}
}

func newSandbox(t testing.TB) *sandbox.Cluster {
	t.Helper()
	cs, err := sandbox.New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// specReplicas reads spec.replicas of a workload straight from the cluster.
func specReplicas(t *testing.T, c kube.Interface, ref workload.Ref) int32 {
	t.Helper()
	ctx := context.Background()
	switch ref.Kind {
	case workload.Deployment:
		d, err := c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	case workload.StatefulSet:
		s, err := c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *s.Spec.Replicas
	}
	t.Fatalf("no replicas for %s", ref)
	return 0
}

func request(stage, value string) action.Request {
	req := action.Request{Action: "scale", Project: "sockshop", Stage: stage, Service: "carts"}
	if value != "" {
		req.Value = json.RawMessage(value)
	}
	return req
}

var (
	prodCarts     = workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-production", Name: "carts"}
	prodCartsDB   = workload.Ref{Kind: workload.StatefulSet, Namespace: "sockshop-production", Name: "carts-db"}
	stagingCanary = workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-staging", Name: "carts"}
	stagingCarts  = workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-staging", Name: "carts-primary"}
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		opts    scale.Options
		req     action.Request
		want    string // the Pass message; empty when an error is expected
		wantErr string // substring of the error
		check   workload.Ref
		after   int32 // spec.replicas of check afterwards
	}{
		{
			name: "absolute", req: request("production", `{"replicas": "3"}`),
			want:  "scaled deployment sockshop-production/carts from 1 to 3 replicas",
			check: prodCarts, after: 3,
		},
		{
			name: "absolute number", req: request("production", `{"replicas": 4}`),
			want:  "scaled deployment sockshop-production/carts from 1 to 4 replicas",
			check: prodCarts, after: 4,
		},
		{
			name: "relative up", req: request("production", `{"replicas": "+2"}`),
			want:  "scaled deployment sockshop-production/carts from 1 to 3 replicas",
			check: prodCarts, after: 3,
		},
		{
			name: "relative down to zero", req: request("production", `{"replicas": "-1"}`),
			want:  "scaled deployment sockshop-production/carts from 1 to 0 replicas",
			check: prodCarts, after: 0,
		},
		{
			name: "helm-service string is relative", req: request("production", `"1"`),
			want:  "scaled deployment sockshop-production/carts from 1 to 2 replicas",
			check: prodCarts, after: 2,
		},
		{
			name: "bare number is relative", req: request("production", `2`),
			want:  "scaled deployment sockshop-production/carts from 1 to 3 replicas",
			check: prodCarts, after: 3,
		},
		{
			name: "already there", req: request("production", `{"replicas": "1"}`),
			want:  "deployment sockshop-production/carts already has 1 replica; nothing to do",
			check: prodCarts, after: 1,
		},
		{
			name: "blue/green scales the primary", req: request("staging", `"+1"`),
			want:  "scaled deployment sockshop-staging/carts-primary from 2 to 3 replicas",
			check: stagingCarts, after: 3,
		},
		{
			name: "scaling down to one", req: request("staging", `"-1"`),
			want:  "scaled deployment sockshop-staging/carts-primary from 2 to 1 replica",
			check: stagingCarts, after: 1,
		},
		{
			name: "explicit namespace and name", req: action.Request{Value: json.RawMessage(`{"namespace": "sockshop-staging", "name": "carts", "replicas": "1"}`)},
			want:  "scaled deployment sockshop-staging/carts from 0 to 1 replica",
			check: stagingCanary, after: 1,
		},
		{
			name: "statefulset", req: request("production", `{"kind": "sts", "name": "carts-db", "replicas": "+2"}`),
			want:  "scaled statefulset sockshop-production/carts-db from 1 to 3 replicas",
			check: prodCartsDB, after: 3,
		},
		{
			name: "dry run from the request", req: func() action.Request { r := request("production", `{"replicas": "+1"}`); r.DryRun = true; return r }(),
			want:  "dry run: would scale deployment sockshop-production/carts from 1 to 2 replicas",
			check: prodCarts, after: 1,
		},
		{
			name: "dry run from the value", req: request("production", `{"replicas": "5", "dryRun": true}`),
			want:  "dry run: would scale deployment sockshop-production/carts from 1 to 5 replicas",
			check: prodCarts, after: 1,
		},
		{
			name: "dry run is still bounded", req: request("production", `{"replicas": "+60", "dryRun": true}`),
			wantErr: "refused (maximum replicas): scaling deployment sockshop-production/carts from 1 to 61 replicas is above the maximum of 50 (SCALE_MAX_REPLICAS)",
			check:   prodCarts, after: 1,
		},
		{
			name: "above the default maximum", req: request("production", `{"replicas": "51"}`),
			wantErr: "refused (maximum replicas): scaling deployment sockshop-production/carts from 1 to 51 replicas is above the maximum of 50 (SCALE_MAX_REPLICAS)",
			check:   prodCarts, after: 1,
		},
		{
			name: "above a configured maximum", opts: scale.Options{MaxReplicas: 2}, req: request("production", `"+2"`),
			wantErr: "is above the maximum of 2 (SCALE_MAX_REPLICAS)",
			check:   prodCarts, after: 1,
		},
		{
			name: "at a configured maximum", opts: scale.Options{MaxReplicas: 2}, req: request("production", `"+1"`),
			want:  "scaled deployment sockshop-production/carts from 1 to 2 replicas",
			check: prodCarts, after: 2,
		},
		{
			name: "below a configured minimum", opts: scale.Options{MinReplicas: 1}, req: request("production", `"-1"`),
			wantErr: "refused (minimum replicas): scaling deployment sockshop-production/carts from 1 to 0 replicas is below the minimum of 1 (SCALE_MIN_REPLICAS)",
			check:   prodCarts, after: 1,
		},
		{
			name: "never below zero", req: request("production", `"-2"`),
			wantErr: "from 1 to -1 replicas is below the minimum of 0 (SCALE_MIN_REPLICAS)",
			check:   prodCarts, after: 1,
		},
		{
			name: "daemonset", req: request("production", `{"kind": "DaemonSet", "namespace": "monitoring", "name": "node-exporter", "replicas": "2"}`),
			wantErr: "a daemonset cannot be scaled",
		},
		{
			name: "unknown kind", req: request("production", `{"kind": "pod", "replicas": "2"}`),
			wantErr: `invalid value for action "scale": unknown kind "pod"; accepted: deployment (deploy), statefulset (sts), daemonset (ds)`,
		},
		{
			name: "invalid value names the alias and the accepted forms",
			req:  func() action.Request { r := request("production", `{"replica": "2"}`); r.Action = "scaling"; return r }(),
			wantErr: `invalid value for action "scaling": unknown key "replica"; accepted forms: {"replicas": "3"} or {"replicas": 3} (absolute), ` +
				`{"replicas": "+1"} or {"replicas": "-1"} (relative), or "1" or "-1" (relative, helm-service "scaling" format); ` +
				`an object may also set "kedaPause" (how long a KEDA ScaledObject stays paused at the count, "1h") and "namespace", "name", "kind", "dryRun", "wait" and "timeout"`,
			check: prodCarts, after: 1,
		},
		{
			name: "no value", req: request("production", ""),
			wantErr: `invalid value for action "scale": the action has no value; accepted forms:`,
		},
		{
			name: "no such workload", req: request("dev", `"1"`),
			wantErr: "find the workload to scale: no deployment carts or carts-primary in namespace sockshop-dev",
		},
		{
			name: "explicit name that does not exist", req: request("production", `{"name": "cart", "replicas": "2"}`),
			wantErr: "find the workload to scale: deployment sockshop-production/cart does not exist",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSandbox(t)
			h, err := scale.New(newPipeline(c), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Run(context.Background(), tt.req)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Run = %+v, want an error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Run error = %q\nwant it to contain %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				// Verification may add how the rollout went.
				if got.Result != keptnv2.ResultPass || !strings.HasPrefix(got.Message, tt.want) {
					t.Errorf("Run = %+v, want a pass starting %q", got, tt.want)
				}
			}
			if tt.check.Name != "" {
				if n := specReplicas(t, c, tt.check); n != tt.after {
					t.Errorf("%s has %d replicas afterwards, want %d", tt.check, n, tt.after)
				}
			}
		})
	}
}

func TestRunNotFoundIsWrapped(t *testing.T) {
	h, err := scale.New(newPipeline(newSandbox(t)), scale.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(context.Background(), request("dev", `"1"`))
	if !apierrors.IsNotFound(err) {
		t.Errorf("Run error = %v, want one that wraps the API's NotFound", err)
	}
}

// TestRunRetriesConflicts has another writer scale the deployment between
// the action's read and its write. The action must retry from a fresh read,
// so that "+1" applies to the other writer's count.
func TestRunRetriesConflicts(t *testing.T) {
	c := newSandbox(t)
	conflicts := 0
	c.Fake().PrependReactor("update", "deployments/scale", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		// The reactor runs under the clientset's lock: write through the tracker.
		gvr := appsv1.SchemeGroupVersion.WithResource("deployments")
		obj, err := c.Fake().Tracker().Get(gvr, "sockshop-production", "carts")
		if err != nil {
			return true, nil, err
		}
		d := obj.(*appsv1.Deployment)
		five := int32(5)
		d.Spec.Replicas = &five
		d.ResourceVersion = "42" // stale for the action, which read version 1
		if err := c.Fake().Tracker().Update(gvr, d, "sockshop-production"); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), "carts", errors.New("the object has been modified"))
	})
	h, err := scale.New(newPipeline(c), scale.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Run(context.Background(), request("production", `{"replicas": "+1"}`))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := "scaled deployment sockshop-production/carts from 5 to 6 replicas; rollout converged in "; got.Result != keptnv2.ResultPass || !strings.HasPrefix(got.Message, want) {
		t.Errorf("Run = %+v, want a pass starting %q", got, want)
	}
	if n := specReplicas(t, c, prodCarts); n != 6 {
		t.Errorf("carts has %d replicas, want 6", n)
	}
}

func TestRunGivesUpOnEndlessConflicts(t *testing.T) {
	c := newSandbox(t)
	updates := 0
	c.Fake().PrependReactor("update", "deployments/scale", func(a clienttesting.Action) (bool, runtime.Object, error) {
		updates++
		return true, nil, apierrors.NewConflict(appsv1.Resource("deployments"), "carts", errors.New("the object has been modified"))
	})
	h, err := scale.New(newPipeline(c), scale.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(context.Background(), request("production", `"1"`))
	if !apierrors.IsConflict(err) {
		t.Fatalf("Run error = %v, want a conflict", err)
	}
	if !strings.Contains(err.Error(), "scale deployment sockshop-production/carts from 1 to 2 replicas") {
		t.Errorf("error %q does not say what was attempted", err)
	}
	if updates < 2 {
		t.Errorf("%d update attempts, want retries", updates)
	}
}

func TestRunHonoursContext(t *testing.T) {
	tests := []struct {
		name string
		// cancelOn is the verb on deployments at which the context is
		// cancelled; empty cancels it before Run.
		cancelOn string
	}{
		{name: "cancelled before", cancelOn: ""},
		{name: "cancelled while resolving", cancelOn: "get"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSandbox(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelOn == "" {
				cancel()
			} else {
				c.Fake().PrependReactor(tt.cancelOn, "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
					cancel()
					return false, nil, nil
				})
			}
			h, err := scale.New(newPipeline(c), scale.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.Run(ctx, request("production", `"1"`))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run error = %v, want context.Canceled", err)
			}
			if n := specReplicas(t, c, prodCarts); n != 1 {
				t.Errorf("carts has %d replicas after a cancelled action, want 1", n)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    scale.Options
		want    scale.Options
		wantErr string
	}{
		{name: "zero value", opts: scale.Options{}, want: scale.Options{MinReplicas: 0, MaxReplicas: scale.DefaultMaxReplicas, KEDAPause: keda.DefaultPause}},
		{name: "both set", opts: scale.Options{MinReplicas: 1, MaxReplicas: 5}, want: scale.Options{MinReplicas: 1, MaxReplicas: 5, KEDAPause: keda.DefaultPause}},
		{name: "fixed count", opts: scale.Options{MinReplicas: 3, MaxReplicas: 3, KEDAPause: time.Hour}, want: scale.Options{MinReplicas: 3, MaxReplicas: 3, KEDAPause: time.Hour}},
		{name: "negative minimum", opts: scale.Options{MinReplicas: -1}, wantErr: "SCALE_MIN_REPLICAS (-1) and SCALE_MAX_STEP (0) cannot be negative"},
		{name: "maximum below minimum", opts: scale.Options{MinReplicas: 5, MaxReplicas: 3}, wantErr: "SCALE_MAX_REPLICAS (3) is below SCALE_MIN_REPLICAS (5)"},
		{name: "KEDA pause past its bound", opts: scale.Options{KEDAPause: 25 * time.Hour}, wantErr: "the KEDA pause (25h0m0s) is not between 0 and 24h0m0s"},
		{name: "default maximum below minimum", opts: scale.Options{MinReplicas: 60}, wantErr: "SCALE_MAX_REPLICAS (50, the default) is below SCALE_MIN_REPLICAS (60)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := scale.New(newPipeline(adapt.Clientset(fake.NewClientset())), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := h.Options(); got != tt.want {
				t.Errorf("Options() = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := scale.New(newPipeline(nil), scale.Options{}); err == nil {
		t.Error("New(nil, ...) succeeded, want an error")
	}
}

func BenchmarkRunDryRun(b *testing.B) {
	c := newSandbox(b)
	h, err := scale.New(newPipeline(c), scale.Options{})
	if err != nil {
		b.Fatal(err)
	}
	req := request("staging", `{"replicas": "+1"}`)
	req.DryRun = true
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
		// The fake records every call; keep that from growing with b.N.
		c.Fake().ClearActions()
	}
}

func TestRunAutoscaledWorkloadMovesTheFloor(t *testing.T) {
	ctx := context.Background()
	hpa := func(min, max int32) *autoscalingv2.HorizontalPodAutoscaler {
		return &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: "carts-hpa", Namespace: "sockshop-production"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "carts"},
				MinReplicas:    &min, MaxReplicas: max,
			},
		}
	}
	tests := []struct {
		name             string
		value            string
		dryRun           bool
		hpa              *autoscalingv2.HorizontalPodAutoscaler
		want             string
		wantMin, wantMax int32
	}{
		{"up within the ceiling", `{"replicas": "+2", "wait": false}`, false, hpa(1, 5),
			"scaled: deployment sockshop-production/carts is autoscaled by horizontalpodautoscaler carts-hpa, so its minReplicas was set instead of the replicas: 1 → 3; the autoscaler takes it from 1 to 3 replicas",
			3, 5},
		{"up past the ceiling", `{"replicas": "4", "wait": false}`, false, hpa(1, 2),
			"(maxReplicas raised 2 → 4 to make room)", 4, 4},
		{"down", `{"replicas": "1"}`, false, hpa(4, 8),
			"minReplicas was set instead of the replicas: 4 → 1; it has 1 replica now, and the autoscaler goes lower only as the load allows", 1, 8},
		{"dry run", `{"replicas": "+2"}`, true, hpa(1, 5),
			"dry run: would scale: deployment sockshop-production/carts is autoscaled by horizontalpodautoscaler carts-hpa, so its minReplicas would be set instead", 1, 5},
		{"floor already there", `{"replicas": "3"}`, false, hpa(3, 5),
			"whose minReplicas is already 3; nothing to do", 3, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSandbox(t)
			if _, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Create(ctx, tt.hpa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			h, err := scale.New(newPipeline(c), scale.Options{})
			if err != nil {
				t.Fatal(err)
			}
			req := request("production", tt.value)
			req.DryRun = tt.dryRun
			got, err := h.Run(ctx, req)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got.Result != keptnv2.ResultPass || !strings.Contains(got.Message, tt.want) {
				t.Errorf("Run = %+v, want a pass containing %q", got, tt.want)
			}
			after, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Get(ctx, "carts-hpa", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *after.Spec.MinReplicas != tt.wantMin || after.Spec.MaxReplicas != tt.wantMax {
				t.Errorf("autoscaler %d..%d afterwards, want %d..%d", *after.Spec.MinReplicas, after.Spec.MaxReplicas, tt.wantMin, tt.wantMax)
			}
			if n := specReplicas(t, c, prodCarts); n != 1 {
				t.Errorf("spec.replicas written directly: %d, want 1 (the autoscaler's job)", n)
			}
		})
	}
}

// TestRunAutoscaledRelativeMovesTheFloorFromTheFloor: a relative change to
// an autoscaled workload moves minReplicas from minReplicas, not from the
// replicas the autoscaler happens to run. With 5 replicas above a floor of
// 2, "-1" lowers the floor to 1; it must not raise it to 4.
func TestRunAutoscaledRelativeMovesTheFloorFromTheFloor(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		value   string
		opts    scale.Options
		want    string // a piece of the message, or of the refusal
		refusal string // the rule, when refused
		wantMin int32
	}{
		{"down by one", `"-1"`, scale.Options{},
			"minReplicas was set instead of the replicas: 2 → 1; it has 5 replicas now, and the autoscaler goes lower only as the load allows", "", 1},
		{"down by one, object form", `{"replicas": "-1"}`, scale.Options{},
			"2 → 1", "", 1},
		{"up by one stays below the replicas", `{"replicas": "+1", "wait": false}`, scale.Options{},
			"2 → 3; it has 5 replicas now, at or above the new floor", "", 3},
		{"below SCALE_MIN_REPLICAS", `"-1"`, scale.Options{MinReplicas: 2},
			"from 2 to 1 replicas is below the minimum of 2 (SCALE_MIN_REPLICAS)", "minimum replicas", 2},
		{"step measured on the floor", `{"replicas": "+3", "wait": false}`, scale.Options{MaxStep: 3},
			"2 → 5", "", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSandbox(t)
			d, err := c.AppsV1().Deployments("sockshop-production").Get(ctx, "carts", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			five := int32(5)
			d.Spec.Replicas = &five
			if _, err := c.AppsV1().Deployments("sockshop-production").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			floor := int32(2)
			hpa := &autoscalingv2.HorizontalPodAutoscaler{
				ObjectMeta: metav1.ObjectMeta{Name: "carts-hpa", Namespace: "sockshop-production"},
				Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
					ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "carts"},
					MinReplicas:    &floor, MaxReplicas: 8,
				},
			}
			if _, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			h, err := scale.New(newPipeline(c), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Run(ctx, request("production", tt.value))
			if tt.refusal != "" {
				var r *action.Refusal
				if !errors.As(err, &r) || r.Rule != tt.refusal || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Run = %+v, %v; want a %s refusal containing %q", got, err, tt.refusal, tt.want)
				}
			} else if err != nil || got.Result != keptnv2.ResultPass || !strings.Contains(got.Message, tt.want) {
				t.Fatalf("Run = %+v, %v; want a pass containing %q", got, err, tt.want)
			}
			after, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Get(ctx, "carts-hpa", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *after.Spec.MinReplicas != tt.wantMin || after.Spec.MaxReplicas != 8 {
				t.Errorf("autoscaler %d..%d afterwards, want %d..8", *after.Spec.MinReplicas, after.Spec.MaxReplicas, tt.wantMin)
			}
			if n := specReplicas(t, c, prodCarts); n != 5 {
				t.Errorf("spec.replicas written directly: %d, want 5 (the autoscaler's job)", n)
			}
		})
	}
}

func TestRunRefusesTooLargeAStep(t *testing.T) {
	c := newSandbox(t)
	h, err := scale.New(newPipeline(c), scale.Options{MaxStep: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Run(context.Background(), request("production", `{"replicas": "4"}`))
	var r *action.Refusal
	if !errors.As(err, &r) || r.Rule != "maximum step" ||
		!strings.Contains(err.Error(), "scaling deployment sockshop-production/carts from 1 to 4 replicas changes more than 2 at once (SCALE_MAX_STEP)") {
		t.Fatalf("Run error = %v, want a maximum step refusal", err)
	}
	if n := specReplicas(t, c, prodCarts); n != 1 {
		t.Errorf("carts has %d replicas after a refusal, want 1", n)
	}
}

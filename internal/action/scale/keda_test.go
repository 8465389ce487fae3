package scale_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/scale"
	"github.com/keptn-action-provider/action-provider/internal/keda"
)

// TestRunKEDAPausesTheScaledObject: a deployment a ScaledObject scales is
// scaled by pausing the ScaledObject, never by writing the deployment or
// KEDA's HPA; someone else's pause, or a KEDA HPA whose ScaledObject cannot
// be read, is refused.
func TestRunKEDAPausesTheScaledObject(t *testing.T) {
	ctx := context.Background()
	yes, one := true, int32(1)
	kedaHPA := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-carts", Namespace: "sockshop-production", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject", Name: "carts", Controller: &yes}}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "carts"},
			MinReplicas:    &one, MaxReplicas: 5,
		},
	}
	so := func(annotations map[string]any) *unstructured.Unstructured {
		meta := map[string]any{"name": "carts", "namespace": "sockshop-production"}
		if annotations != nil {
			meta["annotations"] = annotations
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta,
			"spec": map[string]any{"scaleTargetRef": map[string]any{"name": "carts"}, "minReplicaCount": int64(1), "maxReplicaCount": int64(5)},
		}}
	}
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		value   string
		dryRun  bool
		so      *unstructured.Unstructured // nil: the ScaledObject cannot be read
		message string
		refusal string
		paused  string // paused-replicas afterwards
		unpause string
	}{
		{name: "pause", value: `{"replicas": 3, "wait": false}`, so: so(nil), paused: "3", unpause: "2024-05-01T10:30:00Z",
			message: "paused KEDA ScaledObject sockshop-production/carts at 3 replicas (autoscaling.keda.sh/paused-replicas) until 2024-05-01T10:30:00Z; " +
				"KEDA scales deployment sockshop-production/carts from 1 to 3 replicas and stops autoscaling it until then; not waiting for the rollout (wait: false)"},
		{name: "bound from the value", value: `{"replicas": "+1", "kedaPause": "2h", "wait": false}`, so: so(nil), paused: "2", unpause: "2024-05-01T12:00:00Z",
			message: "paused KEDA ScaledObject sockshop-production/carts at 2 replicas (autoscaling.keda.sh/paused-replicas) until 2024-05-01T12:00:00Z"},
		{name: "dry run", value: `{"replicas": 3}`, dryRun: true, so: so(nil),
			message: "dry run: would pause KEDA ScaledObject sockshop-production/carts at 3 replicas"},
		{name: "someone else's pause", value: `{"replicas": 3}`, so: so(map[string]any{keda.PausedReplicasAnnotation: "2"}), paused: "2",
			refusal: `KEDA ScaledObject sockshop-production/carts autoscales deployment sockshop-production/carts and was paused by someone else (autoscaling.keda.sh/paused-replicas: "2")`},
		{name: "bounds still apply", value: `{"replicas": 30}`, so: so(nil), refusal: "is above the maximum of 10"},
		{name: "ScaledObject unreadable", value: `{"replicas": 3}`,
			refusal: "deployment sockshop-production/carts is autoscaled by KEDA ScaledObject sockshop-production/carts through horizontalpodautoscaler keda-hpa-carts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSandbox(t)
			if _, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Create(ctx, kedaHPA.DeepCopy(), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			p := newPipeline(c)
			var dyn *dynamicfake.FakeDynamicClient
			if tt.so != nil {
				dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
					map[schema.GroupVersionResource]string{keda.Resource(): "ScaledObjectList"}, tt.so)
				p.Dynamic = dyn
			}
			h, err := scale.New(p, scale.Options{MaxReplicas: 10})
			if err != nil {
				t.Fatal(err)
			}
			scale.SetClock(h, func() time.Time { return now })
			req := request("production", tt.value)
			req.DryRun = tt.dryRun
			out, err := h.Run(ctx, req)
			switch {
			case tt.refusal != "":
				var r *action.Refusal
				if !errors.As(err, &r) || !strings.Contains(err.Error(), tt.refusal) {
					t.Fatalf("Run = %+v, %v; want a refusal with %q", out, err, tt.refusal)
				}
			case err != nil:
				t.Fatal(err)
			case out.Message != tt.message && !strings.HasPrefix(out.Message, tt.message):
				t.Errorf("message %q\nwant %q", out.Message, tt.message)
			}
			if n := specReplicas(t, c, prodCarts); n != 1 {
				t.Errorf("the deployment has %d replicas, want 1: only KEDA may scale it", n)
			}
			hpa, err := c.AutoscalingV2().HorizontalPodAutoscalers("sockshop-production").Get(ctx, "keda-hpa-carts", metav1.GetOptions{})
			if err != nil || *hpa.Spec.MinReplicas != 1 || hpa.Spec.MaxReplicas != 5 {
				t.Errorf("KEDA's HPA changed: %+v, %v", hpa.Spec, err)
			}
			if dyn == nil {
				return
			}
			a := annotations(t, dyn)
			if a[keda.PausedReplicasAnnotation] != tt.paused || a[keda.UnpauseAt] != tt.unpause {
				t.Errorf("annotations %v, want paused-replicas %q until %q", a, tt.paused, tt.unpause)
			}
		})
	}
}

func annotations(t *testing.T, dyn dynamic.Interface) map[string]string {
	t.Helper()
	u, err := dyn.Resource(keda.Resource()).Namespace("sockshop-production").Get(context.Background(), "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u.GetAnnotations()
}

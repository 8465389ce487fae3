package restart

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestRestartRollout sets spec.restartAt as kubectl argo rollouts restart
// does, and only that; a dry run writes nothing.
func TestRestartRollout(t *testing.T) {
	ref := workload.Ref{Kind: workload.Rollout, Namespace: "ns", Name: "carts"}
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, dryRun := range []bool{true, false} {
		ro := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": workload.RolloutAPIVersion, "kind": "Rollout",
			"metadata": map[string]any{"name": "carts", "namespace": "ns"},
			"spec":     map[string]any{"replicas": int64(2), "restartAt": "2024-04-30T08:00:00Z"},
		}}
		dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{workload.RolloutResource(): "RolloutList"}, ro)
		m := mutator{client: adapt.Clientset(fake.NewClientset()), dynamic: dyn, now: func() time.Time { return now }}
		c, err := m.Mutate(context.Background(), ref, dryRun)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dyn.Resource(workload.RolloutResource()).Namespace("ns").Get(context.Background(), "carts", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		at, _, _ := unstructured.NestedString(got.Object, "spec", "restartAt")
		if dryRun {
			if c.Changed || at != "2024-04-30T08:00:00Z" || c.Message != "would restart rollout ns/carts by setting spec.restartAt (last restarted 2024-04-30T08:00:00Z)" {
				t.Errorf("dry run: %+v, restartAt %s", c, at)
			}
			continue
		}
		if !c.Changed || !c.Rollout || at != "2024-05-01T10:00:00Z" || c.Reason != "Restarted" ||
			!strings.HasPrefix(c.Message, "restarted rollout ns/carts: spec.restartAt set to 2024-05-01T10:00:00Z") {
			t.Errorf("restart: %+v, restartAt %s", c, at)
		}
	}
	if _, err := (mutator{client: adapt.Clientset(fake.NewClientset()), now: time.Now}).Mutate(context.Background(), ref, false); err == nil ||
		!strings.Contains(err.Error(), "no client for Argo Rollouts here") {
		t.Errorf("without a dynamic client: %v", err)
	}
}

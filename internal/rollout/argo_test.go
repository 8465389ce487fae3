package rollout

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestCheckArgoRollout judges a Rollout as kubectl argo rollouts status
// does, and an aborted one by its stable ReplicaSet.
func TestCheckArgoRollout(t *testing.T) {
	ref := workload.Ref{Kind: workload.Rollout, Namespace: "ns", Name: "carts"}
	three := int32(3)
	tests := []struct {
		name     string
		status   map[string]any
		want     *int32
		stable   int32 // ready replicas of the stable ReplicaSet; -1: none
		done     bool
		failed   bool
		contains string
	}{
		{name: "healthy", status: map[string]any{"observedGeneration": "2", "phase": "Healthy", "readyReplicas": int64(2)}, done: true, contains: `rollout "carts" is Healthy`},
		{name: "spec not observed", status: map[string]any{"observedGeneration": "1", "phase": "Healthy"}, contains: `waiting for rollout "carts" spec update to be observed`},
		{name: "old hash in observedGeneration", status: map[string]any{"observedGeneration": "6f7d8c", "phase": "Healthy"}, done: true},
		{name: "progressing", status: map[string]any{"observedGeneration": "2", "phase": "Progressing", "message": "more replicas need to be updated"}, contains: `waiting for rollout "carts": Progressing - more replicas need to be updated`},
		{name: "paused at a step", status: map[string]any{"observedGeneration": "2", "phase": "Paused", "message": "CanaryPauseStep"}, contains: "Paused - CanaryPauseStep"},
		{name: "unpausing", status: map[string]any{"observedGeneration": "2", "phase": "Paused", "controllerPause": true}, contains: "to unpause"},
		{name: "degraded", status: map[string]any{"observedGeneration": "2", "phase": "Degraded", "message": "ProgressDeadlineExceeded: too slow"}, failed: true, contains: `rollout "carts" is Degraded: ProgressDeadlineExceeded: too slow`},
		{name: "no phase", status: map[string]any{"observedGeneration": "2"}, contains: "has not reported a phase"},
		{name: "autoscaler first", status: map[string]any{"observedGeneration": "2", "phase": "Healthy"}, want: &three, contains: "waiting for the autoscaler to set spec.replicas to 3 (now 2)"},
		{name: "abort not seen yet", status: map[string]any{"observedGeneration": "2", "phase": "Paused", "abort": true, "stableRS": "abc"}, stable: 2, contains: "to abort the update"},
		{name: "aborted, stable scaling up", status: map[string]any{"observedGeneration": "2", "phase": "Degraded", "abort": true, "abortedAt": "2024-05-01T10:00:00Z", "stableRS": "abc"}, stable: 1,
			contains: `waiting for the stable ReplicaSet carts-abc of aborted rollout "carts": 1 of 2 replicas ready`},
		{name: "aborted, stable back", status: map[string]any{"observedGeneration": "2", "phase": "Degraded", "abort": true, "abortedAt": "2024-05-01T10:00:00Z", "stableRS": "abc"}, stable: 2, done: true,
			contains: `rollout "carts" is aborted: its stable ReplicaSet carts-abc has 2 of 2 replicas ready`},
		{name: "aborted, stable gone", status: map[string]any{"observedGeneration": "2", "abort": true, "abortedAt": "2024-05-01T10:00:00Z", "stableRS": "abc"}, stable: -1, failed: true, contains: "is gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": workload.RolloutAPIVersion, "kind": "Rollout",
				"metadata": map[string]any{"name": "carts", "namespace": "ns", "generation": int64(2)},
				"spec":     map[string]any{"replicas": int64(2)},
				"status":   tt.status,
			}}
			dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
				map[schema.GroupVersionResource]string{workload.RolloutResource(): "RolloutList"}, ro)
			c := fake.NewClientset()
			if tt.stable >= 0 {
				c = fake.NewClientset(&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "carts-abc", Namespace: "ns"},
					Status: appsv1.ReplicaSetStatus{ReadyReplicas: tt.stable}})
			}
			s, err := CheckWith(context.Background(), adapt.Clientset(c), dyn, ref, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if s.Done != tt.done || s.Failed != tt.failed || !strings.Contains(s.Message, tt.contains) {
				t.Errorf("Check = %+v, want done %v failed %v and a message with %q", s, tt.done, tt.failed, tt.contains)
			}
		})
	}
	if _, err := Check(context.Background(), adapt.Clientset(fake.NewClientset()), ref, nil); err == nil || !permanent(err) {
		t.Errorf("Check without a dynamic client: %v, want a permanent error", err)
	}
}

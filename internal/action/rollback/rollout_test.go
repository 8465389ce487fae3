package rollback_test

import (
	"context"
	"strings"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// TestAbortRollout: a Rollout is rolled back by aborting its update through
// the status subresource; what cannot be aborted says why.
func TestAbortRollout(t *testing.T) {
	ref := workload.Ref{Kind: workload.Rollout, Namespace: "ns", Name: "carts"}
	stableRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "carts-old", Namespace: "ns"},
		Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "carts:1"}}}}}}
	tests := []struct {
		name       string
		status     map[string]any
		toRevision int64
		dryRun     bool
		abort      bool   // status.abort afterwards
		message    string // prefix
		result     keptnv2.ResultType
		wantErr    string
	}{
		{name: "mid-update", status: map[string]any{"stableRS": "old", "currentPodHash": "new"}, abort: true,
			message: "aborted rollout ns/carts: traffic back on the stable ReplicaSet carts-old (image carts:1); spec.template still holds the new version (image carts:2), " +
				"which the next change or a retry will roll out again; to undo it for good, revert the template (kubectl argo rollouts undo carts -n ns)"},
		{name: "dry run", status: map[string]any{"stableRS": "old", "currentPodHash": "new"}, dryRun: true, message: "would abort rollout ns/carts: traffic back on"},
		{name: "already aborted", status: map[string]any{"stableRS": "old", "currentPodHash": "new", "abort": true}, abort: true,
			message: "rollout ns/carts is already aborted: its traffic is on the stable ReplicaSet carts-old; nothing to do"},
		{name: "nothing in progress", status: map[string]any{"stableRS": "new", "currentPodHash": "new"}, result: keptnv2.ResultFailed,
			message: "cannot roll back rollout ns/carts: no update is in progress to abort, its pod template (ReplicaSet carts-new) is the stable one; to go back to an earlier version, revert the template: kubectl argo rollouts undo carts -n ns"},
		{name: "never rolled out", status: map[string]any{"currentPodHash": "new"}, result: keptnv2.ResultFailed, message: "cannot roll back rollout ns/carts: it has no stable ReplicaSet yet"},
		{name: "toRevision", status: map[string]any{"stableRS": "old", "currentPodHash": "new"}, toRevision: 2, wantErr: `"toRevision" does not apply`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "carts:2"}}}})
			ro := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": workload.RolloutAPIVersion, "kind": "Rollout",
				"metadata": map[string]any{"name": "carts", "namespace": "ns", "resourceVersion": "7"},
				"spec":     map[string]any{"template": tpl},
				"status":   tt.status,
			}}
			dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
				map[schema.GroupVersionResource]string{workload.RolloutResource(): "RolloutList"}, ro)
			c, err := rollback.NewMutator(adapt.Clientset(fake.NewClientset(stableRS)), tt.toRevision).WithDynamic(dyn).Mutate(context.Background(), ref, tt.dryRun)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(c.Message, tt.message) || c.Result != tt.result {
				t.Errorf("change %+v\nwant message %q, result %q", c, tt.message, tt.result)
			}
			changed := tt.abort && tt.status["abort"] == nil
			if c.Changed != changed || c.Rollout != changed {
				t.Errorf("Changed %v, Rollout %v, want %v", c.Changed, c.Rollout, changed)
			}
			var patches []string
			for _, a := range dyn.Actions() {
				if p, ok := a.(clienttesting.PatchAction); ok {
					patches = append(patches, p.GetSubresource()+" "+string(p.GetPatch()))
				}
			}
			want := ""
			if changed {
				want = `status {"metadata":{"resourceVersion":"7"},"status":{"abort":true}}`
			}
			if strings.Join(patches, ";") != want {
				t.Errorf("patches %q, want %q", patches, want)
			}
		})
	}
}

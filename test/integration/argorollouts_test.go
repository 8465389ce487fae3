package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// The pod-template-hashes of the two versions of the test's Rollout: the
// stable one (image :1) and the update (image :2).
const (
	stableHash = "5c7d9f8b6d"
	updateHash = "7f6b4c9d8e"
)

// argoRollout is a Rollout "carts" the test creates and whose controller it
// plays: no Argo Rollouts controller runs on the control plane, so the
// test creates the ReplicaSets the controller would (the replicaset
// controller and kwok then make their pods) and writes the status.
type argoRollout struct {
	ns       string
	c        kubernetes.Interface
	rollouts dynamic.ResourceInterface
	obj      *unstructured.Unstructured
}

// newArgoRollout creates the Rollout at image :2 with replicas, and the
// ReplicaSets of both versions: the stable one with all replicas, the
// update's with canary of them. canary 0 means the update rolled out
// (stable is then the update's hash).
func newArgoRollout(ctx context.Context, t *testing.T, c kubernetes.Interface, dyn dynamic.Interface, ns string, replicas, canary int32) *argoRollout {
	t.Helper()
	tpl := podTemplate("carts")
	tpl.Spec.Containers[0].Image = "registry.invalid/carts:2"
	template, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tpl)
	if err != nil {
		t.Fatal(err)
	}
	r := &argoRollout{ns: ns, c: c, rollouts: dyn.Resource(workload.RolloutResource()).Namespace(ns)}
	r.obj, err = r.rollouts.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": workload.RolloutAPIVersion, "kind": "Rollout",
		"metadata": map[string]any{"name": "carts"},
		"spec": map[string]any{
			"replicas": int64(replicas),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "carts"}},
			"template": template,
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{
				map[string]any{"setWeight": int64(50)}, map[string]any{"pause": map[string]any{}},
			}}},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the Rollout: %v", err)
	}
	stable := stableHash
	if canary == 0 {
		stable = updateHash
	} else {
		r.replicaSet(ctx, t, updateHash, "registry.invalid/carts:2", canary)
	}
	image := "registry.invalid/carts:1"
	if canary == 0 {
		image = "registry.invalid/carts:2"
	}
	r.replicaSet(ctx, t, stable, image, replicas)
	phase, message := "Paused", "CanaryPauseStep"
	if canary == 0 {
		phase, message = "Healthy", ""
	}
	updated := canary
	if canary == 0 {
		updated = replicas
	}
	r.setStatus(ctx, t, func(st map[string]any) {
		st["currentPodHash"], st["stableRS"] = updateHash, stable
		st["phase"], st["message"] = phase, message
		st["replicas"], st["readyReplicas"], st["availableReplicas"] = int64(replicas+canary), int64(replicas+canary), int64(replicas+canary)
		st["updatedReplicas"] = int64(updated)
	})
	return r
}

// replicaSet creates the ReplicaSet of hash, controlled by the Rollout, and
// waits for its pods to be ready.
func (r *argoRollout) replicaSet(ctx context.Context, t *testing.T, hash, image string, n int32) {
	t.Helper()
	yes := true
	labels := map[string]string{"app": "carts", "rollouts-pod-template-hash": hash}
	tpl := podTemplate("carts")
	tpl.Labels = labels
	tpl.Spec.Containers[0].Image = image
	_, err := r.c.AppsV1().ReplicaSets(r.ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "carts-" + hash, Labels: labels, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: workload.RolloutAPIVersion, Kind: "Rollout", Name: "carts", UID: r.obj.GetUID(), Controller: &yes,
		}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ReplicaSet carts-%s: %v", hash, err)
	}
	eventually(ctx, t, fmt.Sprintf("ReplicaSet carts-%s to have %d ready replicas", hash, n), func(ctx context.Context) (bool, string, error) {
		rs, err := r.c.AppsV1().ReplicaSets(r.ns).Get(ctx, "carts-"+hash, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return rs.Status.ReadyReplicas == n, fmt.Sprintf("%d ready", rs.Status.ReadyReplicas), nil
	})
}

// setStatus writes the status as the controller would, through the status
// subresource, observing the current generation.
func (r *argoRollout) setStatus(ctx context.Context, t *testing.T, edit func(status map[string]any)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := r.rollouts.Get(ctx, "carts", metav1.GetOptions{})
		if err != nil {
			return err
		}
		st, _, _ := unstructured.NestedMap(obj.Object, "status")
		if st == nil {
			st = map[string]any{}
		}
		edit(st)
		st["observedGeneration"] = fmt.Sprint(obj.GetGeneration())
		if err := unstructured.SetNestedMap(obj.Object, st, "status"); err != nil {
			return err
		}
		_, err = r.rollouts.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("write the Rollout's status: %v", err)
	}
}

// get reads the Rollout.
func (r *argoRollout) get(ctx context.Context, t *testing.T) *unstructured.Unstructured {
	t.Helper()
	obj, err := r.rollouts.Get(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// waitFor waits until the action running in done has changed the Rollout
// as cond, which describes it, wants; an action that answers first fails
// the test with its answer.
func (r *argoRollout) waitFor(ctx context.Context, t *testing.T, done <-chan finished, what string, cond func(*unstructured.Unstructured) (bool, string)) {
	t.Helper()
	eventually(ctx, t, what, func(ctx context.Context) (bool, string, error) {
		select {
		case got := <-done:
			return false, "", fmt.Errorf("the action answered first: %s/%s %q", got.status, got.result, got.message)
		default:
		}
		obj, err := r.rollouts.Get(ctx, "carts", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ok, state := cond(obj)
		return ok, state, nil
	})
}

// TestArgoRolloutRestartAndScale: a Rollout is the service's workload when
// it has no Deployment; restart sets spec.restartAt as kubectl argo rollouts
// restart does and waits for the controller (played) to report it Healthy
// again; scale goes through rollouts/scale. Each leaves an audit event on
// the Rollout.
func TestArgoRolloutRestartAndScale(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	inst, dyn := newDynamicInstance(t, cp, "argo-restart")
	r := newArgoRollout(ctx, t, cp.client, dyn, ns, 2, 0)
	ref := workload.Ref{Kind: workload.Rollout, Namespace: ns, Name: "carts"}

	start := time.Now().Add(-time.Second)
	done := runAsync(ctx, t, inst, request(stage, "restart", "", false))
	var generation int64
	r.waitFor(ctx, t, done, "spec.restartAt to be set", func(obj *unstructured.Unstructured) (bool, string) {
		at, _, _ := unstructured.NestedString(obj.Object, "spec", "restartAt")
		ts, err := time.Parse(time.RFC3339, at)
		generation = obj.GetGeneration()
		return err == nil && !ts.Before(start.Truncate(time.Second)), "restartAt " + at
	})
	// The controller: it observes the change and, its pods replaced, is
	// Healthy again.
	r.setStatus(ctx, t, func(st map[string]any) {
		st["phase"], st["restartedAt"] = "Healthy", r.get(ctx, t).Object["spec"].(map[string]any)["restartAt"]
	})
	got := await(ctx, t, done)
	wantPass(t, "restart", got, "restarted rollout "+ns+"/carts: spec.restartAt set to ", "its controller replaces the pods (never restarted)", "rollout converged")
	if obj := r.get(ctx, t); obj.GetGeneration() != generation {
		t.Errorf("generation %d after the restart, want %d: written more than once", obj.GetGeneration(), generation)
	}

	done = runAsync(ctx, t, inst, request(stage, "scale", `{"kind": "ro", "replicas": 3}`, false))
	r.waitFor(ctx, t, done, "spec.replicas to be 3", func(obj *unstructured.Unstructured) (bool, string) {
		n, _, _ := unstructured.NestedInt64(obj.Object, "spec", "replicas")
		return n == 3, fmt.Sprintf("spec.replicas %d", n)
	})
	r.setStatus(ctx, t, func(st map[string]any) {
		st["phase"], st["readyReplicas"], st["HPAReplicas"] = "Healthy", int64(3), int64(3)
	})
	got = await(ctx, t, done)
	wantPass(t, "scale", got, "scaled rollout "+ns+"/carts from 2 to 3 replicas", "rollout converged", "3/3 pods ready")

	var reasons []string
	for _, e := range auditEvents(ctx, t, cp.client, ref) {
		if e.InvolvedObject.APIVersion != workload.RolloutAPIVersion || e.InvolvedObject.UID != r.obj.GetUID() {
			t.Errorf("audit event %s names %s %s", e.Name, e.InvolvedObject.APIVersion, e.InvolvedObject.UID)
		}
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "Restarted,Scaled" && strings.Join(reasons, ",") != "Scaled,Restarted" {
		t.Errorf("audit events %v, want Restarted and Scaled", reasons)
	}
}

// TestArgoRolloutAbort: rollback of a Rollout mid-update aborts it as
// kubectl argo rollouts abort does, through the status subresource; the
// verification waits for the controller (played) to put the stable
// ReplicaSet back, and the message says spec.template still holds the new
// version. Another rollback has nothing to do; a Rollout with no update in
// progress has nothing to abort.
func TestArgoRolloutAbort(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	inst, dyn := newDynamicInstance(t, cp, "argo-abort")
	r := newArgoRollout(ctx, t, cp.client, dyn, ns, 2, 1)

	done := runAsync(ctx, t, inst, request(stage, "rollback", `{"kind": "rollout"}`, false))
	var generation int64
	r.waitFor(ctx, t, done, "status.abort to be set", func(obj *unstructured.Unstructured) (bool, string) {
		abort, _, _ := unstructured.NestedBool(obj.Object, "status", "abort")
		generation = obj.GetGeneration()
		return abort, fmt.Sprintf("status.abort %v", abort)
	})
	if generation != r.obj.GetGeneration() {
		t.Errorf("the abort changed the spec: generation %d, was %d", generation, r.obj.GetGeneration())
	}
	// The controller: it scales the update's ReplicaSet down and marks
	// the abort.
	zero := int32(0)
	rs, err := cp.client.AppsV1().ReplicaSets(ns).Get(ctx, "carts-"+updateHash, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.Spec.Replicas = &zero
	if _, err := cp.client.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.setStatus(ctx, t, func(st map[string]any) {
		st["abortedAt"] = time.Now().UTC().Format(time.RFC3339)
		st["phase"], st["message"] = "Degraded", "RolloutAborted: Rollout aborted update to revision 2"
	})
	got := await(ctx, t, done)
	wantPass(t, "abort", got, "aborted rollout "+ns+"/carts: traffic back on the stable ReplicaSet carts-"+stableHash+" (image registry.invalid/carts:1); "+
		"spec.template still holds the new version (image registry.invalid/carts:2), which the next change or a retry will roll out again; "+
		"to undo it for good, revert the template (kubectl argo rollouts undo carts -n "+ns+")",
		"rollout converged", "2/2 pods ready")
	events := auditEvents(ctx, t, cp.client, workload.Ref{Kind: workload.Rollout, Namespace: ns, Name: "carts"})
	if len(events) != 1 || events[0].Reason != "Aborted" || !strings.Contains(events[0].Message, "updating to ReplicaSet carts-"+updateHash+" (image registry.invalid/carts:2) → aborted, back on the stable ReplicaSet carts-"+stableHash) {
		t.Errorf("audit events %+v, want one Aborted", events)
	}

	got = inst.run(ctx, t, request(stage, "rollback", `{"kind": "rollout"}`, false))
	wantPass(t, "again", got, "rollout "+ns+"/carts is already aborted: its traffic is on the stable ReplicaSet carts-"+stableHash+"; nothing to do")

	// Promoted since: the update is the stable one, nothing to abort.
	r.setStatus(ctx, t, func(st map[string]any) {
		st["abort"], st["abortedAt"], st["stableRS"], st["phase"], st["message"] = false, nil, updateHash, "Healthy", ""
	})
	got = inst.run(ctx, t, request(stage, "rollback", `{"kind": "rollout"}`, false))
	want := "cannot roll back rollout " + ns + "/carts: no update is in progress to abort"
	if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultFailed || !strings.Contains(got.message, want) {
		t.Errorf("rollback with nothing to abort: finished %s/%s %q, want succeeded/fail with %q", got.status, got.result, got.message, want)
	}
	if abort, _, _ := unstructured.NestedBool(r.get(ctx, t).Object, "status", "abort"); abort {
		t.Error("a rollback with nothing to abort set status.abort")
	}
}

package integration

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/actionconfig"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// newDynamicInstance is newInstance with the dynamic client the binary
// passes, through which the actions reach KEDA and Argo Rollouts.
func newDynamicInstance(t *testing.T, cp *controlPlane, name string) (instance, dynamic.Interface) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cp.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.PodNamespace, cfg.PodName = ledgerNamespace, name
	cfg.AllowedNamespaces = []string{project + "-*"}
	cfg.ScaleMinReplicas, cfg.ScaleMaxReplicas = 1, 10
	cfg.Cooldown = 0
	cfg.VerifyTimeout = waitTimeout / 2
	log := logrus.New()
	log.SetOutput(io.Discard)
	book, err := ledger.New(cp.api, ledger.Config{Namespace: cfg.PodNamespace, Identity: name,
		EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout + 30*time.Second, HeartbeatPeriod: cfg.HeartbeatPeriod})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actionconfig.Load(cfg, actionconfig.Deps{Client: cp.api, Dynamic: dyn, Ledger: book, Audit: audit.New(cp.api, name), Log: log, Identity: name})
	if err != nil {
		t.Fatal(err)
	}
	return instance{registry: cat.Registry}, dyn
}

// runAsync runs req on inst in a goroutine, for a test that plays a
// controller while the action waits for it; the channel gets the answer.
// Run ends by the instance's VerifyTimeout at the latest.
func runAsync(ctx context.Context, t *testing.T, inst instance, req action.Request) <-chan finished {
	t.Helper()
	h := inst.handler(t, req.Action)
	done := make(chan finished, 1)
	go func() { done <- report(h.Run(ctx, req)) }()
	return done
}

// await receives a runAsync answer.
func await(ctx context.Context, t *testing.T, done <-chan finished) finished {
	t.Helper()
	select {
	case got := <-done:
		return got
	case <-ctx.Done():
		t.Fatalf("the action did not answer: %v", ctx.Err())
		return finished{}
	}
}

func wantPass(t *testing.T, what string, got finished, prefix string, contains ...string) {
	t.Helper()
	if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultPass || !strings.HasPrefix(got.message, prefix) {
		t.Fatalf("%s: finished %s/%s %q, want succeeded/pass starting %q", what, got.status, got.result, got.message, prefix)
	}
	for _, c := range contains {
		if !strings.Contains(got.message, c) {
			t.Errorf("%s: message %q does not say %q", what, got.message, c)
		}
	}
}

// TestKEDAPausedReplicas: a deployment autoscaled by a KEDA ScaledObject
// (and the HPA KEDA made for it) is scaled by pausing the ScaledObject at
// the count with autoscaling.keda.sh/paused-replicas, bounded in time; the
// HPA and the deployment are not written by the provider. No KEDA runs, so
// the test plays it: it scales the deployment once it sees the pause. A
// second scale moves the pause; Unpauser, built fresh as on any replica,
// ends it only when due, and leaves alone a pause someone else changed. A
// pause set by someone else is refused.
func TestKEDAPausedReplicas(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)
	inst, dyn := newDynamicInstance(t, cp, "keda")
	sos := dyn.Resource(keda.Resource()).Namespace(ns)

	so, err := sos.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": "carts"},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": "carts"},
			"minReplicaCount": int64(1), "maxReplicaCount": int64(5),
			"triggers": []any{map[string]any{"type": "cpu", "metricType": "Utilization", "metadata": map[string]any{"value": "50"}}},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the ScaledObject: %v", err)
	}
	// The HPA KEDA makes for it, which the scale action must not touch.
	yes, one := true, int32(1)
	_, err = cp.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-carts", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject", Name: "carts", UID: so.GetUID(), Controller: &yes,
		}}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "carts"},
			MinReplicas:    &one, MaxReplicas: 5,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create KEDA's HPA: %v", err)
	}
	ref := carts.ref(ns)
	before := read(ctx, t, cp.client, ref)
	annotations := func() map[string]string {
		t.Helper()
		got, err := sos.Get(ctx, "carts", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a := got.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a["label:"+keda.Label] = got.GetLabels()[keda.Label]
		return a
	}
	untouched := func(step string) {
		t.Helper()
		hpa, err := cp.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-carts", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *hpa.Spec.MinReplicas != 1 || hpa.Spec.MaxReplicas != 5 {
			t.Errorf("%s: KEDA's HPA was changed: minReplicas %d, maxReplicas %d", step, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
	}

	// 1. Pause at 3, without waiting: only the ScaledObject changes.
	start := time.Now()
	got := inst.run(ctx, t, request(stage, "scale", `{"replicas": 3, "wait": false}`, false))
	wantPass(t, "pause", got, "paused KEDA ScaledObject "+ns+"/carts at 3 replicas (autoscaling.keda.sh/paused-replicas) until ",
		"KEDA scales deployment "+ns+"/carts from 1 to 3 replicas and stops autoscaling it until then", "not waiting for the rollout (wait: false)")
	a := annotations()
	if a[keda.PausedReplicasAnnotation] != "3" || a[keda.Replicas] != "3" || a["label:"+keda.Label] != "true" {
		t.Fatalf("after the pause, the ScaledObject has %v", a)
	}
	until, err := time.Parse(time.RFC3339, a[keda.UnpauseAt])
	if err != nil || until.Before(start.Add(keda.DefaultPause-time.Second)) || until.After(time.Now().Add(keda.DefaultPause)) {
		t.Fatalf("unpause-at %q (%v), want 30m from now", a[keda.UnpauseAt], err)
	}
	if after := read(ctx, t, cp.client, ref); after != before {
		t.Errorf("the deployment was written: %+v, was %+v", after, before)
	}
	untouched("pause")
	events := auditEvents(ctx, t, cp.client, ref)
	if len(events) != 1 || events[0].Reason != "Scaled" || !strings.Contains(events[0].Message, "KEDA ScaledObject "+ns+"/carts paused at 3 replicas until") {
		t.Errorf("audit events %+v, want one Scaled naming the pause", events)
	}

	// 2. A relative scale moves the provider's pause, and waits for KEDA
	// (played here) to set the deployment's replicas.
	done := runAsync(ctx, t, inst, request(stage, "scale", `{"replicas": "+1", "kedaPause": "10m"}`, false))
	eventually(ctx, t, "the pause to move to 2", func(ctx context.Context) (bool, string, error) {
		got, err := sos.Get(ctx, "carts", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		v := got.GetAnnotations()[keda.PausedReplicasAnnotation]
		return v == "2", "paused-replicas " + v, nil
	})
	if after := read(ctx, t, cp.client, ref); after != before {
		t.Errorf("the deployment was written before KEDA: %+v, was %+v", after, before)
	}
	if err := scaleTo(ctx, cp.client, ns, "carts", 2); err != nil { // KEDA's part
		t.Fatal(err)
	}
	got = await(ctx, t, done)
	wantPass(t, "move", got, "moved the provider's pause of KEDA ScaledObject "+ns+"/carts from 3 replicas until "+a[keda.UnpauseAt]+" to 2 replicas (autoscaling.keda.sh/paused-replicas) until ",
		"KEDA scales deployment "+ns+"/carts from 1 to 2 replicas", "rollout converged")
	untouched("move")

	// 3. Not due: a fresh Unpauser leaves it.
	(&keda.Unpauser{Dynamic: dyn, Namespaces: []string{ns}}).Maintain(ctx)
	if a := annotations(); a[keda.PausedReplicasAnnotation] != "2" {
		t.Fatalf("Maintain before the bound unpaused it: %v", a)
	}
	// Due (a clock past the bound), on another fresh Unpauser listing every
	// namespace: unpaused, every mark gone.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	(&keda.Unpauser{Dynamic: dyn, Now: later}).Maintain(ctx)
	a = annotations()
	for _, k := range []string{keda.PausedReplicasAnnotation, keda.Replicas, keda.UnpauseAt} {
		if _, ok := a[k]; ok {
			t.Errorf("after the unpause, the ScaledObject still has %s: %v", k, a)
		}
	}
	if a["label:"+keda.Label] != "" {
		t.Errorf("after the unpause, the ScaledObject is still labelled: %v", a)
	}

	// 4. A pause someone changed after the provider set it is theirs:
	// Maintain removes only the provider's marks.
	wantPass(t, "pause again", inst.run(ctx, t, request(stage, "scale", `{"replicas": 3, "wait": false}`, false)), "paused KEDA ScaledObject")
	patchAnnotations(ctx, t, sos, `{"metadata":{"annotations":{"autoscaling.keda.sh/paused-replicas":"4"}}}`)
	(&keda.Unpauser{Dynamic: dyn, Now: later}).Maintain(ctx)
	a = annotations()
	if a[keda.PausedReplicasAnnotation] != "4" || a[keda.Replicas] != "" || a[keda.UnpauseAt] != "" || a["label:"+keda.Label] != "" {
		t.Errorf("after Maintain on a changed pause: %v, want paused-replicas 4 and no marks of the provider", a)
	}

	// 5. That pause, or KEDA's plain one, is refused and left alone.
	for _, patch := range []string{"", `{"metadata":{"annotations":{"autoscaling.keda.sh/paused-replicas":null,"autoscaling.keda.sh/paused":"true"}}}`} {
		if patch != "" {
			patchAnnotations(ctx, t, sos, patch)
		}
		want := annotations()
		got := inst.run(ctx, t, request(stage, "scale", `{"replicas": 5}`, false))
		if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultFailed ||
			!strings.Contains(got.message, "KEDA ScaledObject "+ns+"/carts autoscales deployment "+ns+"/carts and was paused by someone else") {
			t.Fatalf("scale of a paused ScaledObject: finished %s/%s %q, want a refusal", got.status, got.result, got.message)
		}
		if a := annotations(); !equal(a, want) {
			t.Errorf("the refused scale changed the ScaledObject: %v, was %v", a, want)
		}
	}
	untouched("refusals")
}

func patchAnnotations(ctx context.Context, t *testing.T, r dynamic.ResourceInterface, patch string) {
	t.Helper()
	if _, err := r.Patch(ctx, "carts", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/actionconfig"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate/gitops"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// providerUserAgent is the provider's user agent (internal/kube), which
// the API server takes as the field manager of what it writes without
// naming one: a Flux reconcile treats managers by name.
const providerUserAgent = "keptn-action-provider"

// fluxManager is the field manager kustomize-controller applies with.
const fluxManager = "kustomize-controller"

// gitopsInstance is newInstance with a catalog and the clients of the
// composition root: a dynamic client for Argo CD's and Flux's objects, both
// under the provider's user agent.
func gitopsInstance(t *testing.T, cp *controlPlane, name, catalog string) instance {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.PodNamespace, cfg.PodName = ledgerNamespace, name
	cfg.AllowedNamespaces = []string{project + "-*"}
	cfg.ScaleMinReplicas, cfg.ScaleMaxReplicas = 1, 10
	cfg.Cooldown = 0
	cfg.VerifyTimeout = waitTimeout / 2
	cfg.ActionsConfig = filepath.Join(t.TempDir(), "actions.yaml")
	if err := os.WriteFile(cfg.ActionsConfig, []byte(catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	c, dyn := providerClients(t, cp)
	log := logrus.New()
	log.SetOutput(io.Discard)
	book, err := ledger.New(c, ledger.Config{Namespace: cfg.PodNamespace, Identity: name,
		EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout + 30*time.Second, HeartbeatPeriod: cfg.HeartbeatPeriod})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actionconfig.Load(cfg, actionconfig.Deps{Client: c, Dynamic: dyn, Ledger: book, Audit: audit.New(c, name), Log: log, Identity: name})
	if err != nil {
		t.Fatal(err)
	}
	return instance{registry: cat.Registry}
}

// providerClients are clients that write as the provider does.
func providerClients(t *testing.T, cp *controlPlane) (kube.Interface, dynamic.Interface) {
	t.Helper()
	rc := rest.CopyConfig(cp.config)
	rc.UserAgent = providerUserAgent
	c, err := kube.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c, dyn
}

// gitManifest is a Deployment as Git holds it and a GitOps tool applies
// it, with the marks the tool adds.
func gitManifest(ns, name string, replicas int32, labels, annotations map[string]string) []byte {
	meta := map[string]any{"name": name, "namespace": ns, "labels": labels}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
		"spec": map[string]any{
			"replicas": replicas,
			"selector": map[string]any{"matchLabels": map[string]string{"app": name}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]string{"app": name}},
				"spec": map[string]any{
					"terminationGracePeriodSeconds": 0,
					"containers":                    []any{map[string]any{"name": "app", "image": "registry.invalid/" + name + ":1"}},
				},
			},
		},
	})
	return b
}

// apply server-side applies a manifest as manager, as Flux and Argo CD
// (with ServerSideApply) do.
func apply(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, manager string, manifest []byte) {
	t.Helper()
	force := true
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, name, types.ApplyPatchType, manifest,
		metav1.PatchOptions{FieldManager: manager, Force: &force}); err != nil {
		t.Fatalf("apply deployment %s/%s as %s: %v", ns, name, manager, err)
	}
}

// deployGitOps creates a one-replica Deployment the way a GitOps tool
// would, with its marks, and waits for it.
func deployGitOps(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, labels, annotations map[string]string) []byte {
	t.Helper()
	all := map[string]string{"app": name}
	for k, v := range labels {
		all[k] = v
	}
	manifest := gitManifest(ns, name, 1, all, annotations)
	apply(ctx, t, c, ns, name, fluxManager, manifest)
	waitConverged(ctx, t, c, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: name}, 1)
	return manifest
}

// createOwner creates an Application, Kustomization or HelmRelease.
func createOwner(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, kind, ns, name string, spec map[string]any) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s/%s: %v", kind, ns, name, err)
	}
}

func kustomizationSpec(suspend bool) map[string]any {
	return map[string]any{"interval": "10m", "prune": true, "suspend": suspend, "path": "./apps",
		"sourceRef": map[string]any{"kind": "GitRepository", "name": "fleet"}}
}

var helmReleaseSpec = map[string]any{"interval": "10m", "chart": map[string]any{"spec": map[string]any{
	"chart": "carts", "sourceRef": map[string]any{"kind": "HelmRepository", "name": "shop"}}}}

func applicationSpec(ns string) map[string]any {
	return map[string]any{
		"project":     "default",
		"source":      map[string]any{"repoURL": "https://git.invalid/shop.git", "path": "carts", "targetRevision": "HEAD"},
		"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": ns},
		"syncPolicy":  map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}},
	}
}

// ownerState reads whether an owner's reverting is off (Flux suspended,
// Argo CD self-heal off) and the provider's record of it.
func ownerState(ctx context.Context, t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string) (off bool, resumeAt string) {
	t.Helper()
	obj, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gvr == gitops.Applications {
		heal, _, _ := unstructured.NestedBool(obj.Object, "spec", "syncPolicy", "automated", "selfHeal")
		off = !heal
	} else {
		off, _, _ = unstructured.NestedBool(obj.Object, "spec", "suspend")
	}
	if (obj.GetLabels()[gitops.SuspendedLabel] == "true") != (obj.GetAnnotations()[gitops.ResumeAt] != "") {
		t.Errorf("%s %s/%s: label and annotations of the record disagree: %v %v", gvr.Resource, ns, name, obj.GetLabels(), obj.GetAnnotations())
	}
	return off, obj.GetAnnotations()[gitops.ResumeAt]
}

// checkWarning checks a warning's finished event.
func checkWarning(t *testing.T, what string, got finished, want ...string) {
	t.Helper()
	if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultWarning {
		t.Fatalf("%s: finished %s/%s %q, want succeeded/warning", what, got.status, got.result, got.message)
	}
	for _, w := range want {
		if !strings.Contains(got.message, w) {
			t.Errorf("%s: message %q does not say %q", what, got.message, w)
		}
	}
}

func TestGitOpsPolicies(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	_, dyn := providerClients(t, cp)
	// The owners live in the test's namespace, which the catalog names as
	// Argo CD's.
	createOwner(ctx, t, dyn, gitops.Kustomizations, "Kustomization", ns, "apps", kustomizationSpec(false))
	createOwner(ctx, t, dyn, gitops.HelmReleases, "HelmRelease", ns, "carts-release", helmReleaseSpec)
	createOwner(ctx, t, dyn, gitops.Applications, "Application", ns, "shop", applicationSpec(ns))
	flux := map[string]string{gitops.FluxKustomizeName: "apps", gitops.FluxKustomizeNamespace: ns}
	helm := map[string]string{gitops.FluxHelmName: "carts-release", gitops.FluxHelmNamespace: ns,
		gitops.FluxKustomizeName: "apps", gitops.FluxKustomizeNamespace: ns}
	deployGitOps(ctx, t, cp.client, ns, "flux-app", flux, nil)
	deployGitOps(ctx, t, cp.client, ns, "helm-app", helm, nil)
	deployGitOps(ctx, t, cp.client, ns, "argo-app", nil, map[string]string{gitops.ArgoCDTrackingID: "shop:apps/Deployment:" + ns + "/argo-app"})
	deployGitOps(ctx, t, cp.client, ns, "argo-label-app", map[string]string{gitops.ArgoCDInstanceLabel: "shop"}, nil)
	deployGitOps(ctx, t, cp.client, ns, "chart-app", map[string]string{gitops.ArgoCDInstanceLabel: "carts-chart"}, nil)

	// No gitops.policy: refuse, the default.
	inst := gitopsInstance(t, cp, "a", `actions:
  - {name: scale, kind: scale, target: {override: [name]}}
  - {name: scale-warn, kind: scale, target: {override: [name]}, guardrails: {gitops: warn}}
  - {name: scale-suspend, kind: scale, target: {override: [name]}, guardrails: {gitops: suspend}}
gitops:
  suspendFor: 1h
  argocdNamespaces: [`+ns+`]
`)
	scale := func(entry, name string, dryRun bool) finished {
		return inst.run(ctx, t, request(stage, entry, `{"name": "`+name+`", "replicas": "+1", "wait": false}`, dryRun))
	}
	replicas := func(name string) state {
		return read(ctx, t, cp.client, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: name})
	}

	t.Run("refuse", func(t *testing.T) {
		for _, tc := range []struct{ name, owner string }{
			{"flux-app", "flux kustomization " + ns + "/apps (label kustomize.toolkit.fluxcd.io/name)"},
			{"helm-app", "flux helmrelease " + ns + "/carts-release (label helm.toolkit.fluxcd.io/name)"},
			{"argo-app", "argo cd application " + ns + "/shop (annotation argocd.argoproj.io/tracking-id)"},
			{"argo-label-app", "argo cd application " + ns + "/shop (label app.kubernetes.io/instance)"},
		} {
			before := replicas(tc.name)
			got := scale("scale", tc.name, false)
			checkFinished(t, 0, step{wantFail: "refused (gitops): deployment {ns}/" + tc.name + " is managed by " + tc.owner}, ns, got)
			if !strings.Contains(got.message, `the gitops policy is refuse (the default: the catalog sets no gitops.policy): set guardrails.gitops of entry "scale", or the catalog's gitops.policy, to warn or suspend`) {
				t.Errorf("%s: refusal %q does not name the setting", tc.name, got.message)
			}
			if after := replicas(tc.name); after != before {
				t.Errorf("%s: written although refused: %+v -> %+v", tc.name, before, after)
			}
		}
		// A Helm chart's instance label, with no Application of its name.
		checkFinished(t, 0, step{want: "scaled deployment {ns}/chart-app from 1 to 2"}, ns, scale("scale", "chart-app", false))
	})

	t.Run("warn", func(t *testing.T) {
		got := scale("scale-warn", "helm-app", false)
		checkWarning(t, "warn", got, "scaled deployment "+ns+"/helm-app from 1 to 2",
			"flux helmrelease "+ns+"/carts-release manages deployment "+ns+"/helm-app (label helm.toolkit.fluxcd.io/name) and will revert this at its next sync")
		if r := replicas("helm-app").replicas; r != 2 {
			t.Errorf("helm-app at %d replicas, want 2", r)
		}
		if off, at := ownerState(ctx, t, dyn, gitops.HelmReleases, ns, "carts-release"); off || at != "" {
			t.Errorf("warn suspended the helmrelease: %v %q", off, at)
		}
	})

	t.Run("suspend dry run", func(t *testing.T) {
		before := replicas("argo-app")
		got := scale("scale-suspend", "argo-app", true)
		checkWarning(t, "dry run", got, "dry run: would scale", "would turn off self-heal of argo cd application "+ns+"/shop until ")
		if off, at := ownerState(ctx, t, dyn, gitops.Applications, ns, "shop"); off || at != "" {
			t.Errorf("a dry run turned self-heal off: %v %q", off, at)
		}
		if after := replicas("argo-app"); after != before {
			t.Errorf("a dry run scaled: %+v -> %+v", before, after)
		}
	})

	t.Run("suspend", func(t *testing.T) {
		for _, tc := range []struct {
			name, said string
			gvr        schema.GroupVersionResource
			owner      string
		}{
			{"flux-app", "suspended flux kustomization " + ns + "/apps", gitops.Kustomizations, "apps"},
			{"argo-app", "turned off self-heal of argo cd application " + ns + "/shop", gitops.Applications, "shop"},
		} {
			began := time.Now()
			got := scale("scale-suspend", tc.name, false)
			checkWarning(t, tc.name, got, "scaled deployment "+ns+"/"+tc.name+" from 1 to 2", tc.said+" (", " (gitops.suspendFor 1h0m0s): it will revert this when it resumes")
			off, at := ownerState(ctx, t, dyn, tc.gvr, ns, tc.owner)
			until, err := time.Parse(time.RFC3339, at)
			if !off || err != nil || until.Before(began.Add(time.Hour-time.Second)) || until.After(time.Now().Add(time.Hour)) {
				t.Errorf("%s: owner off %v, resume at %q; want off until an hour from now", tc.name, off, at)
			}
			if !strings.Contains(got.message, "until "+at) {
				t.Errorf("%s: message %q does not say until when (%s)", tc.name, got.message, at)
			}
			if r := replicas(tc.name).replicas; r != 2 {
				t.Errorf("%s at %d replicas, want 2", tc.name, r)
			}
		}
	})
}

// TestGitOpsSuspensionEndsWithoutItsReplica: the replica that suspended a
// Kustomization and turned off an Application's self-heal is gone; two
// others, running Maintain at the same time, resume both once the bound
// has passed, and leave a Kustomization a person suspended alone.
func TestGitOpsSuspensionEndsWithoutItsReplica(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	_, dyn := providerClients(t, cp)
	createOwner(ctx, t, dyn, gitops.Kustomizations, "Kustomization", ns, "apps", kustomizationSpec(false))
	createOwner(ctx, t, dyn, gitops.Kustomizations, "Kustomization", ns, "held", kustomizationSpec(true))
	createOwner(ctx, t, dyn, gitops.Applications, "Application", ns, "shop", applicationSpec(ns))
	deployGitOps(ctx, t, cp.client, ns, "flux-app", map[string]string{gitops.FluxKustomizeName: "apps", gitops.FluxKustomizeNamespace: ns}, nil)
	deployGitOps(ctx, t, cp.client, ns, "held-app", map[string]string{gitops.FluxKustomizeName: "held", gitops.FluxKustomizeNamespace: ns}, nil)
	deployGitOps(ctx, t, cp.client, ns, "argo-app", nil, map[string]string{gitops.ArgoCDTrackingID: "shop:apps/Deployment:" + ns + "/argo-app"})

	const bound = 2 * time.Second
	catalog := `actions:
  - {name: scale, kind: scale, target: {override: [name]}}
gitops: {policy: suspend, suspendFor: 2s, argocdNamespaces: [` + ns + `]}
`
	// Replica a suspends, then dies: it never runs Maintain.
	a := gitopsInstance(t, cp, "a", catalog)
	for _, name := range []string{"flux-app", "argo-app"} {
		got := a.run(ctx, t, request(stage, "scale", `{"name": "`+name+`", "replicas": "+1", "wait": false}`, false))
		checkWarning(t, name, got, "(gitops.suspendFor 2s)")
	}
	got := a.run(ctx, t, request(stage, "scale", `{"name": "held-app", "replicas": "+1", "wait": false}`, false))
	checkWarning(t, "held-app", got, "flux kustomization "+ns+"/held (label kustomize.toolkit.fluxcd.io/name) is suspended already, not by the provider")
	// Each owner has its own bound: under load the two suspensions can fall
	// in different seconds.
	resumeAt := func(gvr schema.GroupVersionResource, name string) time.Time {
		_, at := ownerState(ctx, t, dyn, gvr, ns, name)
		due, err := time.Parse(time.RFC3339, at)
		if err != nil {
			t.Fatalf("%s resume-at %q: %v", name, at, err)
		}
		return due
	}
	fluxDue, argoDue := resumeAt(gitops.Kustomizations, "apps"), resumeAt(gitops.Applications, "shop")
	dueAt := fluxDue
	if argoDue.After(dueAt) {
		dueAt = argoDue
	}

	// Replicas b and c, as the composition root makes the gate.
	settings, err := gitops.Section{Policy: "suspend", SuspendFor: bound.String(), ArgoCDNamespaces: []string{ns}}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*gitops.Gate{
		gitops.New(gitops.Config{Settings: settings, Dynamic: dyn, Identity: "b"}),
		gitops.New(gitops.Config{Settings: settings, Dynamic: dyn, Identity: "c"}),
	}
	maintain := func() {
		var wg sync.WaitGroup
		for _, g := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				g.Maintain(mctx)
			}()
		}
		wg.Wait()
	}
	// Before its bound, Maintain leaves an owner suspended.
	if time.Now().Before(dueAt) {
		maintain()
		checked := time.Now()
		if off, _ := ownerState(ctx, t, dyn, gitops.Kustomizations, ns, "apps"); !off && checked.Before(fluxDue) {
			t.Fatalf("kustomization resumed at %s, before its bound %s", checked.Format(time.RFC3339Nano), fluxDue.Format(time.RFC3339))
		}
		if off, _ := ownerState(ctx, t, dyn, gitops.Applications, ns, "shop"); !off && checked.Before(argoDue) {
			t.Fatalf("application's self-heal back at %s, before its bound %s", checked.Format(time.RFC3339Nano), argoDue.Format(time.RFC3339))
		}
	}
	eventually(ctx, t, "the suspensions to end", func(ctx context.Context) (bool, string, error) {
		maintain()
		fluxOff, fa := ownerState(ctx, t, dyn, gitops.Kustomizations, ns, "apps")
		argoOff, aa := ownerState(ctx, t, dyn, gitops.Applications, ns, "shop")
		return !fluxOff && fa == "" && !argoOff && aa == "", fmt.Sprintf("kustomization suspended %v until %q, self-heal off %v until %q", fluxOff, fa, argoOff, aa), nil
	})
	// Both are resumed by now, so now is past both bounds.
	if now := time.Now(); now.Before(dueAt) {
		t.Errorf("both resumed at %s, before the later bound %s", now.Format(time.RFC3339Nano), dueAt.Format(time.RFC3339))
	}
	if off, at := ownerState(ctx, t, dyn, gitops.Kustomizations, ns, "held"); !off || at != "" {
		t.Errorf("the person's suspension was touched: suspended %v, record %q", off, at)
	}
}

// takeOver is what kustomize-controller does before it applies
// (fluxcd/pkg/ssa PatchReplaceFieldsManagers with the managers its
// reconciler lists): the fields of the managers whose names start with
// "kubectl", of "before-first-apply", and of its own updates become its
// applied ones, so that its apply of Git removes them when Git does not
// have them. That is the cause of flux2#2888.
func takeOver(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		kept  []metav1.ManagedFieldsEntry
		own   *metav1.ManagedFieldsEntry
		taken = map[string]any{}
	)
	for i, e := range d.ManagedFields {
		switch {
		case e.Subresource != "":
			kept = append(kept, e)
		case e.Manager == fluxManager && e.Operation == metav1.ManagedFieldsOperationApply:
			own = &d.ManagedFields[i]
		case strings.HasPrefix(e.Manager, "kubectl"),
			e.Operation == metav1.ManagedFieldsOperationUpdate && (e.Manager == "before-first-apply" || e.Manager == fluxManager):
			union(t, taken, e.FieldsV1)
		default:
			kept = append(kept, e)
		}
	}
	if len(taken) == 0 {
		return
	}
	if own == nil {
		t.Fatalf("deployment %s/%s has no fields applied by %s", ns, name, fluxManager)
	}
	union(t, taken, own.FieldsV1)
	raw, err := json.Marshal(taken)
	if err != nil {
		t.Fatal(err)
	}
	own.FieldsV1 = metav1.NewFieldsV1(string(raw))
	patch, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/metadata/managedFields", "value": append(kept, *own)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: fluxManager}); err != nil {
		t.Fatalf("take over the fields of deployment %s/%s: %v", ns, name, err)
	}
}

// union adds a FieldsV1 set (a JSON trie) into into.
func union(t *testing.T, into map[string]any, f *metav1.FieldsV1) {
	t.Helper()
	if f == nil {
		return
	}
	var set map[string]any
	if err := json.Unmarshal(f.GetRawBytes(), &set); err != nil {
		t.Fatal(err)
	}
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			sub, _ := v.(map[string]any)
			if have, ok := dst[k].(map[string]any); ok && sub != nil {
				merge(have, sub)
				continue
			}
			dst[k] = v
		}
	}
	merge(into, set)
}

// templateOf reads the generation (it moves with every change of the spec,
// here the pod template's) and the restart annotation of a Deployment.
func templateOf(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) (int64, string) {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Generation, d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]
}

// TestGitOpsFluxRestartRestartsOnce reproduces flux2#2888 with the API
// server and kustomize-controller's way of applying: kubectl's rollout
// restart is undone by the next reconcile, which rolls the pods a second
// time; the provider's restart, of a Flux-managed Deployment under warn,
// rolls them once and lasts.
func TestGitOpsFluxRestartRestartsOnce(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	_, dyn := providerClients(t, cp)
	createOwner(ctx, t, dyn, gitops.Kustomizations, "Kustomization", ns, "apps", kustomizationSpec(false))
	flux := map[string]string{gitops.FluxKustomizeName: "apps", gitops.FluxKustomizeNamespace: ns}
	manifests := map[string][]byte{
		"carts":  deployGitOps(ctx, t, cp.client, ns, "carts", flux, nil),
		"orders": deployGitOps(ctx, t, cp.client, ns, "orders", flux, nil),
	}
	reconcile := func(name string) {
		takeOver(ctx, t, cp.client, ns, name)
		apply(ctx, t, cp.client, ns, name, fluxManager, manifests[name])
	}

	// kubectl rollout restart: its strategic merge patch, as "kubectl-rollout".
	g0, _ := templateOf(ctx, t, cp.client, ns, "orders")
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"` + time.Now().UTC().Format(time.RFC3339) + `"}}}}}`)
	if _, err := cp.client.AppsV1().Deployments(ns).Patch(ctx, "orders", types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-rollout"}); err != nil {
		t.Fatal(err)
	}
	reconcile("orders")
	if g, stamp := templateOf(ctx, t, cp.client, ns, "orders"); g-g0 != 2 || stamp != "" {
		t.Fatalf("kubectl's restart and a Flux reconcile: %d pod-template changes, restart annotation %q; want 2 (flux2#2888) and none left", g-g0, stamp)
	}

	// The provider's restart, under warn.
	inst := gitopsInstance(t, cp, "a", `actions:
  - {name: restart, kind: restart}
gitops: {policy: warn}
`)
	g0, _ = templateOf(ctx, t, cp.client, ns, "carts")
	got := inst.run(ctx, t, request(stage, "restart", "", false))
	checkFinished(t, 0, step{want: "restarted deployment {ns}/carts (never restarted); rollout converged in "}, ns, got)
	_, stamp := templateOf(ctx, t, cp.client, ns, "carts")
	for range 2 {
		reconcile("carts")
	}
	g, after := templateOf(ctx, t, cp.client, ns, "carts")
	if g-g0 != 1 || after != stamp || stamp == "" {
		t.Fatalf("the provider's restart and two Flux reconciles: %d pod-template changes, restart annotation %q -> %q; want 1, kept", g-g0, stamp, after)
	}
	waitConverged(ctx, t, cp.client, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}, 1)
	if d, err := cp.client.AppsV1().Deployments(ns).Get(ctx, "carts", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if d.Status.ObservedGeneration != g {
		t.Errorf("observed generation %d, want %d", d.Status.ObservedGeneration, g)
	} else {
		checkRestartManager(t, d)
	}
}

// checkRestartManager checks that the restart annotation belongs to a
// manager Flux leaves alone.
func checkRestartManager(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	for _, e := range d.ManagedFields {
		if e.FieldsV1 != nil && strings.Contains(e.FieldsV1.GetRawString(), `"f:kubectl.kubernetes.io/restartedAt"`) {
			if e.Manager != providerUserAgent {
				t.Errorf("the restart annotation is managed by %q (%s), want %q", e.Manager, e.Operation, providerUserAgent)
			}
			return
		}
	}
	t.Error("no manager owns the restart annotation")
}

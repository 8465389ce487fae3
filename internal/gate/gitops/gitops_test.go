package gitops

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

var clock = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func newFake(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		Applications: "ApplicationList", Kustomizations: "KustomizationList", HelmReleases: "HelmReleaseList",
	}, objs...)
}

func kustomization(ns, name string, suspended bool) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"interval": "5m", "prune": true, "suspend": suspended},
	}}
}

func helmRelease(ns, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"interval": "5m"},
	}}
}

// application has automated sync with selfHeal, or none when automated
// is nil.
func application(ns, name string, automated map[string]any) *unstructured.Unstructured {
	spec := map[string]any{"project": "default", "destination": map[string]any{"server": "https://kubernetes.default.svc"}}
	if automated != nil {
		spec["syncPolicy"] = map[string]any{"automated": automated}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
}

var carts = workload.Ref{Kind: workload.Deployment, Namespace: "shop-prod", Name: "carts"}

func deployment(labels, annotations map[string]string) metav1.Object {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: carts.Namespace, Name: carts.Name, Labels: labels, Annotations: annotations}}
}

var (
	fluxLabels = map[string]string{FluxKustomizeName: "apps", FluxKustomizeNamespace: "flux-system"}
	helmLabels = map[string]string{FluxHelmName: "carts", FluxHelmNamespace: "shop-prod",
		FluxKustomizeName: "apps", FluxKustomizeNamespace: "flux-system"}
	trackingID = map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop-prod/carts"}
)

func subject(kind string, obj metav1.Object, settings map[string]string) gate.Subject {
	return gate.Subject{Entry: kind, Kind: kind, Namespace: carts.Namespace, Target: carts, Object: obj, Settings: settings,
		Request: action.Request{TriggeredID: "trig-1"}}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		section Section
		want    Settings
		wantErr string
	}{
		{"defaults", Section{}, Settings{Policy: Refuse, SuspendFor: 30 * time.Minute, ArgoCDNamespaces: []string{"argocd"}}, ""},
		{"all set", Section{Policy: "suspend", SuspendFor: "2h", ArgoCDNamespaces: []string{"argocd", "team"}},
			Settings{Policy: Suspend, PolicySet: true, SuspendFor: 2 * time.Hour, ArgoCDNamespaces: []string{"argocd", "team"}}, ""},
		{"bad policy", Section{Policy: "ignore"}, Settings{}, `policy: "ignore" is not refuse, warn or suspend`},
		{"bad duration", Section{SuspendFor: "soon"}, Settings{}, `suspendFor: "soon" is not a duration`},
		{"too long", Section{SuspendFor: "48h"}, Settings{}, "suspendFor: 48h0m0s is not between 1s and 24h0m0s"},
		{"empty namespaces", Section{ArgoCDNamespaces: []string{}}, Settings{}, "argocdNamespaces: empty"},
		{"bad namespace", Section{ArgoCDNamespaces: []string{"Argo_CD"}}, Settings{}, `argocdNamespaces[0]: "Argo_CD" is not a namespace`},
		{"twice", Section{ArgoCDNamespaces: []string{"argocd", "argocd"}}, Settings{}, "argocdNamespaces[1]: argocd is listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.section.Resolve()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Policy != tc.want.Policy || got.PolicySet != tc.want.PolicySet || got.SuspendFor != tc.want.SuspendFor ||
				strings.Join(got.ArgoCDNamespaces, ",") != strings.Join(tc.want.ArgoCDNamespaces, ",") {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	forbidApps := func(f *dynamicfake.FakeDynamicClient) {
		f.PrependReactor("get", "applications", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(Applications.GroupResource(), "shop", errors.New("rbac"))
		})
	}
	for _, tc := range []struct {
		name        string
		objs        []runtime.Object
		nilClient   bool
		react       func(*dynamicfake.FakeDynamicClient)
		labels      map[string]string
		annotations map[string]string
		namespaces  []string
		want        string // the owner, "" for none
		unreachable bool
	}{
		{name: "no marks", objs: []runtime.Object{kustomization("flux-system", "apps", false)}},
		{name: "flux kustomization", objs: []runtime.Object{kustomization("flux-system", "apps", false)},
			labels: fluxLabels, want: "flux kustomization flux-system/apps"},
		{name: "flux kustomization gone: nothing reverts it", labels: fluxLabels},
		{name: "the helmrelease, not the kustomization that applied it",
			objs:   []runtime.Object{kustomization("flux-system", "apps", false), helmRelease("shop-prod", "carts")},
			labels: helmLabels, want: "flux helmrelease shop-prod/carts"},
		{name: "helmrelease gone, its kustomization remains", objs: []runtime.Object{kustomization("flux-system", "apps", false)},
			labels: helmLabels, want: "flux kustomization flux-system/apps"},
		{name: "argo cd tracking id", objs: []runtime.Object{application("argocd", "shop", nil)},
			annotations: trackingID, want: "argo cd application argocd/shop"},
		{name: "a copied tracking id names another object", objs: []runtime.Object{application("argocd", "shop", nil)},
			annotations: map[string]string{ArgoCDTrackingID: "shop:apps/Deployment:shop-prod/orders"}},
		{name: "a tracking id of another kind", objs: []runtime.Object{application("argocd", "shop", nil)},
			annotations: map[string]string{ArgoCDTrackingID: "shop:apps/StatefulSet:shop-prod/carts"}},
		{name: "a tracking id that is not one", objs: []runtime.Object{application("argocd", "shop", nil)},
			annotations: map[string]string{ArgoCDTrackingID: "shop"}},
		{name: "tracking id of an application in another namespace",
			objs: []runtime.Object{application("team", "shop", nil)}, namespaces: []string{"argocd", "team"},
			annotations: map[string]string{ArgoCDTrackingID: "team_shop:apps/Deployment:shop-prod/carts"}, want: "argo cd application team/shop"},
		{name: "tracking id of a namespace the gate may not look in: still argo cd's",
			annotations: map[string]string{ArgoCDTrackingID: "team_shop:apps/Deployment:shop-prod/carts"},
			want:        "argo cd application team/shop", unreachable: true},
		{name: "tracking id, application forbidden: still argo cd's", react: forbidApps,
			annotations: trackingID, want: "argo cd application argocd/shop", unreachable: true},
		{name: "instance label of a helm chart, no application",
			labels: map[string]string{ArgoCDInstanceLabel: "carts"}},
		{name: "instance label, application forbidden: cannot tell it from helm's", react: forbidApps,
			labels: map[string]string{ArgoCDInstanceLabel: "shop"}},
		{name: "instance label of an application", objs: []runtime.Object{application("argocd", "shop", nil)},
			labels: map[string]string{ArgoCDInstanceLabel: "shop"}, want: "argo cd application argocd/shop"},
		{name: "custom instance label", objs: []runtime.Object{application("argocd", "shop", nil)},
			labels: map[string]string{ArgoCDCustomInstanceLabel: "shop"}, want: "argo cd application argocd/shop"},
		{name: "offline: flux labels tell", nilClient: true, labels: fluxLabels,
			want: "flux kustomization flux-system/apps", unreachable: true},
		{name: "offline: the tracking id tells", nilClient: true, annotations: trackingID,
			want: "argo cd application argocd/shop", unreachable: true},
		{name: "offline: the instance label does not", nilClient: true, labels: map[string]string{ArgoCDInstanceLabel: "shop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Settings: Settings{ArgoCDNamespaces: tc.namespaces}}
			if !tc.nilClient {
				f := newFake(tc.objs...)
				if tc.react != nil {
					tc.react(f)
				}
				c.Dynamic = f
			}
			o, err := New(c).find(context.Background(), carts, deployment(tc.labels, tc.annotations))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if o != nil {
				got = o.String()
			}
			if got != tc.want {
				t.Fatalf("owner %q, want %q", got, tc.want)
			}
			if o != nil && (o.obj == nil) != tc.unreachable {
				t.Errorf("owner read: %v (unreachable: %v), want unreachable %v", o.obj != nil, o.unreach, tc.unreachable)
			}
		})
	}
}

func TestFindFailsWhenItCannotTell(t *testing.T) {
	f := newFake()
	f.PrependReactor("get", "kustomizations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd")
	})
	g := New(Config{Dynamic: f})
	_, err := g.Admit(context.Background(), subject("scale", deployment(fluxLabels, nil), nil))
	var refusal *action.Refusal
	if err == nil || errors.As(err, &refusal) || !strings.Contains(err.Error(), "tell whether Argo CD or Flux manages deployment shop-prod/carts") {
		t.Fatalf("error %v, want one that says the gate cannot tell", err)
	}
}

func TestAdmitPolicies(t *testing.T) {
	flux := deployment(fluxLabels, nil)
	for _, tc := range []struct {
		name        string
		policy      Settings
		kind        string
		obj         metav1.Object
		settings    map[string]string
		serialized  bool
		wantRefusal string
		wantWarning string
	}{
		{name: "unmanaged target", kind: "scale", obj: deployment(map[string]string{"app": "carts"}, nil)},
		{name: "kinds without a target pass", kind: "webhook", serialized: true},
		{name: "refuse by default", kind: "scale", obj: flux,
			wantRefusal: `refused (gitops): deployment shop-prod/carts is managed by flux kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name), which puts back what the provider changes at its next sync; the gitops policy is refuse (the default: the catalog sets no gitops.policy): set guardrails.gitops of entry "scale", or the catalog's gitops.policy, to warn or suspend to act on it anyway`},
		{name: "refuse from the catalog, a restart too", policy: Settings{Policy: Refuse, PolicySet: true}, kind: "restart", obj: flux,
			wantRefusal: "the gitops policy is refuse (the catalog's gitops.policy)"},
		{name: "the entry overrides the catalog", policy: Settings{Policy: Warn, PolicySet: true}, kind: "scale", obj: flux,
			settings: map[string]string{SettingKey: "refuse"}, wantRefusal: `the gitops policy is refuse (guardrails.gitops of entry "scale")`},
		{name: "warn", policy: Settings{Policy: Warn, PolicySet: true}, kind: "rollback", obj: flux,
			wantWarning: "flux kustomization flux-system/apps manages deployment shop-prod/carts (label kustomize.toolkit.fluxcd.io/name) and will revert this at its next sync (gitops policy warn, the catalog's gitops.policy)"},
		{name: "warn from the entry", kind: "scale", obj: deployment(nil, trackingID), settings: map[string]string{SettingKey: "warn"},
			wantWarning: `argo cd application argocd/shop manages deployment shop-prod/carts (annotation argocd.argoproj.io/tracking-id) and will revert this at its next sync (gitops policy warn, guardrails.gitops of entry "scale")`},
		{name: "a restart lasts: no warning", policy: Settings{Policy: Warn}, kind: "restart", obj: flux},
		{name: "evicted pods are not in git: no warning", policy: Settings{Policy: Suspend}, kind: "delete-pods", obj: flux},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(kustomization("flux-system", "apps", false), application("argocd", "shop", map[string]any{"selfHeal": true}))
			g := New(Config{Settings: tc.policy, Dynamic: f, Now: func() time.Time { return clock }})
			s := subject(tc.kind, tc.obj, tc.settings)
			if tc.serialized {
				s.Target, s.Object = workload.Ref{}, nil
			}
			a, err := g.Admit(context.Background(), s)
			if tc.wantRefusal != "" {
				var refusal *action.Refusal
				if !errors.As(err, &refusal) || refusal.Rule != Rule || !strings.Contains(err.Error(), tc.wantRefusal) {
					t.Fatalf("got %v, want a refusal with %q", err, tc.wantRefusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Warning != tc.wantWarning || a.Done != nil {
				t.Errorf("admission %q (done %v), want %q", a.Warning, a.Done != nil, tc.wantWarning)
			}
			if len(f.Actions()) > 0 {
				for _, act := range f.Actions() {
					if act.GetVerb() != "get" {
						t.Errorf("the gate wrote: %s %s", act.GetVerb(), act.GetResource().Resource)
					}
				}
			}
		})
	}
}

// read gets an owner from the fake.
func read(t *testing.T, f *dynamicfake.FakeDynamicClient, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	obj, err := f.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// suspended says whether the owner's reverting is off, and the marks.
func suspended(t *testing.T, obj *unstructured.Unstructured) (bool, string) {
	t.Helper()
	var off bool
	if obj.GetKind() == "Application" {
		heal, _, _ := unstructured.NestedBool(obj.Object, "spec", "syncPolicy", "automated", "selfHeal")
		off = !heal
	} else {
		off, _, _ = unstructured.NestedBool(obj.Object, "spec", "suspend")
	}
	return off, obj.GetLabels()[SuspendedLabel] + " " + obj.GetAnnotations()[ResumeAt] + " " + obj.GetAnnotations()[ResumeTo]
}

func TestSuspend(t *testing.T) {
	until := "2026-12-07T10:30:00Z"
	for _, tc := range []struct {
		name        string
		owner       *unstructured.Unstructured
		obj         metav1.Object
		dryRun      bool
		wantWarning string
		wantOff     bool
		wantMarks   string
	}{
		{name: "flux kustomization", owner: kustomization("flux-system", "apps", false), obj: deployment(fluxLabels, nil),
			wantWarning: "suspended flux kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name) until " + until + " (gitops.suspendFor 30m0s): it will revert this when it resumes, unless Git changes meanwhile",
			wantOff:     true, wantMarks: "true " + until + " spec.suspend=false"},
		{name: "flux helmrelease", owner: helmRelease("shop-prod", "carts"), obj: deployment(helmLabels, nil),
			wantWarning: "suspended flux helmrelease shop-prod/carts", wantOff: true, wantMarks: "true " + until + " spec.suspend=false"},
		{name: "argo cd self-heal", owner: application("argocd", "shop", map[string]any{"selfHeal": true, "prune": true}), obj: deployment(nil, trackingID),
			wantWarning: "turned off self-heal of argo cd application argocd/shop (annotation argocd.argoproj.io/tracking-id) until " + until,
			wantOff:     true, wantMarks: "true " + until + " spec.syncPolicy.automated.selfHeal=true"},
		{name: "dry run changes nothing", owner: kustomization("flux-system", "apps", false), obj: deployment(fluxLabels, nil), dryRun: true,
			wantWarning: "would suspend flux kustomization flux-system/apps until " + until + " (gitops.suspendFor 30m0s)", wantMarks: "  "},
		{name: "suspended by a person: left alone", owner: kustomization("flux-system", "apps", true), obj: deployment(fluxLabels, nil),
			wantWarning: "flux kustomization flux-system/apps (label kustomize.toolkit.fluxcd.io/name) is suspended already, not by the provider: it will revert this once resumed",
			wantOff:     true, wantMarks: "  "},
		{name: "argo cd without automated sync: nothing to suspend", owner: application("argocd", "shop", nil), obj: deployment(nil, trackingID),
			wantWarning: "argo cd application argocd/shop (annotation argocd.argoproj.io/tracking-id) has no automated sync: its next sync, by hand, will revert this",
			wantOff:     true, wantMarks: "  "},
		{name: "argo cd automated sync turned off (v3)", owner: application("argocd", "shop", map[string]any{"enabled": false, "selfHeal": true}), obj: deployment(nil, trackingID),
			wantWarning: "has no automated sync", wantMarks: "  "},
		{name: "argo cd self-heal off by a person", owner: application("argocd", "shop", map[string]any{"selfHeal": false}), obj: deployment(nil, trackingID),
			wantWarning: "has self-heal off, not by the provider: its next sync will revert this", wantOff: true, wantMarks: "  "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(tc.owner)
			g := New(Config{Settings: Settings{Policy: Suspend}, Dynamic: f, Identity: "replica-a", Now: func() time.Time { return clock }})
			s := subject("scale", tc.obj, nil)
			s.DryRun = tc.dryRun
			a, err := g.Admit(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(a.Warning, tc.wantWarning) && !strings.Contains(a.Warning, tc.wantWarning) {
				t.Errorf("warning %q, want %q", a.Warning, tc.wantWarning)
			}
			owner := read(t, f, ownerGVR(tc.owner), tc.owner.GetNamespace(), tc.owner.GetName())
			off, marks := suspended(t, owner)
			if off != tc.wantOff || marks != tc.wantMarks {
				t.Errorf("owner off %v, marks %q; want %v, %q", off, marks, tc.wantOff, tc.wantMarks)
			}
			if tc.wantMarks != "  " && !strings.Contains(owner.GetAnnotations()[SuspendedBy], `replica-a for scale of deployment shop-prod/carts (entry "scale", triggeredid trig-1)`) {
				t.Errorf("suspended-by %q", owner.GetAnnotations()[SuspendedBy])
			}
			if (a.Done != nil) != (tc.wantMarks != "  ") {
				t.Errorf("done set: %v", a.Done != nil)
			}
		})
	}
}

func ownerGVR(obj *unstructured.Unstructured) schema.GroupVersionResource {
	switch obj.GetKind() {
	case "Application":
		return Applications
	case "HelmRelease":
		return HelmReleases
	}
	return Kustomizations
}

func TestSuspendUnreachableRefuses(t *testing.T) {
	f := newFake()
	f.PrependReactor("get", "kustomizations", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(Kustomizations.GroupResource(), "apps", errors.New("rbac"))
	})
	g := New(Config{Settings: Settings{Policy: Suspend}, Dynamic: f})
	_, err := g.Admit(context.Background(), subject("scale", deployment(fluxLabels, nil), nil))
	var refusal *action.Refusal
	want := "which the provider cannot suspend"
	if !errors.As(err, &refusal) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "grant the provider get and update on kustomizations.kustomize.toolkit.fluxcd.io") {
		t.Fatalf("got %v, want a refusal with %q", err, want)
	}
}

func TestSuspendExtendsAndUndoes(t *testing.T) {
	ctx := context.Background()
	f := newFake(kustomization("flux-system", "apps", false))
	now := clock
	g := New(Config{Settings: Settings{Policy: Suspend}, Dynamic: f, Now: func() time.Time { return now }})
	first, err := g.Admit(ctx, subject("scale", deployment(fluxLabels, nil), nil))
	if err != nil || first.Done == nil {
		t.Fatalf("first: %v, done %v", err, first.Done != nil)
	}
	// A second action, ten minutes later, keeps it suspended longer.
	now = clock.Add(10 * time.Minute)
	second, err := g.Admit(ctx, subject("rollback", deployment(fluxLabels, nil), nil))
	if err != nil || !strings.HasPrefix(second.Warning, "kept flux kustomization flux-system/apps suspended until 2026-12-07T10:40:00Z") || second.Done != nil {
		t.Fatalf("second: %v %q, done %v", err, second.Warning, second.Done != nil)
	}
	// The first changed nothing, but its suspension was extended since:
	// it stays.
	first.Done(ctx, false)
	if off, marks := suspended(t, read(t, f, Kustomizations, "flux-system", "apps")); !off || marks != "true 2026-12-07T10:40:00Z spec.suspend=false" {
		t.Fatalf("after the first's undo: off %v, marks %q", off, marks)
	}

	// An action that changed nothing ends the suspension it made.
	f = newFake(kustomization("flux-system", "apps", false))
	g = New(Config{Settings: Settings{Policy: Suspend}, Dynamic: f, Now: func() time.Time { return clock }})
	for _, changed := range []bool{true, false} {
		a, err := g.Admit(ctx, subject("scale", deployment(fluxLabels, nil), nil))
		if err != nil {
			t.Fatal(err)
		}
		a.Done(ctx, changed)
		off, marks := suspended(t, read(t, f, Kustomizations, "flux-system", "apps"))
		if off != changed || (marks == "  ") == changed {
			t.Errorf("changed %v: off %v, marks %q", changed, off, marks)
		}
		if changed {
			// Resume by hand, as Maintain would, for the next round.
			resume(t, f, clock.Add(time.Hour))
		}
	}
}

// resume runs Maintain of a new gate (another replica) at now.
func resume(t *testing.T, f *dynamicfake.FakeDynamicClient, now time.Time) {
	t.Helper()
	New(Config{Dynamic: f, Identity: "replica-b", Now: func() time.Time { return now }}).Maintain(context.Background())
}

func TestMaintain(t *testing.T) {
	ctx := context.Background()
	ours := func(obj *unstructured.Unstructured, at string) *unstructured.Unstructured {
		obj.SetLabels(map[string]string{SuspendedLabel: "true", "app": "x"})
		obj.SetAnnotations(map[string]string{ResumeAt: at, ResumeTo: "x", SuspendedBy: "replica-a", "keep": "me"})
		return obj
	}
	due, later := "2026-12-07T09:59:59Z", "2026-12-07T10:00:01Z"
	release := helmRelease("shop-prod", "carts")
	_ = unstructured.SetNestedField(release.Object, true, "spec", "suspend")
	f := newFake(
		ours(kustomization("flux-system", "due", true), due),
		ours(kustomization("team", "later", true), later),
		kustomization("flux-system", "person", true),
		ours(kustomization("flux-system", "resumed-by-hand", false), due),
		ours(kustomization("flux-system", "unreadable-bound", true), "tomorrow"),
		ours(release, due),
		ours(application("argocd", "shop", map[string]any{"selfHeal": false}), due),
		ours(application("argocd", "automation-removed", nil), due),
		ours(application("elsewhere", "shop", map[string]any{"selfHeal": false}), due),
	)
	resume(t, f, clock)

	for _, tc := range []struct {
		gvr       schema.GroupVersionResource
		ns, name  string
		wantOff   bool
		wantMarks string
	}{
		{Kustomizations, "flux-system", "due", false, "  "},
		{Kustomizations, "team", "later", true, "true " + later + " x"},
		{Kustomizations, "flux-system", "person", true, "  "},
		{Kustomizations, "flux-system", "resumed-by-hand", false, "  "},
		{Kustomizations, "flux-system", "unreadable-bound", false, "  "},
		{HelmReleases, "shop-prod", "carts", false, "  "},
		{Applications, "argocd", "shop", false, "  "},
		{Applications, "argocd", "automation-removed", true, "  "},
		{Applications, "elsewhere", "shop", true, "true " + due + " x"}, // not in argocdNamespaces
	} {
		obj := read(t, f, tc.gvr, tc.ns, tc.name)
		off, marks := suspended(t, obj)
		if off != tc.wantOff || marks != tc.wantMarks {
			t.Errorf("%s %s/%s: off %v, marks %q; want %v, %q", tc.gvr.Resource, tc.ns, tc.name, off, marks, tc.wantOff, tc.wantMarks)
		}
		if tc.wantMarks == "  " && tc.name != "person" && (obj.GetLabels()["app"] != "x" || obj.GetAnnotations()["keep"] != "me") {
			t.Errorf("%s %s/%s: the resume removed others' marks: %v %v", tc.gvr.Resource, tc.ns, tc.name, obj.GetLabels(), obj.GetAnnotations())
		}
	}
	none := newFake()
	none.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{}, "")
	})
	resume(t, none, clock)      // no tool installed: nothing to do
	New(Config{}).Maintain(ctx) // no client: nothing to do
}

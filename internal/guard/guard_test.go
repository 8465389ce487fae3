package guard

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestNamespace(t *testing.T) {
	tests := []struct {
		globs []string
		own   string
		ns    string
		want  string // "" allowed, else a piece of the refusal
	}{
		{[]string{"*"}, "keptn", "sockshop-production", ""},
		{[]string{"sockshop-*"}, "keptn", "sockshop-production", ""},
		{[]string{"sockshop-*"}, "keptn", "podtato-production", `namespace podtato-production is not allowed: it matches none of ALLOWED_NAMESPACES (now "sockshop-*"); add it there, or set NAMESPACE_OPT_IN_LABEL=keptn-action-provider.io/remediation=enabled and label it: kubectl label namespace podtato-production keptn-action-provider.io/remediation=enabled`},
		{[]string{"*"}, "keptn", "kube-system", "namespace kube-system is protected"},
		{[]string{"*"}, "keptn", "kube-public", "protected"},
		{[]string{"kube-*"}, "keptn", "kube-system", "protected"},
		{[]string{"*"}, "keptn", "keptn", "namespace keptn is protected"},
		{[]string{"*", "keptn"}, "keptn", "keptn", ""},
		{[]string{"kube-system"}, "keptn", "kube-system", ""},
		{nil, "keptn", "sockshop-production", "it matches none of ALLOWED_NAMESPACES (now empty)"},
		{nil, "keptn", "ingress-nginx", "namespace ingress-nginx is not allowed"},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.globs, tt.own)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Namespace(context.Background(), tt.ns)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%v: Namespace(%q) = %v, want allowed", tt.globs, tt.ns, err)
			}
			continue
		}
		var r *action.Refusal
		if !errors.As(err, &r) || r.Rule != RuleNamespace || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: Namespace(%q) = %v, want a %s refusal containing %q", tt.globs, tt.ns, err, RuleNamespace, tt.want)
		}
	}
}

func TestNewPolicyRefusesBadGlob(t *testing.T) {
	_, err := NewPolicy([]string{"sockshop-[", "*"}, "keptn")
	if err == nil || !strings.Contains(err.Error(), `ALLOWED_NAMESPACES: "sockshop-[" is not a valid glob`) {
		t.Fatalf("NewPolicy = %v, want the bad glob named", err)
	}
}

func TestOptOut(t *testing.T) {
	ref := workload.Ref{Kind: workload.Deployment, Namespace: "ns", Name: "carts"}
	for value, refused := range map[string]bool{"true": true, "yes": true, "": true, "false": false, " FALSE ": false} {
		obj := &metav1.ObjectMeta{Annotations: map[string]string{OptOutAnnotation: value}}
		err := OptOut(ref, obj)
		if got := err != nil; got != refused {
			t.Errorf("opt-out %q: refused = %v (%v), want %v", value, got, err, refused)
		}
		if err != nil && !strings.Contains(err.Error(), "deployment ns/carts is annotated keptn-action-provider.io/opt-out") {
			t.Errorf("refusal %q does not name the target and annotation", err)
		}
	}
	if err := OptOut(ref, &metav1.ObjectMeta{}); err != nil {
		t.Errorf("no annotation: %v", err)
	}
}

// TestDenyByDefault: the zero Policy, and one with no globs, allow nothing,
// not even the namespace Keptn's naming gives.
func TestDenyByDefault(t *testing.T) {
	for _, p := range []Policy{{}, {Own: "keptn"}} {
		for _, ns := range []string{"sockshop-production", "ingress-nginx", "monitoring", "kube-system"} {
			var r *action.Refusal
			if err := p.Namespace(context.Background(), ns); !errors.As(err, &r) || r.Rule != RuleNamespace {
				t.Errorf("%+v: Namespace(%q) = %v, want a refusal", p, ns, err)
			}
		}
	}
}

func TestNamespaceOptInLabel(t *testing.T) {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	on := map[string]string{"keptn-action-provider.io/remediation": "enabled"}
	c := fake.NewSimpleClientset(
		ns("shop-prod", on),
		ns("shop-dev", map[string]string{"keptn-action-provider.io/remediation": "disabled"}),
		ns("monitoring", nil),
		ns("kube-system", on),
		ns("keptn", on),
	)
	p, err := NewPolicy([]string{"listed-*"}, "keptn")
	if err != nil {
		t.Fatal(err)
	}
	p, err = p.WithOptIn(SuggestedOptInLabel, adapt.Clientset(c))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ns   string
		want string // "" allowed, else a piece of the refusal
	}{
		{"shop-prod", ""},
		{"listed-ns", ""}, // the allowlist, without reading the namespace
		{"shop-dev", `namespace shop-dev is not allowed: add it to ALLOWED_NAMESPACES (now "listed-*") or label it: kubectl label namespace shop-dev keptn-action-provider.io/remediation=enabled`},
		{"monitoring", "or label it: kubectl label namespace monitoring keptn-action-provider.io/remediation=enabled"},
		{"missing", "it does not exist, so it has no label keptn-action-provider.io/remediation=enabled"},
		{"kube-system", "namespace kube-system is protected: only its exact name in ALLOWED_NAMESPACES"},
		{"keptn", "namespace keptn is protected"},
	}
	for _, tt := range tests {
		err := p.Namespace(context.Background(), tt.ns)
		if tt.want == "" {
			if err != nil {
				t.Errorf("Namespace(%q) = %v, want allowed", tt.ns, err)
			}
			continue
		}
		var r *action.Refusal
		if !errors.As(err, &r) || r.Rule != RuleNamespace || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Namespace(%q) = %v, want a refusal containing %q", tt.ns, err, tt.want)
		}
	}
}

func TestNamespaceOptInLabelForbiddenAndErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		refusal string // a piece of the refusal; "" means an error, not a refusal
	}{
		{"RBAC forbids get namespaces", apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "shop-prod", errors.New("no rule")),
			"its label keptn-action-provider.io/remediation=enabled cannot be read: the provider may not get namespaces"},
		{"the API server fails", apierrors.NewServiceUnavailable("etcd is down"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewSimpleClientset()
			c.PrependReactor("get", "namespaces", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			p, err := Policy{}.WithOptIn(SuggestedOptInLabel, adapt.Clientset(c))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Namespace(context.Background(), "shop-prod")
			var r *action.Refusal
			if tc.refusal != "" {
				if !errors.As(err, &r) || !strings.Contains(err.Error(), tc.refusal) || !strings.Contains(err.Error(), "add it to ALLOWED_NAMESPACES, or grant get on namespaces") {
					t.Fatalf("Namespace = %v, want a refusal containing %q", err, tc.refusal)
				}
				return
			}
			if err == nil || errors.As(err, &r) || !apierrors.IsServiceUnavailable(err) {
				t.Fatalf("Namespace = %v, want the API error, wrapped, not a refusal", err)
			}
		})
	}
}

func TestWithOptInRefusesBadLabel(t *testing.T) {
	for _, label := range []string{"remediation", "bad key=x", "k=", "k=bad value"} {
		if _, err := (Policy{}).WithOptIn(label, adapt.Clientset(fake.NewSimpleClientset())); err == nil || !strings.Contains(err.Error(), "NAMESPACE_OPT_IN_LABEL") {
			t.Errorf("WithOptIn(%q) = %v, want an error naming NAMESPACE_OPT_IN_LABEL", label, err)
		}
	}
	if p, err := (Policy{}).WithOptIn("", nil); err != nil || p.OptIn.Key != "" {
		t.Errorf("WithOptIn(\"\") = %+v, %v; want it off", p, err)
	}
}

func TestTarget(t *testing.T) {
	req := action.Request{Project: "sockshop", Stage: "production", Service: "carts"}
	entry, where := `catalog entry "scale"`, `actions[0] in ACTIONS_CONFIG /etc/actions.yaml`
	tests := []struct {
		name       string
		override   []string
		namespaces []string
		sel        workload.Selector
		want       string // "" allowed, else a piece of the refusal
	}{
		{"default: no override", nil, nil, workload.Selector{}, ""},
		{"default: name and kind", nil, nil, workload.Selector{Name: "carts-db", Kind: "sts"}, ""},
		{"default: the namespace it would be anyway", nil, nil, workload.Selector{Namespace: "sockshop-production"}, ""},
		{"default: another namespace", nil, nil, workload.Selector{Namespace: "ingress-nginx", Name: "controller"},
			`the value sets "namespace": "ingress-nginx", but catalog entry "scale" does not let events choose the namespace, which is always <project>-<stage> (sockshop-production); to allow it, add namespace to target.override of catalog entry "scale" (actions[0] in ACTIONS_CONFIG /etc/actions.yaml); the namespace stays within ALLOWED_NAMESPACES`},
		{"pinned: name", []string{}, nil, workload.Selector{Name: "orders"},
			`the value sets "name": "orders", but catalog entry "scale" does not let events choose the workload`},
		{"pinned: kind", []string{}, nil, workload.Selector{Kind: "ds"}, `add kind to target.override of catalog entry "scale"`},
		{"namespace allowed", []string{"namespace", "name"}, nil, workload.Selector{Namespace: "shop-prod", Name: "carts"}, ""},
		{"namespace within target.namespaces", []string{"namespace"}, []string{"shop-*"}, workload.Selector{Namespace: "shop-prod"}, ""},
		{"namespace outside target.namespaces", []string{"namespace"}, []string{"shop-*"}, workload.Selector{Namespace: "monitoring"},
			`the value sets "namespace": "monitoring", which matches none of target.namespaces of catalog entry "scale"`},
		{"namespace allowed, but not the name", []string{"namespace"}, nil, workload.Selector{Namespace: "shop-prod", Name: "x"}, "add name to target.override"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, err := NewTarget(tt.override, tt.namespaces, entry, where)
			if err != nil {
				t.Fatal(err)
			}
			err = target.Check(req, tt.sel)
			if tt.want == "" {
				if err != nil {
					t.Errorf("Check = %v, want allowed", err)
				}
				return
			}
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != RuleTarget || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want a %s refusal containing %q", err, RuleTarget, tt.want)
			}
		})
	}
	// Without an event (lint), any namespace is an override.
	target, _ := NewTarget(nil, nil, entry, where)
	if err := target.Check(action.Request{}, workload.Selector{Namespace: "sockshop-production"}); err == nil {
		t.Error("Check without an event allowed a namespace")
	}
}

func TestNewTargetRefusesBadRules(t *testing.T) {
	for _, tc := range []struct {
		override, namespaces []string
		want                 string
	}{
		{[]string{"labels"}, nil, `target.override: "labels" is not a key`},
		{[]string{"name"}, []string{"shop-*"}, `target.namespaces: only with "namespace" in target.override`},
		{[]string{"namespace"}, []string{"shop-["}, `target.namespaces: "shop-[" is not a valid glob`},
	} {
		if _, err := NewTarget(tc.override, tc.namespaces, "x", "y"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewTarget(%v, %v) = %v, want %q", tc.override, tc.namespaces, err, tc.want)
		}
	}
}

package guard

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/action"
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
		{[]string{"sockshop-*"}, "keptn", "podtato-production", "matches none of ALLOWED_NAMESPACES (sockshop-*)"},
		{[]string{"*"}, "keptn", "kube-system", "namespace kube-system is protected"},
		{[]string{"*"}, "keptn", "kube-public", "protected"},
		{[]string{"kube-*"}, "keptn", "kube-system", "protected"},
		{[]string{"*"}, "keptn", "keptn", "namespace keptn is protected"},
		{[]string{"*", "keptn"}, "keptn", "keptn", ""},
		{[]string{"kube-system"}, "keptn", "kube-system", ""},
		{nil, "keptn", "sockshop-production", "matches none"},
	}
	for _, tt := range tests {
		p, err := NewPolicy(tt.globs, tt.own)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Namespace(tt.ns)
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

package workload

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

func TestParseKind(t *testing.T) {
	tests := []struct {
		in      string
		want    Kind
		wantErr bool
	}{
		{"Deployment", Deployment, false},
		{"deployment", Deployment, false},
		{"deployments", Deployment, false},
		{"deploy", Deployment, false},
		{"DEPLOY", Deployment, false},
		{"deployments.apps", Deployment, false},
		{"StatefulSet", StatefulSet, false},
		{"statefulsets", StatefulSet, false},
		{"sts", StatefulSet, false},
		{"DaemonSet", DaemonSet, false},
		{"ds", DaemonSet, false},
		{"Rollout", Rollout, false},
		{"rollouts", Rollout, false},
		{"ro", Rollout, false},
		{"rollouts.argoproj.io", Rollout, false},
		{"rollout.apps", "", true},
		{"", "", true},
		{"pod", "", true},
		{"replicaset", "", true},
		{"deployment.extensions", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKind(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseKind(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "accepted: deployment (deploy), statefulset (sts), daemonset (ds), rollout (ro, Argo Rollouts)") {
				t.Errorf("error %q does not list the accepted kinds", err)
			}
			if got != tt.want {
				t.Errorf("ParseKind(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRefString(t *testing.T) {
	tests := []struct {
		ref  Ref
		want string
	}{
		{Ref{Deployment, "sockshop-production", "carts"}, "deployment sockshop-production/carts"},
		{Ref{StatefulSet, "sockshop-production", "carts-db"}, "statefulset sockshop-production/carts-db"},
		{Ref{DaemonSet, "monitoring", "node-exporter"}, "daemonset monitoring/node-exporter"},
	}
	for _, tt := range tests {
		if got := tt.ref.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func deployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func scaledTo(d *appsv1.Deployment, replicas int32) *appsv1.Deployment {
	d.Spec.Replicas = &replicas
	return d
}

func statefulSet(ns, name string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func daemonSet(ns, name string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func TestResolve(t *testing.T) {
	req := action.Request{Project: "sockshop", Stage: "production", Service: "carts"}
	objects := []runtime.Object{
		// Direct strategy in production: only "carts".
		deployment("sockshop-production", "carts"),
		statefulSet("sockshop-production", "carts-db"),
		// Blue/green in staging: the canary "carts" (scaled to 0) and the primary.
		scaledTo(deployment("sockshop-staging", "carts"), 0),
		deployment("sockshop-staging", "carts-primary"),
		// Blue/green mid-release in canary: the new "carts" is live.
		scaledTo(deployment("sockshop-canary", "carts"), 2),
		deployment("sockshop-canary", "carts-primary"),
		// Scaled to zero on purpose, with no primary: still the target.
		scaledTo(deployment("sockshop-nightly", "carts"), 0),
		// Only a primary in hardening.
		deployment("sockshop-hardening", "carts-primary"),
		daemonSet("monitoring", "node-exporter"),
		deployment("other", "web"),
	}
	staging := req
	staging.Stage = "staging"
	hardening := req
	hardening.Stage = "hardening"
	dev := req
	dev.Stage = "dev"
	canary := req
	canary.Stage = "canary"
	nightly := req
	nightly.Stage = "nightly"

	tests := []struct {
		name     string
		req      action.Request
		sel      Selector
		want     Ref
		wantErr  string // substring; empty means success
		notFound bool   // whether the error must satisfy apierrors.IsNotFound
	}{
		{
			name: "keptn defaults",
			req:  req,
			want: Ref{Deployment, "sockshop-production", "carts"},
		},
		{
			name: "blue/green: the primary, not the canary",
			req:  staging,
			want: Ref{Deployment, "sockshop-staging", "carts-primary"},
		},
		{
			name: "blue/green mid-release: the live service comes first",
			req:  canary,
			want: Ref{Deployment, "sockshop-canary", "carts"},
		},
		{
			name: "scaled to zero without a primary",
			req:  nightly,
			want: Ref{Deployment, "sockshop-nightly", "carts"},
		},
		{
			name: "only a primary",
			req:  hardening,
			want: Ref{Deployment, "sockshop-hardening", "carts-primary"},
		},
		{
			name:     "neither service nor primary",
			req:      dev,
			wantErr:  "no deployment carts or carts-primary in namespace sockshop-dev",
			notFound: true,
		},
		{
			name: "explicit name skips the convention",
			req:  staging,
			sel:  Selector{Name: "carts"},
			want: Ref{Deployment, "sockshop-staging", "carts"},
		},
		{
			name:     "explicit name that does not exist",
			req:      staging,
			sel:      Selector{Name: "cart"},
			wantErr:  "deployment sockshop-staging/cart does not exist",
			notFound: true,
		},
		{
			name: "explicit namespace and name without project or stage",
			req:  action.Request{},
			sel:  Selector{Namespace: "other", Name: "web"},
			want: Ref{Deployment, "other", "web"},
		},
		{
			name: "explicit namespace, name from service",
			req:  action.Request{Service: "carts"},
			sel:  Selector{Namespace: "sockshop-staging"},
			want: Ref{Deployment, "sockshop-staging", "carts-primary"},
		},
		{
			name: "statefulset by short name",
			req:  req,
			sel:  Selector{Kind: "sts", Name: "carts-db"},
			want: Ref{StatefulSet, "sockshop-production", "carts-db"},
		},
		{
			name:     "kind changes what is looked up",
			req:      req,
			sel:      Selector{Kind: "StatefulSet"},
			wantErr:  "no statefulset carts or carts-primary in namespace sockshop-production",
			notFound: true,
		},
		{
			name: "daemonset",
			req:  action.Request{},
			sel:  Selector{Kind: "DaemonSet", Namespace: "monitoring", Name: "node-exporter"},
			want: Ref{DaemonSet, "monitoring", "node-exporter"},
		},
		{
			name:    "unknown kind",
			req:     req,
			sel:     Selector{Kind: "pod"},
			wantErr: `unknown kind "pod"; accepted: deployment (deploy), statefulset (sts), daemonset (ds)`,
		},
		{
			name:    "no project",
			req:     action.Request{Stage: "production", Service: "carts"},
			wantErr: `cannot tell the namespace: the event has no project or stage, and the value sets no "namespace"`,
		},
		{
			name:    "no stage",
			req:     action.Request{Project: "sockshop", Service: "carts"},
			wantErr: "cannot tell the namespace",
		},
		{
			name:    "no service",
			req:     action.Request{Project: "sockshop", Stage: "production"},
			wantErr: `cannot tell the workload: the event has no service, and the value sets no "name"`,
		},
		{
			name:    "invalid namespace",
			req:     req,
			sel:     Selector{Namespace: "../kube-system"},
			wantErr: `invalid namespace "../kube-system"`,
		},
		{
			name:    "invalid name",
			req:     req,
			sel:     Selector{Name: "Carts/x"},
			wantErr: `invalid name "Carts/x"`,
		},
		{
			name:    "invalid service",
			req:     action.Request{Project: "sockshop", Stage: "production", Service: "Carts Service"},
			wantErr: `service "Carts Service" is not a valid workload name`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset(objects...)
			got, err := Resolve(context.Background(), adapt.Clientset(c), tt.req, tt.sel)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Resolve = %v, want an error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if apierrors.IsNotFound(err) != tt.notFound {
					t.Errorf("IsNotFound(%v) = %v, want %v", err, !tt.notFound, tt.notFound)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Errorf("Resolve = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestResolveAPIError checks that an error other than not-found stops the
// search and is wrapped, rather than taken for a missing primary.
func TestResolveAPIError(t *testing.T) {
	c := fake.NewClientset(deployment("sockshop-production", "carts"))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "carts", errors.New("RBAC says no"))
	c.PrependReactor("get", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden
	})
	_, err := Resolve(context.Background(), adapt.Clientset(c), action.Request{Project: "sockshop", Stage: "production", Service: "carts"}, Selector{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("Resolve error = %v, want it to wrap the Forbidden error", err)
	}
	if !strings.Contains(err.Error(), "get deployment sockshop-production/carts") {
		t.Errorf("error %q does not say what was being read", err)
	}
}

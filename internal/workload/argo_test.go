package workload

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

func rolloutObject(ns, name string, replicas int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": RolloutAPIVersion, "kind": "Rollout",
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": "ro-uid"},
		"spec":     map[string]any{"replicas": replicas},
		"status":   map[string]any{"observedGeneration": "1", "stableRS": "abc", "currentPodHash": "def"},
	}}
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{RolloutResource(): "RolloutList"}, objs...)
}

// TestResolveRollout: a Rollout is the target when the value says so, or
// when the service has no Deployment but a Rollout of its name; without a
// dynamic client it cannot be read, and says why.
func TestResolveRollout(t *testing.T) {
	req := action.Request{Project: "shop", Stage: "prod", Service: "carts"}
	ro := rolloutObject("shop-prod", "carts", 0)
	tests := []struct {
		name    string
		sel     Selector
		deploy  bool
		dyn     bool
		want    Ref
		wantErr string
	}{
		{name: "fallback when there is no deployment", dyn: true, want: Ref{Rollout, "shop-prod", "carts"}},
		{name: "deployment first", deploy: true, dyn: true, want: Ref{Deployment, "shop-prod", "carts"}},
		{name: "kind ro, at 0 replicas", sel: Selector{Kind: "ro"}, deploy: true, dyn: true, want: Ref{Rollout, "shop-prod", "carts"}},
		{name: "named", sel: Selector{Kind: "rollout", Name: "carts"}, dyn: true, want: Ref{Rollout, "shop-prod", "carts"}},
		{name: "named, missing", sel: Selector{Kind: "rollout", Name: "orders"}, dyn: true, wantErr: "rollout shop-prod/orders does not exist"},
		{name: "no fallback without a dynamic client", wantErr: "no deployment carts or carts-primary in namespace shop-prod"},
		{name: "kind without a dynamic client", sel: Selector{Kind: "rollout"}, wantErr: "get rollout shop-prod/carts: no client for Argo Rollouts here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			if tt.deploy {
				n := int32(1)
				c = fake.NewClientset(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "carts", Namespace: "shop-prod"}, Spec: appsv1.DeploymentSpec{Replicas: &n}})
			}
			var dyn dynamic.Interface // nil: none
			if tt.dyn {
				dyn = fakeDynamic(ro.DeepCopy())
			}
			got, obj, err := ResolveObjectWith(context.Background(), adapt.Clientset(c), dyn, req, tt.sel)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ref = %v, want %v", got, tt.want)
			}
			if got.Kind == Rollout && obj.GetUID() != "ro-uid" {
				t.Errorf("object UID %q, want the Rollout's", obj.GetUID())
			}
		})
	}
	if _, _, err := GetRollout(context.Background(), nil, Ref{Rollout, "ns", "x"}); !errors.Is(err, ErrNoDynamic) {
		t.Errorf("GetRollout without a client: %v, want ErrNoDynamic", err)
	}
}

// TestRolloutPods: a Rollout's pods are those of the ReplicaSets it
// controls, not those of a Deployment's ReplicaSet with the same labels.
func TestRolloutPods(t *testing.T) {
	yes := true
	rs := func(name, kind, owner string) *appsv1.ReplicaSet {
		apiVersion := RolloutAPIVersion
		if kind == "Deployment" {
			apiVersion = "apps/v1"
		}
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: owner, Controller: &yes}}}}
	}
	pod := func(name, rs string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "carts"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: rs, UID: types.UID("uid-" + rs), Controller: &yes}}}}
	}
	c := fake.NewClientset(rs("carts-a", "Rollout", "carts"), rs("carts-b", "Rollout", "carts"), rs("carts-c", "Deployment", "carts"),
		pod("p1", "carts-a"), pod("p2", "carts-b"), pod("p3", "carts-c"))
	pods, err := Pods(context.Background(), adapt.Clientset(c), Ref{Rollout, "ns", "carts"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "p1,p2" {
		t.Errorf("pods %v, want p1,p2", names)
	}
}

package keda

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func scaledObject(name string, target map[string]any, labels, annotations map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": name, "namespace": "ns"}
	if labels != nil {
		meta["labels"] = labels
	}
	if annotations != nil {
		meta["annotations"] = annotations
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta,
		"spec": map[string]any{"scaleTargetRef": target, "minReplicaCount": int64(2)},
	}}
}

func newDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{Resource(): "ScaledObjectList"}, objs...)
}

// TestFind: a ScaledObject's target defaults to a Deployment in apps/v1;
// kind and group must both match.
func TestFind(t *testing.T) {
	dyn := newDynamic(
		scaledObject("web", map[string]any{"name": "web"}, nil, nil),
		scaledObject("db", map[string]any{"name": "db", "kind": "StatefulSet", "apiVersion": "apps/v1"}, nil, nil),
		scaledObject("ro", map[string]any{"name": "carts", "kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1"}, nil, nil),
	)
	for _, tt := range []struct {
		ref  workload.Ref
		want string
	}{
		{workload.Ref{Kind: workload.Deployment, Namespace: "ns", Name: "web"}, "web"},
		{workload.Ref{Kind: workload.StatefulSet, Namespace: "ns", Name: "db"}, "db"},
		{workload.Ref{Kind: workload.Rollout, Namespace: "ns", Name: "carts"}, "ro"},
		{workload.Ref{Kind: workload.Deployment, Namespace: "ns", Name: "carts"}, ""},
		{workload.Ref{Kind: workload.StatefulSet, Namespace: "ns", Name: "web"}, ""},
	} {
		so, err := Find(context.Background(), dyn, tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if so != nil {
			got = so.Name
			if so.MinReplicaCount != 2 || so.MaxReplicaCount != 100 {
				t.Errorf("%s: bounds %d, %d, want 2 and KEDA's default 100", tt.ref, so.MinReplicaCount, so.MaxReplicaCount)
			}
		}
		if got != tt.want {
			t.Errorf("Find(%s) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

// TestPauseOf tells the provider's pause from anyone else's.
func TestPauseOf(t *testing.T) {
	ours := map[string]any{Label: "true"}
	for _, tt := range []struct {
		name        string
		labels, ann map[string]any
		ours        bool
		foreign     string
	}{
		{name: "not paused"},
		{name: "ours", labels: ours, ann: map[string]any{PausedReplicasAnnotation: "3", Replicas: "3", UnpauseAt: "2024-05-01T10:00:00Z"}, ours: true},
		{name: "ours, changed", labels: ours, ann: map[string]any{PausedReplicasAnnotation: "4", Replicas: "3", UnpauseAt: "2024-05-01T10:00:00Z"},
			foreign: `autoscaling.keda.sh/paused-replicas: "4"`},
		{name: "someone's", ann: map[string]any{PausedReplicasAnnotation: "3"}, foreign: `autoscaling.keda.sh/paused-replicas: "3"`},
		{name: "paused", ann: map[string]any{PausedAnnotation: "true"}, foreign: `autoscaling.keda.sh/paused: "true"`},
		{name: "paused false", ann: map[string]any{PausedAnnotation: "false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, foreign := pauseOf(scaledObject("x", nil, tt.labels, tt.ann))
			if (p != nil) != tt.ours || foreign != tt.foreign {
				t.Errorf("pauseOf = %v, %q; want ours %v, foreign %q", p, foreign, tt.ours, tt.foreign)
			}
			if p != nil && (p.Replicas != 3 || p.String() != "3 replicas until 2024-05-01T10:00:00Z") {
				t.Errorf("pause %v", p)
			}
		})
	}
}

// TestMaintain unpauses only what is due, and of a pause someone changed
// removes only the provider's marks.
func TestMaintain(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	mark := func(value, set, until string) (map[string]any, map[string]any) {
		return map[string]any{Label: "true"}, map[string]any{PausedReplicasAnnotation: value, Replicas: set, UnpauseAt: until, "other": "kept"}
	}
	l1, a1 := mark("3", "3", "2024-05-01T09:59:59Z")
	l2, a2 := mark("3", "3", "2024-05-01T10:00:01Z")
	l3, a3 := mark("4", "3", "2024-05-01T09:00:00Z")
	l4, a4 := mark("3", "3", "garbled")
	dyn := newDynamic(scaledObject("due", nil, l1, a1), scaledObject("later", nil, l2, a2),
		scaledObject("changed", nil, l3, a3), scaledObject("garbled", nil, l4, a4))
	(&Unpauser{Dynamic: dyn, Now: func() time.Time { return now }}).Maintain(context.Background())
	for _, tt := range []struct {
		name   string
		paused string // paused-replicas after; "" none
		marked bool
	}{
		{"due", "", false},
		{"later", "3", true},
		{"changed", "4", false},
		{"garbled", "", false},
	} {
		u, err := dyn.Resource(Resource()).Namespace("ns").Get(context.Background(), tt.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a := u.GetAnnotations()
		_, marked := a[UnpauseAt]
		if a[PausedReplicasAnnotation] != tt.paused || marked != tt.marked || (u.GetLabels()[Label] == "true") != tt.marked || a["other"] != "kept" {
			t.Errorf("%s after Maintain: labels %v, annotations %v", tt.name, u.GetLabels(), a)
		}
	}
	(&Unpauser{}).Maintain(context.Background()) // no client: nothing to do
}

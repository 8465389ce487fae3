// Package keda lets the scale action work with KEDA rather than against it.
// A KEDA ScaledObject owns the HorizontalPodAutoscaler of its target
// (keda-hpa-<name>) and puts back any change made to it, so the action
// neither scales the target nor moves that autoscaler's floor: it pauses
// the ScaledObject at the count asked for with KEDA's own annotation,
// autoscaling.keda.sh/paused-replicas, for a bounded time. KEDA then
// scales the target to that count and stops autoscaling it; Unpauser
// removes the annotation when the bound is reached, on whichever replica of
// the provider runs first.
//
// The state lives on the ScaledObject: the bound (UnpauseAt), the count
// the provider set (Replicas, so that a pause someone changed since is no
// longer taken for the provider's) and a label (Label) that finds them.
package keda

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// KEDA's annotations: paused-replicas pauses at a count (KEDA scales the
// target to it first), paused pauses at the current count.
const (
	PausedReplicasAnnotation = "autoscaling.keda.sh/paused-replicas"
	PausedAnnotation         = "autoscaling.keda.sh/paused"
)

// The provider's marks on a ScaledObject it paused.
const (
	// Label is "true" on every ScaledObject the provider paused, for
	// Unpauser to list them.
	Label = action.AnnotationPrefix + "keda-paused"
	// UnpauseAt is when the pause ends, RFC 3339.
	UnpauseAt = action.AnnotationPrefix + "keda-unpause-at"
	// Replicas is the paused-replicas value the provider set: if the
	// annotation says otherwise now, someone else changed the pause, and
	// it is theirs.
	Replicas = action.AnnotationPrefix + "keda-paused-replicas"
)

// DefaultPause is how long a pause lasts unless the action says otherwise;
// MaxPause the longest an action may ask for.
const (
	DefaultPause = 30 * time.Minute
	MaxPause     = 24 * time.Hour
)

// Resource is the ScaledObjects' resource for the dynamic client.
func Resource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
}

// ScaledObject is what the scale action reads of one.
type ScaledObject struct {
	Namespace, Name string
	// MinReplicaCount and MaxReplicaCount are KEDA's bounds (0 and 100
	// when unset).
	MinReplicaCount, MaxReplicaCount int32
	// Pause is the provider's pause, if the ScaledObject is paused by it.
	Pause *Pause
	// Foreign, when set, says how someone else paused it.
	Foreign string
	// object is the ScaledObject as read, for the write.
	object *unstructured.Unstructured
}

// Pause is a pause the provider holds.
type Pause struct {
	Replicas int32
	Until    time.Time
}

func (s *ScaledObject) String() string {
	return "KEDA ScaledObject " + s.Namespace + "/" + s.Name
}

// Find returns the ScaledObject that scales ref, or nil when none does or
// KEDA is not installed (its CRD is missing). A ScaledObject's
// scaleTargetRef names its target, a Deployment in apps/v1 unless it says
// otherwise.
func Find(ctx context.Context, dyn dynamic.Interface, ref workload.Ref) (*ScaledObject, error) {
	list, err := dyn.Resource(Resource()).Namespace(ref.Namespace).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for a KEDA ScaledObject of %s: %w", ref, err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		t, _, _ := unstructured.NestedStringMap(u.Object, "spec", "scaleTargetRef")
		kind, apiVersion := t["kind"], t["apiVersion"]
		if kind == "" {
			kind = string(workload.Deployment)
		}
		if apiVersion == "" {
			apiVersion = "apps/v1"
		}
		gv, _ := schema.ParseGroupVersion(apiVersion)
		if t["name"] == ref.Name && kind == string(ref.Kind) && gv.Group == ref.Kind.Group() {
			return read(u), nil
		}
	}
	return nil, nil
}

// read reads the fields of ScaledObject from u.
func read(u *unstructured.Unstructured) *ScaledObject {
	s := &ScaledObject{Namespace: u.GetNamespace(), Name: u.GetName(), MinReplicaCount: 0, MaxReplicaCount: 100, object: u}
	if n, ok, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicaCount"); ok {
		s.MinReplicaCount = int32(n)
	}
	if n, ok, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicaCount"); ok {
		s.MaxReplicaCount = int32(n)
	}
	s.Pause, s.Foreign = pauseOf(u)
	return s
}

// pauseOf tells the provider's pause of u, or how someone else paused it.
func pauseOf(u *unstructured.Unstructured) (*Pause, string) {
	a := u.GetAnnotations()
	value, paused := a[PausedReplicasAnnotation]
	ours := u.GetLabels()[Label] == "true" && paused && a[Replicas] == value
	if ours {
		n, err := strconv.ParseInt(value, 10, 32)
		until, terr := time.Parse(time.RFC3339, a[UnpauseAt])
		if err == nil && terr == nil {
			return &Pause{Replicas: int32(n), Until: until}, ""
		}
	}
	switch {
	case paused:
		return nil, fmt.Sprintf("%s: %q", PausedReplicasAnnotation, value)
	case a[PausedAnnotation] != "" && a[PausedAnnotation] != "false":
		return nil, fmt.Sprintf("%s: %q", PausedAnnotation, a[PausedAnnotation])
	}
	return nil, ""
}

// SetPause pauses s at n replicas until until, or moves the provider's
// pause there. The patch carries the resourceVersion s was read at, so it
// fails with a Conflict if the ScaledObject changed since; the caller
// finds it again and decides anew.
func SetPause(ctx context.Context, dyn dynamic.Interface, s *ScaledObject, n int32, until time.Time) error {
	value := strconv.Itoa(int(n))
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": s.object.GetResourceVersion(),
		"labels":          map[string]any{Label: "true"},
		"annotations": map[string]any{
			PausedReplicasAnnotation: value,
			Replicas:                 value,
			UnpauseAt:                until.UTC().Format(time.RFC3339),
		},
	}})
	if err != nil {
		return fmt.Errorf("pause %s: %w", s, err)
	}
	if _, err := dyn.Resource(Resource()).Namespace(s.Namespace).Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("pause %s at %d replicas: %w", s, n, err)
	}
	return nil
}

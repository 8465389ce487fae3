package scale

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// rolloutScaler is the scale subresource of Argo Rollouts (rollouts/scale,
// declared in their CRD), reached through the dynamic client as kubectl
// scale reaches it: the Scale read and written back with the
// resourceVersion it was read at.
type rolloutScaler struct {
	rollouts dynamic.ResourceInterface
}

func newRolloutScaler(dyn dynamic.Interface, ref workload.Ref) (scaler, error) {
	if dyn == nil {
		return nil, fmt.Errorf("cannot scale %s: %w", ref, workload.ErrNoDynamic)
	}
	return rolloutScaler{rollouts: dyn.Resource(workload.RolloutResource()).Namespace(ref.Namespace)}, nil
}

func (r rolloutScaler) GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error) {
	u, err := r.rollouts.Get(ctx, name, opts, "scale")
	if err != nil {
		return nil, err
	}
	var s autoscalingv1.Scale
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
		return nil, fmt.Errorf("read the scale of rollout %s: %w", name, err)
	}
	return &s, nil
}

func (r rolloutScaler) UpdateScale(ctx context.Context, name string, s *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		return nil, fmt.Errorf("write the scale of rollout %s: %w", name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion("autoscaling/v1")
	u.SetKind("Scale")
	out, err := r.rollouts.Update(ctx, u, opts, "scale")
	if err != nil {
		return nil, err
	}
	var got autoscalingv1.Scale
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(out.Object, &got); err != nil {
		return nil, fmt.Errorf("read the scale of rollout %s: %w", name, err)
	}
	return &got, nil
}

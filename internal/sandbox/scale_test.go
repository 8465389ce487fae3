package sandbox

import (
	"context"
	"sync"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"

	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// scaler is the scale subresource of one kind of workload, so that tests
// run alike for Deployments and StatefulSets.
type scaler interface {
	GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error)
	UpdateScale(ctx context.Context, name string, s *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error)
}

// workloadState reads back what the reactor wrote to the workload itself.
type workloadState struct {
	spec, replicas, ready, available, updated int32
	generation, observedGeneration            int64
	resourceVersion                           string
}

type workload struct {
	kind, ns, name, selector string
	replicas                 int32
	scaler                   func(kube.Interface) scaler
	state                    func(context.Context, kube.Interface) (workloadState, error)
}

var workloads = []workload{
	{
		kind: "Deployment", ns: "sockshop-production", name: "carts", selector: "app=carts", replicas: 1,
		scaler: func(c kube.Interface) scaler { return c.AppsV1().Deployments("sockshop-production") },
		state: func(ctx context.Context, c kube.Interface) (workloadState, error) {
			d, err := c.AppsV1().Deployments("sockshop-production").Get(ctx, "carts", metav1.GetOptions{})
			if err != nil {
				return workloadState{}, err
			}
			return workloadState{*d.Spec.Replicas, d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas,
				d.Status.UpdatedReplicas, d.Generation, d.Status.ObservedGeneration, d.ResourceVersion}, nil
		},
	},
	{
		kind: "StatefulSet", ns: "sockshop-production", name: "carts-db", selector: "app=carts-db", replicas: 1,
		scaler: func(c kube.Interface) scaler { return c.AppsV1().StatefulSets("sockshop-production") },
		state: func(ctx context.Context, c kube.Interface) (workloadState, error) {
			s, err := c.AppsV1().StatefulSets("sockshop-production").Get(ctx, "carts-db", metav1.GetOptions{})
			if err != nil {
				return workloadState{}, err
			}
			return workloadState{*s.Spec.Replicas, s.Status.Replicas, s.Status.ReadyReplicas, s.Status.AvailableReplicas,
				s.Status.UpdatedReplicas, s.Generation, s.Status.ObservedGeneration, s.ResourceVersion}, nil
		},
	},
}

func TestScaleRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, w := range workloads {
		t.Run(w.kind, func(t *testing.T) {
			cs, err := New(sandboxseed.FS)
			if err != nil {
				t.Fatal(err)
			}
			sc := w.scaler(cs)

			s, err := sc.GetScale(ctx, w.name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("GetScale: %v", err)
			}
			if s.Name != w.name || s.Namespace != w.ns || s.Spec.Replicas != w.replicas ||
				s.Status.Replicas != w.replicas || s.Status.Selector != w.selector || s.ResourceVersion == "" {
				t.Fatalf("GetScale = %+v, want %s/%s with %d replicas, selector %q and a resourceVersion",
					s, w.ns, w.name, w.replicas, w.selector)
			}
			before, err := w.state(ctx, cs)
			if err != nil {
				t.Fatal(err)
			}

			s.Spec.Replicas = 3
			got, err := sc.UpdateScale(ctx, w.name, s, metav1.UpdateOptions{})
			if err != nil {
				t.Fatalf("UpdateScale: %v", err)
			}
			if got.Spec.Replicas != 3 || got.Status.Replicas != 3 || got.ResourceVersion == s.ResourceVersion {
				t.Errorf("UpdateScale = %+v, want 3 replicas and a new resourceVersion", got)
			}

			after, err := w.state(ctx, cs)
			if err != nil {
				t.Fatal(err)
			}
			want := workloadState{3, 3, 3, 3, 3, before.generation + 1, before.generation + 1, got.ResourceVersion}
			if after != want {
				t.Errorf("%s after UpdateScale = %+v, want %+v", w.kind, after, want)
			}

			again, err := sc.GetScale(ctx, w.name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("GetScale after update: %v", err)
			}
			if again.Spec.Replicas != 3 || again.ResourceVersion != got.ResourceVersion {
				t.Errorf("GetScale after update = %+v, want 3 replicas at resourceVersion %s", again, got.ResourceVersion)
			}
		})
	}
}

func TestUpdateScale(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// edit turns the freshly read scale into the one sent.
		edit     func(s *autoscalingv1.Scale)
		opts     metav1.UpdateOptions
		wantErr  func(error) bool
		wantSpec int32 // spec.replicas of the workload afterwards
		sameRV   bool  // whether the workload keeps its resourceVersion
	}{
		{
			name:     "stale resourceVersion conflicts",
			edit:     func(s *autoscalingv1.Scale) { s.Spec.Replicas = 2; s.ResourceVersion = "0" },
			wantErr:  apierrors.IsConflict,
			wantSpec: 1,
			sameRV:   true,
		},
		{
			name:     "no resourceVersion is unconditional",
			edit:     func(s *autoscalingv1.Scale) { s.Spec.Replicas = 2; s.ResourceVersion = "" },
			wantSpec: 2,
		},
		{
			name:     "negative replicas are invalid",
			edit:     func(s *autoscalingv1.Scale) { s.Spec.Replicas = -1 },
			wantErr:  apierrors.IsInvalid,
			wantSpec: 1,
			sameRV:   true,
		},
		{
			name:     "unknown workload",
			edit:     func(s *autoscalingv1.Scale) { s.Name = "nope"; s.ResourceVersion = "" },
			wantErr:  apierrors.IsNotFound,
			wantSpec: 1,
			sameRV:   true,
		},
		{
			name:     "unchanged replicas write nothing",
			edit:     func(s *autoscalingv1.Scale) {},
			wantSpec: 1,
			sameRV:   true,
		},
		{
			name:     "dry run writes nothing",
			edit:     func(s *autoscalingv1.Scale) { s.Spec.Replicas = 5 },
			opts:     metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}},
			wantSpec: 1,
			sameRV:   true,
		},
		{
			name:     "scale to zero",
			edit:     func(s *autoscalingv1.Scale) { s.Spec.Replicas = 0 },
			wantSpec: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := New(sandboxseed.FS)
			if err != nil {
				t.Fatal(err)
			}
			deployments := cs.AppsV1().Deployments("sockshop-production")
			s, err := deployments.GetScale(ctx, "carts", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rv := s.ResourceVersion
			tt.edit(s)

			_, err = deployments.UpdateScale(ctx, s.Name, s, tt.opts)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("UpdateScale: %v", err)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("UpdateScale error = %v, want another kind", err)
			}

			d, err := deployments.Get(ctx, "carts", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if *d.Spec.Replicas != tt.wantSpec {
				t.Errorf("spec.replicas = %d, want %d", *d.Spec.Replicas, tt.wantSpec)
			}
			if (d.ResourceVersion == rv) != tt.sameRV {
				t.Errorf("resourceVersion went from %s to %s; want it kept: %v", rv, d.ResourceVersion, tt.sameRV)
			}
		})
	}
}

func TestPatchScaleIsRefused(t *testing.T) {
	cs, err := New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.AppsV1().Deployments("sockshop-production").Patch(context.Background(), "carts",
		types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}, "scale")
	if !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("Patch of scale: err = %v, want MethodNotSupported", err)
	}
}

// TestConcurrentScaling has many clients add one replica each with the
// read-modify-write loop kubectl uses; none of the increments may be lost.
func TestConcurrentScaling(t *testing.T) {
	cs, err := New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deployments := cs.AppsV1().Deployments("sockshop-production")
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			errs <- retry.RetryOnConflict(retry.DefaultBackoff, func() error {
				s, err := deployments.GetScale(ctx, "carts", metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Spec.Replicas++
				_, err = deployments.UpdateScale(ctx, "carts", s, metav1.UpdateOptions{})
				return err
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("scale: %v", err)
		}
	}
	s, err := deployments.GetScale(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec.Replicas != 1+clients {
		t.Errorf("replicas = %d after %d concurrent increments from 1, want %d", s.Spec.Replicas, clients, 1+clients)
	}
}

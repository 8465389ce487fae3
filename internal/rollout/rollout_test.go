package rollout

import (
	"context"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		obj  runtime.Object
		want *int32
		out  Status
	}{
		// Deployment.
		{
			name: "deployment converged",
			obj:  deploy(3),
			out:  Status{Done: true, Message: `deployment "carts" successfully rolled out`, Ready: 3, Desired: 3},
		},
		{
			name: "deployment spec not yet observed",
			obj:  deploy(3, func(d *appsv1.Deployment) { d.Generation = 3 }),
			out:  Status{Message: `waiting for deployment "carts" spec update to be observed`, Ready: 3, Desired: 3},
		},
		{
			name: "deployment progress deadline exceeded",
			obj: deploy(3, deadlineExceeded, func(d *appsv1.Deployment) {
				d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 2, 2
			}),
			out: Status{Failed: true, Message: `progress deadline exceeded: ReplicaSet "carts-7d9f" has timed out progressing`, Ready: 2, Desired: 3},
		},
		{
			name: "deployment progress deadline exceeded without a message",
			obj: deploy(3, deadlineExceeded, func(d *appsv1.Deployment) {
				d.Status.Conditions[0].Message = ""
			}),
			out: Status{Failed: true, Message: `progress deadline exceeded: deployment "carts" exceeded its progress deadline`, Ready: 3, Desired: 3},
		},
		{
			// The old condition belongs to the old generation: the
			// controller resets it once it sees the new spec.
			name: "deployment progress deadline of a generation not yet observed",
			obj:  deploy(3, deadlineExceeded, func(d *appsv1.Deployment) { d.Generation = 3 }),
			out:  Status{Message: `waiting for deployment "carts" spec update to be observed`, Ready: 3, Desired: 3},
		},
		{
			name: "deployment replicas not yet updated",
			obj: deploy(3, func(d *appsv1.Deployment) {
				d.Status.Replicas, d.Status.UpdatedReplicas = 4, 1
			}),
			out: Status{Message: `waiting for deployment "carts" rollout to finish: 1 out of 3 new replicas have been updated`, Ready: 3, Desired: 3},
		},
		{
			name: "deployment old replicas pending termination",
			obj:  deploy(3, func(d *appsv1.Deployment) { d.Status.Replicas, d.Status.ReadyReplicas = 4, 4 }),
			out:  Status{Message: `waiting for deployment "carts" rollout to finish: 1 old replicas are pending termination`, Ready: 4, Desired: 3},
		},
		{
			name: "deployment updated replicas not available",
			obj: deploy(3, func(d *appsv1.Deployment) {
				d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 1
			}),
			out: Status{Message: `waiting for deployment "carts" rollout to finish: 1 of 3 updated replicas are available`, Ready: 2, Desired: 3},
		},
		{
			name: "deployment scaled down, extra replicas still there",
			obj: deploy(3, func(d *appsv1.Deployment) {
				d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 5, 5, 5, 5
			}),
			out: Status{Message: `waiting for deployment "carts" rollout to finish: 2 extra replicas are pending termination`, Ready: 5, Desired: 3},
		},
		{
			name: "deployment available but not all ready",
			obj:  deploy(3, func(d *appsv1.Deployment) { d.Status.ReadyReplicas = 2 }),
			out:  Status{Message: `waiting for deployment "carts" rollout to finish: 2 of 3 replicas are ready`, Ready: 2, Desired: 3},
		},
		{
			name: "deployment without spec.replicas wants 1",
			obj:  deploy(1, func(d *appsv1.Deployment) { d.Spec.Replicas = nil }),
			out:  Status{Done: true, Message: `deployment "carts" successfully rolled out`, Ready: 1, Desired: 1},
		},
		{
			name: "deployment scaled to zero",
			obj:  deploy(0),
			out:  Status{Done: true, Message: `deployment "carts" successfully rolled out`, Ready: 0, Desired: 0},
		},
		{
			name: "deployment waits for the autoscaler",
			obj:  deploy(2),
			want: new(int32(4)),
			out:  Status{Message: "waiting for the autoscaler to set spec.replicas to 4 (now 2)", Ready: 2, Desired: 4},
		},
		{
			name: "deployment the autoscaler has scaled",
			obj:  deploy(4),
			want: new(int32(4)),
			out:  Status{Done: true, Message: `deployment "carts" successfully rolled out`, Ready: 4, Desired: 4},
		},
		{
			name: "deployment the autoscaler has scaled, new pods not ready",
			obj: deploy(4, func(d *appsv1.Deployment) {
				d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2
			}),
			want: new(int32(4)),
			out:  Status{Message: `waiting for deployment "carts" rollout to finish: 2 of 4 updated replicas are available`, Ready: 2, Desired: 4},
		},
		{
			name: "deployment paused",
			obj: deploy(3, func(d *appsv1.Deployment) {
				d.Spec.Paused = true
				d.Status.UpdatedReplicas = 0
			}),
			out: Status{Message: `waiting for deployment "carts" rollout to finish: 0 out of 3 new replicas have been updated (the deployment is paused: nothing rolls out until it is resumed)`, Ready: 3, Desired: 3},
		},
		{
			name: "deployment whose pods cannot be created",
			obj: deploy(3, func(d *appsv1.Deployment) {
				d.Status.UpdatedReplicas = 2
				d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{
					Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate",
					Message: `pods "carts-7d9f-x2k4q" is forbidden: exceeded quota: compute, requested: cpu=500m, used: cpu=1, limited: cpu=1`,
				})
			}),
			out: Status{Message: `waiting for deployment "carts" rollout to finish: 2 out of 3 new replicas have been updated; ReplicaFailure: FailedCreate (pods "carts-7d9f-x2k4q" is forbidden: exceeded quota: compute, requested: cpu=500m, used: cpu=1, limited: cpu=1)`, Ready: 3, Desired: 3},
		},

		// StatefulSet.
		{
			name: "statefulset converged",
			obj:  sts(3),
			out:  Status{Done: true, Message: `statefulset "carts-db" rolling update complete: 3 pods at revision carts-db-2`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset status never observed",
			obj:  sts(3, func(s *appsv1.StatefulSet) { s.Generation, s.Status.ObservedGeneration = 0, 0 }),
			out:  Status{Message: `waiting for statefulset "carts-db" spec update to be observed`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset spec not yet observed",
			obj:  sts(3, func(s *appsv1.StatefulSet) { s.Generation = 3 }),
			out:  Status{Message: `waiting for statefulset "carts-db" spec update to be observed`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset pods not ready",
			obj:  sts(3, func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 1 }),
			out:  Status{Message: `waiting for 2 pods of statefulset "carts-db" to be ready`, Ready: 1, Desired: 3},
		},
		{
			name: "statefulset scaled down, extra pods still there",
			obj:  sts(3, func(s *appsv1.StatefulSet) { s.Status.Replicas, s.Status.ReadyReplicas = 4, 4 }),
			out:  Status{Message: `waiting for statefulset "carts-db" to scale down: 1 extra pods are pending termination`, Ready: 4, Desired: 3},
		},
		{
			name: "statefulset rolling update in progress",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Status.UpdatedReplicas, s.Status.UpdateRevision = 1, "carts-db-3"
			}),
			out: Status{Message: `waiting for statefulset "carts-db" rolling update to complete: 1 out of 3 pods at revision carts-db-3`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset all updated but revision not yet current",
			obj:  sts(3, func(s *appsv1.StatefulSet) { s.Status.UpdateRevision = "carts-db-3" }),
			out:  Status{Message: `waiting for statefulset "carts-db" rolling update to complete: 3 out of 3 pods at revision carts-db-3`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset without a rollingUpdate block",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{}
				s.Status.UpdatedReplicas = 2
			}),
			out: Status{Message: `waiting for statefulset "carts-db" rolling update to complete: 2 out of 3 pods at revision carts-db-2`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset partitioned roll out in progress",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy.RollingUpdate.Partition = new(int32(1))
				s.Status.UpdatedReplicas, s.Status.UpdateRevision = 1, "carts-db-3"
			}),
			out: Status{Message: `waiting for partitioned roll out of statefulset "carts-db" to finish: 1 out of 2 new pods have been updated`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset partitioned roll out complete",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy.RollingUpdate.Partition = new(int32(2))
				s.Status.UpdatedReplicas, s.Status.UpdateRevision = 1, "carts-db-3"
			}),
			out: Status{Done: true, Message: `partitioned roll out of statefulset "carts-db" complete: 1 new pods have been updated`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset OnDelete with its pods ready",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
				s.Status.UpdatedReplicas, s.Status.UpdateRevision = 0, "carts-db-3"
			}),
			out: Status{Done: true, Message: `statefulset "carts-db" has 3 of 3 pods ready (update strategy OnDelete: pods change only when deleted)`, Ready: 3, Desired: 3},
		},
		{
			name: "statefulset OnDelete with a pod not ready",
			obj: sts(3, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
				s.Status.ReadyReplicas = 2
			}),
			out: Status{Message: `waiting for 1 pods of statefulset "carts-db" to be ready`, Ready: 2, Desired: 3},
		},
		{
			name: "statefulset waits for the autoscaler",
			obj:  sts(3),
			want: new(int32(1)),
			out:  Status{Message: "waiting for the autoscaler to set spec.replicas to 1 (now 3)", Ready: 3, Desired: 1},
		},

		// DaemonSet.
		{
			name: "daemonset converged",
			obj:  ds(4),
			out:  Status{Done: true, Message: `daemon set "node-exporter" successfully rolled out`, Ready: 4, Desired: 4},
		},
		{
			name: "daemonset on no node",
			obj:  ds(0),
			out:  Status{Done: true, Message: `daemon set "node-exporter" successfully rolled out`, Ready: 0, Desired: 0},
		},
		{
			name: "daemonset spec not yet observed",
			obj:  ds(4, func(d *appsv1.DaemonSet) { d.Generation = 3 }),
			out:  Status{Message: `waiting for daemon set "node-exporter" spec update to be observed`, Ready: 4, Desired: 4},
		},
		{
			name: "daemonset pods not yet updated",
			obj:  ds(4, func(d *appsv1.DaemonSet) { d.Status.UpdatedNumberScheduled = 1 }),
			out:  Status{Message: `waiting for daemon set "node-exporter" rollout to finish: 1 out of 4 new pods have been updated`, Ready: 4, Desired: 4},
		},
		{
			name: "daemonset updated pods not available",
			obj: ds(4, func(d *appsv1.DaemonSet) {
				d.Status.NumberReady, d.Status.NumberAvailable = 3, 2
			}),
			out: Status{Message: `waiting for daemon set "node-exporter" rollout to finish: 2 of 4 updated pods are available`, Ready: 3, Desired: 4},
		},
		{
			name: "daemonset OnDelete with its pods available",
			obj: ds(4, func(d *appsv1.DaemonSet) {
				d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
				d.Status.UpdatedNumberScheduled = 0
			}),
			out: Status{Done: true, Message: `daemon set "node-exporter" has 4 of 4 pods available (update strategy OnDelete: pods change only when deleted)`, Ready: 4, Desired: 4},
		},
		{
			name: "daemonset OnDelete with a pod not available",
			obj: ds(4, func(d *appsv1.DaemonSet) {
				d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
				d.Status.UpdatedNumberScheduled, d.Status.NumberReady, d.Status.NumberAvailable = 0, 3, 3
			}),
			out: Status{Message: `waiting for daemon set "node-exporter": 3 of 4 pods are available (update strategy OnDelete: pods change only when deleted)`, Ready: 3, Desired: 4},
		},
		{
			name: "daemonset ignores a replica count",
			obj:  ds(4),
			want: new(int32(2)),
			out:  Status{Done: true, Message: `daemon set "node-exporter" successfully rolled out`, Ready: 4, Desired: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset(tt.obj)
			got, err := Check(context.Background(), adapt.Clientset(c), refOf(t, tt.obj), tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got != tt.out {
				t.Errorf("Check =\n  %+v\nwant\n  %+v", got, tt.out)
			}
		})
	}
}

func TestCheckErrors(t *testing.T) {
	c := fake.NewClientset(deploy(3))
	tests := []struct {
		name  string
		ref   workload.Ref
		want  string
		check func(error) bool
	}{
		{
			name:  "missing deployment",
			ref:   workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "orders"},
			want:  `get deployment sockshop-production/orders: deployments.apps "orders" not found`,
			check: apierrors.IsNotFound,
		},
		{
			name:  "missing statefulset",
			ref:   workload.Ref{Kind: workload.StatefulSet, Namespace: ns, Name: "carts"},
			want:  `get statefulset sockshop-production/carts: statefulsets.apps "carts" not found`,
			check: apierrors.IsNotFound,
		},
		{
			name:  "missing daemonset",
			ref:   workload.Ref{Kind: workload.DaemonSet, Namespace: ns, Name: "carts"},
			want:  `get daemonset sockshop-production/carts: daemonsets.apps "carts" not found`,
			check: apierrors.IsNotFound,
		},
		{
			name:  "kind without a rollout",
			ref:   workload.Ref{Kind: "CronJob", Namespace: ns, Name: "carts"},
			want:  `no rollout status for this kind: "CronJob"`,
			check: func(err error) bool { return errors.Is(err, errUnsupportedKind) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(context.Background(), adapt.Clientset(c), tt.ref, nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Check error = %v, want %q", err, tt.want)
			}
			if !tt.check(err) {
				t.Errorf("Check error %v does not wrap the cause", err)
			}
		})
	}
}

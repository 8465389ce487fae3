package deletepods_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/deletepods"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const carts = "deployment sockshop-production/carts"

// evicted is the Change of a clean eviction of n pods.
func evicted(n int, message, before string) pipeline.Change {
	after := fmt.Sprintf("%d pods evicted", n)
	if n == 1 {
		after = "1 pod evicted"
	}
	return pipeline.Change{
		Message: message, Reason: "PodsEvicted", Before: before, After: after,
		Changed: true, Rollout: true, Pods: true,
	}
}

func TestMutate(t *testing.T) {
	twelve := unhealthyPods(12)
	var firstTen []string
	for _, p := range twelve[:10] {
		firstTen = append(firstTen, p.Name+" (not ready)")
	}

	tests := []struct {
		name   string
		fx     fixture
		value  deletepods.Value
		opts   deletepods.Options
		dryRun bool
		want   pipeline.Change
		evicts []string
	}{
		{
			name: "evicts only the unhealthy pods, the worst first",
			fx: fixture{replicas: 6, pods: []*corev1.Pod{
				newPod("carts-a"),
				newPod("carts-b", waiting("CrashLoopBackOff", 5)),
				newPod("carts-c", notReady, restarts(9)),
				newPod("carts-d", waiting("ImagePullBackOff", 0)),
				newPod("carts-e"),
				newPod("carts-f"),
			}},
			want: evicted(3, "evicted 3 pods of "+carts+": carts-b (CrashLoopBackOff), carts-d (ImagePullBackOff), carts-c (not ready)",
				"3/6 pods ready"),
			evicts: []string{"carts-b", "carts-d", "carts-c"},
		},
		{
			name: "every stuck reason and bad phase",
			fx: fixture{replicas: 10, pods: []*corev1.Pod{
				newPod("carts-a", phase(corev1.PodFailed, "Evicted")),
				newPod("carts-b", phase(corev1.PodUnknown, "")),
				newPod("carts-c", waiting("ErrImagePull", 0)),
				newPod("carts-d", waiting("CreateContainerError", 0)),
				newPod("carts-e", waiting("CreateContainerConfigError", 0), readyAnyway),
				newPod("carts-f"),
				newPod("carts-g", phase(corev1.PodFailed, "")),
			}},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 6}},
			want: evicted(6, "evicted 6 pods of "+carts+": carts-c (ErrImagePull), carts-d (CreateContainerError), "+
				"carts-e (CreateContainerConfigError), carts-a (failed: Evicted), carts-b (phase Unknown), carts-g (failed)",
				"2/7 pods ready"),
			evicts: []string{"carts-c", "carts-d", "carts-e", "carts-a", "carts-b", "carts-g"},
		},
		{
			name: "all evicts the healthy pods too",
			fx: fixture{replicas: 4, pods: []*corev1.Pod{
				newPod("carts-a"), newPod("carts-b", notReady), newPod("carts-c"), newPod("carts-d"),
			}},
			value: deletepods.Value{All: true, MaxPods: deletepods.Bound{N: 4}},
			want: evicted(4, "evicted 4 pods of "+carts+": carts-b (not ready), carts-a (ready), carts-c (ready), carts-d (ready)",
				"3/4 pods ready"),
			evicts: []string{"carts-b", "carts-a", "carts-c", "carts-d"},
		},
		{
			name: "all with the default bound",
			fx: fixture{replicas: 3, pods: []*corev1.Pod{
				newPod("carts-a"), newPod("carts-b"), newPod("carts-c"),
			}},
			value: deletepods.Value{All: true},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-a (ready); "+
				"left alone (bound: 50% of 3 replicas = 1): carts-b (ready), carts-c (ready)", "3/3 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name: "default bound is half the replicas, most restarts first",
			fx: fixture{replicas: 4, pods: []*corev1.Pod{
				newPod("carts-a", notReady, restarts(1)),
				newPod("carts-b", notReady, restarts(3)),
				newPod("carts-c", notReady),
				newPod("carts-d", notReady, restarts(2)),
			}},
			want: evicted(2, "evicted 2 pods of "+carts+": carts-b (not ready), carts-d (not ready); "+
				"left alone (bound: 50% of 4 replicas = 2): carts-a (not ready), carts-c (not ready)", "0/4 pods ready"),
			evicts: []string{"carts-b", "carts-d"},
		},
		{
			name: "default bound is at least one pod",
			fx:   fixture{replicas: 1, pods: unhealthyPods(2)},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-a (not ready); "+
				"left alone (bound: 50% of 1 replica = 1): carts-b (not ready)", "0/2 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name: "maxPods count",
			fx: fixture{replicas: 4, pods: []*corev1.Pod{
				newPod("carts-a", waiting("CrashLoopBackOff", 2)),
				newPod("carts-b", waiting("CrashLoopBackOff", 9)),
				newPod("carts-c", notReady, restarts(20)),
			}},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 1}},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-b (CrashLoopBackOff); "+
				"left alone (bound: maxPods 1): carts-a (CrashLoopBackOff), carts-c (not ready)", "0/3 pods ready"),
			evicts: []string{"carts-b"},
		},
		{
			name:  "maxPods percentage of the replicas",
			fx:    fixture{replicas: 8, pods: unhealthyPods(4)},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 25, Percent: true}},
			want: evicted(2, "evicted 2 pods of "+carts+": carts-a (not ready), carts-b (not ready); "+
				"left alone (bound: maxPods 25% of 8 replicas = 2): carts-c (not ready), carts-d (not ready)", "0/4 pods ready"),
			evicts: []string{"carts-a", "carts-b"},
		},
		{
			name:  "maxPods percentage is at least one pod",
			fx:    fixture{replicas: 3, pods: unhealthyPods(2)},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 10, Percent: true}},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-a (not ready); "+
				"left alone (bound: maxPods 10% of 3 replicas = 1): carts-b (not ready)", "0/2 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name:  "maxPods above DELETE_PODS_MAX is capped",
			fx:    fixture{replicas: 6, pods: unhealthyPods(3)},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 5}},
			opts:  deletepods.Options{MaxPods: 2},
			want: evicted(2, "evicted 2 pods of "+carts+": carts-a (not ready), carts-b (not ready); "+
				"left alone (bound: maxPods 5, capped by DELETE_PODS_MAX=2): carts-c (not ready)", "0/3 pods ready"),
			evicts: []string{"carts-a", "carts-b"},
		},
		{
			name:  "DELETE_PODS_MAX defaults to 10",
			fx:    fixture{replicas: 12, pods: twelve},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 20}},
			want: evicted(10, "evicted 10 pods of "+carts+": "+strings.Join(firstTen, ", ")+"; "+
				"left alone (bound: maxPods 20, capped by DELETE_PODS_MAX=10): carts-k (not ready), carts-l (not ready)",
				"0/12 pods ready"),
			evicts: []string{"carts-a", "carts-b", "carts-c", "carts-d", "carts-e", "carts-f", "carts-g", "carts-h", "carts-i", "carts-j"},
		},
		{
			name:  "the cap is reported even when it did not matter",
			fx:    fixture{replicas: 4, pods: unhealthyPods(1)},
			value: deletepods.Value{MaxPods: deletepods.Bound{N: 20}},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-a (not ready); bound: maxPods 20, capped by DELETE_PODS_MAX=10",
				"0/1 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name: "the cap applies to the default bound",
			fx:   fixture{replicas: 4, pods: unhealthyPods(2)},
			opts: deletepods.Options{MaxPods: 1},
			want: evicted(1, "evicted 1 pod of "+carts+": carts-a (not ready); "+
				"left alone (bound: 50% of 4 replicas = 2, capped by DELETE_PODS_MAX=1): carts-b (not ready)", "0/2 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name: "terminating pods are left to terminate",
			fx: fixture{replicas: 2, pods: []*corev1.Pod{
				newPod("carts-a", waiting("CrashLoopBackOff", 50), terminating),
				newPod("carts-b", notReady),
			}},
			want:   evicted(1, "evicted 1 pod of "+carts+": carts-b (not ready)", "0/1 pods ready"),
			evicts: []string{"carts-b"},
		},
		{
			name: "an unschedulable pending pod is not evicted",
			fx: fixture{replicas: 4, pods: []*corev1.Pod{
				newPod("carts-a", unscheduled),
				newPod("carts-b", notReady),
				newPod("carts-c"),
			}},
			want:   evicted(1, "evicted 1 pod of "+carts+": carts-b (not ready)", "1/3 pods ready"),
			evicts: []string{"carts-b"},
		},
		{
			name: "a stray pod with the same labels is not the workload's",
			fx: fixture{replicas: 2, pods: unhealthyPods(1), extra: []runtime.Object{
				&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "carts-debug", Namespace: ns, Labels: map[string]string{"app": "carts"}}},
			}},
			want:   evicted(1, "evicted 1 pod of "+carts+": carts-a (not ready)", "0/1 pods ready"),
			evicts: []string{"carts-a"},
		},
		{
			name: "statefulset",
			fx: fixture{kind: workload.StatefulSet, name: "carts-db", replicas: 3, pods: []*corev1.Pod{
				newPod("carts-db-0"), newPod("carts-db-1", waiting("CrashLoopBackOff", 3)), newPod("carts-db-2"),
			}},
			want: evicted(1, "evicted 1 pod of statefulset sockshop-production/carts-db: carts-db-1 (CrashLoopBackOff)",
				"2/3 pods ready"),
			evicts: []string{"carts-db-1"},
		},
		{
			name: "daemonset bound is of its pods",
			fx:   fixture{kind: workload.DaemonSet, name: "carts", pods: unhealthyPods(4)},
			want: evicted(2, "evicted 2 pods of daemonset sockshop-production/carts: carts-a (not ready), carts-b (not ready); "+
				"left alone (bound: 50% of 4 pods = 2): carts-c (not ready), carts-d (not ready)", "0/4 pods ready"),
			evicts: []string{"carts-a", "carts-b"},
		},
		{
			name: "dry run",
			fx: fixture{replicas: 4, pods: []*corev1.Pod{
				newPod("carts-a", waiting("CrashLoopBackOff", 1)), newPod("carts-b", notReady), newPod("carts-c"),
			}},
			dryRun: true,
			want: pipeline.Change{
				Message: "would evict 2 pods of " + carts + ": carts-a (CrashLoopBackOff), carts-b (not ready)",
				Before:  "1/3 pods ready",
			},
		},
		{
			name:   "dry run within the bound",
			fx:     fixture{replicas: 2, pods: unhealthyPods(2)},
			value:  deletepods.Value{All: true},
			dryRun: true,
			want: pipeline.Change{
				Message: "would evict 1 pod of " + carts + ": carts-a (not ready); " +
					"left alone (bound: 50% of 2 replicas = 1): carts-b (not ready)",
				Before: "0/2 pods ready",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.fx.client()
			m := deletepods.NewMutator(adapt.Clientset(c), tt.opts, tt.value)
			got, err := m.Mutate(context.Background(), tt.fx.ref(), tt.dryRun)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if got != tt.want {
				t.Errorf("Mutate =\n%+v\nwant\n%+v", got, tt.want)
			}
			if ev := evictions(c); !slices.Equal(ev, tt.evicts) {
				t.Errorf("evicted %q, want %q", ev, tt.evicts)
			}
			if tt.dryRun {
				if w := writes(c); len(w) > 0 {
					t.Errorf("a dry run wrote: %v", w)
				}
			}
		})
	}
}

func TestMutateNothingToDo(t *testing.T) {
	tests := []struct {
		name  string
		fx    fixture
		value deletepods.Value
		want  string
	}{
		{
			name: "all ready",
			fx:   fixture{replicas: 3, pods: []*corev1.Pod{newPod("carts-a"), newPod("carts-b"), newPod("carts-c")}},
			want: carts + " has no unhealthy pods (3 pods, all ready); nothing to do",
		},
		{
			name: "only unschedulable",
			fx: fixture{replicas: 3, pods: []*corev1.Pod{
				newPod("carts-a"), newPod("carts-b"), newPod("carts-c", unscheduled),
			}},
			want: carts + " has no unhealthy pods worth evicting: 1 pod cannot be scheduled, " +
				"and a replacement could not be either (3 pods, 2 ready); nothing to do",
		},
		{
			name: "no pods",
			fx:   fixture{replicas: 0},
			want: carts + " has no pods; nothing to do",
		},
		{
			name:  "only terminating pods, even with all",
			fx:    fixture{replicas: 2, pods: []*corev1.Pod{newPod("carts-a", terminating), newPod("carts-b", notReady, terminating)}},
			value: deletepods.Value{All: true},
			want:  carts + " has no pods that are not already terminating (0 pods, 2 terminating); nothing to do",
		},
		{
			name: "ready pods beside terminating ones",
			fx:   fixture{replicas: 2, pods: []*corev1.Pod{newPod("carts-a"), newPod("carts-b", notReady, terminating)}},
			want: carts + " has no unhealthy pods (1 pod, all ready, 1 terminating); nothing to do",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.fx.client()
			got, err := deletepods.NewMutator(adapt.Clientset(c), deletepods.Options{}, tt.value).Mutate(context.Background(), tt.fx.ref(), false)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if want := (pipeline.Change{Message: tt.want}); got != want {
				t.Errorf("Mutate =\n%+v\nwant\n%+v", got, want)
			}
			if w := writes(c); len(w) > 0 {
				t.Errorf("wrote with nothing to do: %v", w)
			}
		})
	}
}

// TestMutateEvictionRequest checks that the eviction names the pod and
// pins its UID, so that a new pod of the same name is never evicted.
func TestMutateEvictionRequest(t *testing.T) {
	fx := fixture{kind: workload.StatefulSet, name: "carts-db", replicas: 2, pods: []*corev1.Pod{newPod("carts-db-1", notReady)}}
	c := fx.client()
	if _, err := deletepods.NewMutator(adapt.Clientset(c), deletepods.Options{}, deletepods.Value{}).Mutate(context.Background(), fx.ref(), false); err != nil {
		t.Fatal(err)
	}
	var got []*policyv1.Eviction
	for _, a := range c.Actions() {
		if a.GetSubresource() == "eviction" {
			if a.GetNamespace() != ns {
				t.Errorf("eviction in namespace %q, want %q", a.GetNamespace(), ns)
			}
			got = append(got, a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction))
		}
	}
	if len(got) != 1 {
		t.Fatalf("got %d evictions, want 1", len(got))
	}
	e := got[0]
	if e.Name != "carts-db-1" || e.Namespace != ns {
		t.Errorf("evicted %s/%s, want %s/carts-db-1", e.Namespace, e.Name, ns)
	}
	if e.DeleteOptions == nil || e.DeleteOptions.Preconditions == nil || e.DeleteOptions.Preconditions.UID == nil ||
		*e.DeleteOptions.Preconditions.UID != "uid-carts-db-1" {
		t.Errorf("eviction delete options = %+v, want a UID precondition uid-carts-db-1", e.DeleteOptions)
	}
	if e.DeleteOptions != nil && len(e.DeleteOptions.DryRun) > 0 {
		t.Errorf("eviction is a dry run: %v", e.DeleteOptions.DryRun)
	}
}

// pdbRefusal is the API server's answer when a budget forbids an eviction.
func pdbRefusal() error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type:    policyv1.DisruptionBudgetCause,
		Message: "The disruption budget carts-pdb needs 2 healthy pods and has 2 currently",
	})
	return err
}

func TestMutateEvictionAnswers(t *testing.T) {
	var (
		etcdDown  = apierrors.NewInternalError(errors.New("etcd down"))
		notFound  = apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "carts-a")
		conflict  = apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "carts-a", errors.New("UID in precondition does not match"))
		throttled = apierrors.NewTooManyRequests("Too many requests, please try again later.", 1)
		budgets   = []runtime.Object{pdb("carts-pdb", "carts"), pdb("orders-pdb", "orders")}
		pdbText   = "PodDisruptionBudget carts-pdb (minAvailable 2: 2 pods healthy, 2 needed, 0 disruptions allowed)"
	)
	tests := []struct {
		name    string
		pods    int
		extra   []runtime.Object
		answers map[string]error // by pod name; nil evicts
		// listPDBs, when set, is the answer to listing the budgets.
		listPDBs error
		// newUID, when set, is the UID the pod has when read after a
		// conflict: it was replaced.
		newUID string

		want        pipeline.Change
		wantErr     string // the whole error text
		wantRefusal bool
		wantIs      func(error) bool
	}{
		{
			name:        "a budget forbids every eviction",
			pods:        2,
			extra:       budgets,
			answers:     map[string]error{"carts-a": pdbRefusal(), "carts-b": pdbRefusal()},
			wantRefusal: true,
			wantErr:     "refused (PodDisruptionBudget): evicting pods carts-a, carts-b of " + carts + " would violate " + pdbText,
		},
		{
			name: "a budget matching by an expression",
			pods: 1,
			extra: []runtime.Object{&policyv1.PodDisruptionBudget{
				ObjectMeta: metav1.ObjectMeta{Name: "shop-pdb", Namespace: ns},
				Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"carts", "orders"}},
				}}},
			}},
			answers:     map[string]error{"carts-a": apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)},
			wantRefusal: true,
			wantErr: "refused (PodDisruptionBudget): evicting pod carts-a of " + carts +
				" would violate PodDisruptionBudget shop-pdb (0 pods healthy, 0 needed, 0 disruptions allowed)",
		},
		{
			name:        "the budget is named by the API's cause when budgets cannot be listed",
			pods:        1,
			answers:     map[string]error{"carts-a": pdbRefusal()},
			listPDBs:    apierrors.NewForbidden(schema.GroupResource{Group: "policy", Resource: "poddisruptionbudgets"}, "", errors.New("RBAC")),
			wantRefusal: true,
			wantErr: "refused (PodDisruptionBudget): evicting pod carts-a of " + carts +
				" would violate a PodDisruptionBudget (The disruption budget carts-pdb needs 2 healthy pods and has 2 currently)",
		},
		{
			name:        "a budget refuses one pod, another is already gone",
			pods:        2,
			extra:       budgets,
			answers:     map[string]error{"carts-a": notFound, "carts-b": pdbRefusal()},
			wantRefusal: true,
			wantErr: "refused (PodDisruptionBudget): evicting pod carts-b of " + carts + " would violate " + pdbText +
				"; already gone: carts-a (not ready)",
		},
		{
			name:    "throttling is not a budget",
			pods:    1,
			answers: map[string]error{"carts-a": throttled},
			wantErr: "evict pod carts-a (not ready) of " + carts + ": Too many requests, please try again later.",
			wantIs:  apierrors.IsTooManyRequests,
		},
		{
			name:    "a budget refuses one pod of two",
			pods:    2,
			extra:   budgets,
			answers: map[string]error{"carts-b": pdbRefusal()},
			want: pipeline.Change{
				Message: "evicted 1 of 2 chosen pods of " + carts + ": carts-a (not ready) evicted, carts-b (not ready) refused by " + pdbText,
				Reason:  "PodsEvicted", Before: "0/2 pods ready", After: "1 pod evicted, 1 refused by a PodDisruptionBudget",
				Changed: true, Rollout: true, Pods: true, Result: keptnv2.ResultWarning,
			},
		},
		{
			name:    "one eviction of three fails",
			pods:    3,
			answers: map[string]error{"carts-a": etcdDown},
			want: pipeline.Change{
				Message: "evicted 2 of 3 chosen pods of " + carts + ": carts-a (not ready) failed: Internal error occurred: etcd down, " +
					"carts-b (not ready) evicted, carts-c (not ready) evicted",
				Reason: "PodsEvicted", Before: "0/3 pods ready", After: "2 pods evicted, 1 failed",
				Changed: true, Rollout: true, Pods: true, Result: keptnv2.ResultWarning,
			},
		},
		{
			name:    "a pod already gone counts as done",
			pods:    2,
			answers: map[string]error{"carts-a": notFound},
			want:    evicted(1, "evicted 1 pod of "+carts+": carts-b (not ready); already gone: carts-a (not ready)", "0/2 pods ready"),
		},
		{
			name:    "every pod already gone",
			pods:    2,
			answers: map[string]error{"carts-a": notFound, "carts-b": notFound},
			want: pipeline.Change{
				Message: "the 2 pods of " + carts + " chosen for eviction were already gone: carts-a (not ready), carts-b (not ready); nothing to do",
				Before:  "0/2 pods ready",
			},
		},
		{
			name:    "a pod replaced under the same name is gone",
			pods:    2,
			answers: map[string]error{"carts-a": conflict},
			newUID:  "uid-new",
			want:    evicted(1, "evicted 1 pod of "+carts+": carts-b (not ready); already gone: carts-a (not ready)", "0/2 pods ready"),
		},
		{
			name:    "a conflict on the same pod is a failure",
			pods:    1,
			answers: map[string]error{"carts-a": conflict},
			wantErr: "evict pod carts-a (not ready) of " + carts + `: Operation cannot be fulfilled on pods "carts-a": UID in precondition does not match`,
			wantIs:  apierrors.IsConflict,
		},
		{
			name:    "every eviction fails",
			pods:    2,
			answers: map[string]error{"carts-a": etcdDown, "carts-b": etcdDown},
			wantErr: "evict pod carts-a (not ready) of " + carts + ": Internal error occurred: etcd down; " +
				"none of the 2 chosen pods was evicted: carts-b (not ready) failed: Internal error occurred: etcd down",
			wantIs: apierrors.IsInternalError,
		},
		{
			name:    "a failure beside a budget's refusal is an error",
			pods:    2,
			extra:   budgets,
			answers: map[string]error{"carts-a": pdbRefusal(), "carts-b": etcdDown},
			wantErr: "evict pod carts-b (not ready) of " + carts + ": Internal error occurred: etcd down; " +
				"none of the 2 chosen pods was evicted: carts-a (not ready) refused by " + pdbText,
			wantIs: apierrors.IsInternalError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := fixture{replicas: int32(2 * tt.pods), pods: unhealthyPods(tt.pods), extra: tt.extra}
			c := fx.client()
			c.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() != "eviction" {
					return false, nil, nil
				}
				name := a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction).Name
				return true, nil, tt.answers[name]
			})
			if tt.listPDBs != nil {
				c.PrependReactor("list", "poddisruptionbudgets", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, tt.listPDBs
				})
			}
			if tt.newUID != "" {
				c.PrependReactor("get", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
					p := newPod(a.(clienttesting.GetAction).GetName())
					p.Namespace, p.UID = ns, types.UID(tt.newUID)
					return true, p, nil
				})
			}

			got, err := deletepods.NewMutator(adapt.Clientset(c), deletepods.Options{}, deletepods.Value{}).Mutate(context.Background(), fx.ref(), false)

			if want := unhealthyNames(tt.pods); !slices.Equal(evictions(c), want) {
				t.Errorf("evictions asked for %q, want one each for %q", evictions(c), want)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Mutate: %v", err)
				}
				if got != tt.want {
					t.Errorf("Mutate =\n%+v\nwant\n%+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Mutate = %+v, want an error", got)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.wantErr)
			}
			var refusal *action.Refusal
			if errors.As(err, &refusal) != tt.wantRefusal {
				t.Errorf("error is a refusal: %v, want %v", !tt.wantRefusal, tt.wantRefusal)
			}
			if tt.wantRefusal && refusal.Rule != "PodDisruptionBudget" {
				t.Errorf("refused by rule %q, want PodDisruptionBudget", refusal.Rule)
			}
			if tt.wantIs != nil && !tt.wantIs(err) {
				t.Errorf("error %v does not wrap the API's", err)
			}
		})
	}
}

// unhealthyNames are the names of unhealthyPods(n).
func unhealthyNames(n int) []string {
	var names []string
	for _, p := range unhealthyPods(n) {
		names = append(names, p.Name)
	}
	return names
}

// TestMutateStopsWhenCancelled checks that a cancelled context stops the
// evictions still to come, and that the ones made are still reported.
func TestMutateStopsWhenCancelled(t *testing.T) {
	fx := fixture{replicas: 4, pods: unhealthyPods(2)}
	c := fx.client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		cancel() // the shutdown arrives during the first eviction
		return false, nil, nil
	})
	got, err := deletepods.NewMutator(adapt.Clientset(c), deletepods.Options{}, deletepods.Value{}).Mutate(ctx, fx.ref(), false)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	want := pipeline.Change{
		Message: "evicted 1 of 2 chosen pods of " + carts + ": carts-a (not ready) evicted, " +
			"carts-b (not ready) failed: not attempted: context canceled",
		Reason: "PodsEvicted", Before: "0/2 pods ready", After: "1 pod evicted, 1 failed",
		Changed: true, Rollout: true, Pods: true, Result: keptnv2.ResultWarning,
	}
	if got != want {
		t.Errorf("Mutate =\n%+v\nwant\n%+v", got, want)
	}
	if ev := evictions(c); !slices.Equal(ev, []string{"carts-a"}) {
		t.Errorf("evicted %q, want only carts-a", ev)
	}
}

func TestMutateErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	fx := fixture{replicas: 2, pods: unhealthyPods(1)}
	tests := []struct {
		name    string
		ctx     context.Context
		ref     workload.Ref
		opts    deletepods.Options
		wantErr string
		wantIs  func(error) bool
	}{
		{
			name:    "negative DELETE_PODS_MAX",
			ctx:     context.Background(),
			ref:     fx.ref(),
			opts:    deletepods.Options{MaxPods: -1},
			wantErr: "delete-pods: DELETE_PODS_MAX is -1; it must be positive",
		},
		{
			name:    "no such workload",
			ctx:     context.Background(),
			ref:     workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "orders"},
			wantErr: "find the pods to evict: get deployment sockshop-production/orders: ",
			wantIs:  apierrors.IsNotFound,
		},
		{
			name:    "cancelled",
			ctx:     cancelled,
			ref:     fx.ref(),
			wantErr: "evict the pods of " + carts + ": context canceled",
			wantIs:  func(err error) bool { return errors.Is(err, context.Canceled) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fx.client()
			got, err := deletepods.NewMutator(adapt.Clientset(c), tt.opts, deletepods.Value{}).Mutate(tt.ctx, tt.ref, false)
			if err == nil {
				t.Fatalf("Mutate = %+v, want an error", got)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to start with %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !tt.wantIs(err) {
				t.Errorf("error %v does not wrap the cause", err)
			}
			if w := writes(c); len(w) > 0 {
				t.Errorf("wrote despite the error: %v", w)
			}
		})
	}
}

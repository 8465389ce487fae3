package rollout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// whenWatched runs change in a goroutine once the first watch of resource
// starts; the returned func waits for it. The fake delivers to that watch
// every change after the list it resumes from, so none is lost.
func whenWatched(t *testing.T, c interface {
	PrependWatchReactor(string, clienttesting.WatchReactionFunc)
}, resource string, change func() error) (done func()) {
	t.Helper()
	var once sync.Once
	errc := make(chan error, 1)
	c.PrependWatchReactor(resource, func(clienttesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { go func() { errc <- change() }() })
		return false, nil, nil
	})
	return func() {
		t.Helper()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("change: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the change did not run: was %s never watched?", resource)
		}
	}
}

// reads counts the lists and watches of each resource.
type reads struct {
	mu      sync.Mutex
	lists   map[string]int
	watches map[string]int
	rvs     []string // of the watches, in order
}

func countAll(c interface {
	PrependReactor(string, string, clienttesting.ReactionFunc)
	PrependWatchReactor(string, clienttesting.WatchReactionFunc)
}) *reads {
	r := &reads{lists: map[string]int{}, watches: map[string]int{}}
	c.PrependReactor("list", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lists[a.GetResource().Resource]++
		return false, nil, nil
	})
	c.PrependWatchReactor("*", func(a clienttesting.Action) (bool, watch.Interface, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.watches[a.GetResource().Resource]++
		if w, ok := a.(clienttesting.WatchActionImpl); ok {
			r.rvs = append(r.rvs, w.ListOptions.ResourceVersion)
		}
		return false, nil, nil
	})
	return r
}

func (r *reads) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("lists %v, watches %v", r.lists, r.watches)
}

func (r *reads) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.lists {
		n += v
	}
	for _, v := range r.watches {
		n += v
	}
	return n
}

func (r *reads) list(resource string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lists[resource]
}

// observed is what the deployment controller writes once it has seen the
// restart of a deployment of generation 3.
func observed(d *appsv1.Deployment) { d.Generation, d.Status.ObservedGeneration = 3, 3 }

func restarting(d *appsv1.Deployment) { d.Generation = 3 }

func updateStatus(c *fake.Clientset, d *appsv1.Deployment) func() error {
	return func() error {
		_, err := c.AppsV1().Deployments(ns).UpdateStatus(context.Background(), d, metav1.UpdateOptions{})
		return err
	}
}

// firstWatch makes the first watch of deployments w, the rest the fake's.
func firstWatch(c *fake.Clientset, w watch.Interface) {
	var once sync.Once
	c.PrependWatchReactor("deployments", func(clienttesting.Action) (handled bool, ret watch.Interface, err error) {
		once.Do(func() { handled, ret = true, w })
		return handled, ret, nil
	})
}

func TestWaitRelistsAnExpiredWatch(t *testing.T) {
	c := cluster(t, deploy(3, restarting))
	fw := watch.NewFake()
	firstWatch(c, fw)
	r := countAll(c)
	done := whenWatched(t, c, "deployments", func() error {
		// A change the expired watch never delivers; the new list has it.
		if err := updateStatus(c, deploy(3, observed))(); err != nil {
			return err
		}
		fw.Error(&apierrors.NewResourceExpired("too old resource version: 1 (5)").ErrStatus)
		return nil
	})
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 5 * time.Second, Interval: time.Hour})
	done()
	if err != nil || !rep.Converged {
		t.Fatalf("Wait = %+v, %v; want converged", rep, err)
	}
	// Relisted at once, not after Interval.
	if r.list("deployments") != 2 || rep.Elapsed > time.Second {
		t.Errorf("%s, converged after %s; want a second list at once", r, rep.Elapsed)
	}
}

func TestWaitResumesAClosedWatch(t *testing.T) {
	c := cluster(t, deploy(3, restarting))
	fw := watch.NewFake()
	firstWatch(c, fw)
	r := countAll(c)
	done := whenWatched(t, c, "deployments", func() error {
		if err := updateStatus(c, deploy(3, observed))(); err != nil {
			return err
		}
		fw.Stop() // as the server ends a watch after its timeout
		return nil
	})
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 5 * time.Second, Interval: 5 * time.Millisecond})
	done()
	if err != nil || !rep.Converged {
		t.Fatalf("Wait = %+v, %v; want converged", rep, err)
	}
	// Resumed from where the first watch began, without a list.
	if r.list("deployments") != 1 || len(r.rvs) != 2 || r.rvs[0] == "" || r.rvs[1] != r.rvs[0] {
		t.Errorf("%s, resource versions %q; want one list, and the second watch from the first's version", r, r.rvs)
	}
}

func TestWaitRelistsWhenAWatchFailsToStart(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"expired", apierrors.NewResourceExpired("too old resource version")},
		{"unavailable", apierrors.NewServiceUnavailable("try again")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, deploy(3))
			var once sync.Once
			c.PrependWatchReactor("deployments", func(clienttesting.Action) (handled bool, _ watch.Interface, err error) {
				once.Do(func() { handled, err = true, tt.err })
				return handled, nil, err
			})
			// Not converged at the first list; the second watch sees it.
			calls := 0
			c.PrependReactor("list", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
				if calls++; calls == 1 {
					return true, &appsv1.DeploymentList{Items: []appsv1.Deployment{*deploy(3, restarting)}}, nil
				}
				return false, nil, nil
			})
			rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 5 * time.Second, Interval: 5 * time.Millisecond})
			if err != nil || !rep.Converged {
				t.Fatalf("Wait = %+v, %v; want converged", rep, err)
			}
		})
	}
}

// A watch that broke without closing delivers nothing; Wait lists again
// when it has been quiet for a quarter of the timeout.
func TestWaitRelistsAQuietWatch(t *testing.T) {
	c := cluster(t, deploy(3, restarting))
	var (
		mu    sync.Mutex
		stuck []*watch.FakeWatcher
	)
	c.PrependWatchReactor("deployments", func(clienttesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		w := watch.NewFake()
		stuck = append(stuck, w)
		return true, w, nil
	})
	r := countAll(c)
	done := whenWatched(t, c, "deployments", updateStatus(c, deploy(3, observed)))
	timeout := 2 * time.Second
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: timeout, Interval: 5 * time.Millisecond})
	done()
	if err != nil || !rep.Converged {
		t.Fatalf("Wait = %+v, %v; want converged", rep, err)
	}
	if r.list("deployments") != 2 || rep.Elapsed < timeout/resyncParts || rep.Elapsed >= timeout {
		t.Errorf("%s, converged after %s; want a second list after %s", r, rep.Elapsed, timeout/resyncParts)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, w := range stuck {
		if !w.IsStopped() {
			t.Errorf("watch %d not stopped", i)
		}
	}
}

func TestWaitWorkloadDeletedWhileWatching(t *testing.T) {
	c := cluster(t, deploy(3, restarting))
	done := whenWatched(t, c, "deployments", func() error {
		return c.AppsV1().Deployments(ns).Delete(context.Background(), "carts", metav1.DeleteOptions{})
	})
	_, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 5 * time.Second})
	done()
	if !apierrors.IsNotFound(err) {
		t.Errorf("Wait error = %v, want NotFound", err)
	}
}

// The fakes ignore field selectors, and so may a proxy: the status of
// another deployment in the namespace must not count.
func TestWaitJudgesOnlyItsWorkload(t *testing.T) {
	c := cluster(t, deploy(3, restarting))
	other := deploy(1)
	other.Name, other.UID = "orders", "uid-orders"
	if err := c.Tracker().Add(other); err != nil {
		t.Fatal(err)
	}
	done := whenWatched(t, c, "deployments", func() error {
		other := other.DeepCopy()
		other.Status.ObservedGeneration = 5
		_, err := c.AppsV1().Deployments(ns).UpdateStatus(context.Background(), other, metav1.UpdateOptions{})
		return err
	})
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 100 * time.Millisecond, Interval: 5 * time.Millisecond})
	done()
	if err != nil || rep.Converged || !strings.Contains(rep.Summary, `deployment "carts" spec update to be observed`) {
		t.Errorf("Wait = %+v, %v; want carts not converged", rep, err)
	}
}

// rolloutSteps replaces the n pods of carts (a Deployment, or a StatefulSet
// when sts) one at a time as the controllers do, the workload's status
// lagging, and ends converged.
func rolloutSteps(c *fake.Clientset, n int, sts bool) func() error {
	ctx := context.Background()
	pods := c.CoreV1().Pods(ns)
	owner := controller("ReplicaSet", &metav1.ObjectMeta{Name: "carts-new", UID: "uid-carts-new"})
	if sts {
		owner = controller("StatefulSet", &metav1.ObjectMeta{Name: "carts-db", UID: "uid-carts-db"})
	}
	return func() error {
		if !sts {
			rs := &appsv1.ReplicaSet{ObjectMeta: meta("carts-new")}
			rs.Labels = map[string]string{"app": "carts", "pod-template-hash": "new"}
			rs.OwnerReferences = []metav1.OwnerReference{controller("Deployment", &metav1.ObjectMeta{Name: "carts", UID: "uid-carts"})}
			if _, err := c.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		app := "carts"
		if sts {
			app = "carts-db"
		}
		for i := range n {
			old := fmt.Sprintf("%s-%d", app, i)
			p, err := pods.Get(ctx, old, metav1.GetOptions{})
			if err != nil {
				return err
			}
			terminating(p)
			if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				return err
			}
			if err := pods.Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
				return err
			}
			np := newPod(fmt.Sprintf("%s-new-%d", app, i), pending)
			np.Namespace, np.Labels = ns, map[string]string{"app": app}
			np.OwnerReferences = []metav1.OwnerReference{owner}
			if _, err := pods.Create(ctx, np, metav1.CreateOptions{}); err != nil {
				return err
			}
			ready := newPod(np.Name)
			ready.Namespace, ready.Labels, ready.OwnerReferences = ns, np.Labels, np.OwnerReferences
			if _, err := pods.UpdateStatus(ctx, ready, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		if sts {
			_, err := c.AppsV1().StatefulSets(ns).UpdateStatus(ctx, sts2(int32(n)), metav1.UpdateOptions{})
			return err
		}
		_, err := c.AppsV1().Deployments(ns).UpdateStatus(ctx, deploy(int32(n), observed), metav1.UpdateOptions{})
		return err
	}
}

// sts2 is sts(n) converged at the next revision.
func sts2(n int32) *appsv1.StatefulSet {
	return sts(n, func(s *appsv1.StatefulSet) {
		s.Generation, s.Status.ObservedGeneration = 3, 3
		s.Status.CurrentRevision, s.Status.UpdateRevision = "carts-db-3", "carts-db-3"
	})
}

// countedTimeout is the timeout of the waits whose requests a test counts.
// A watch quiet for a quarter of the timeout is listed afresh, by design;
// with 5 s, a 20-pod rollout on a loaded machine (race detector, both
// cores busy) outlasted that quarter in half of the runs and counted the
// fallback's requests too.
const countedTimeout = time.Minute

// The requests of a wait do not grow with the rollout: one list and one
// watch of each thing watched, for 1 pod replaced as for 20.
func TestWaitRequestsDoNotGrowWithTheRollout(t *testing.T) {
	for _, tt := range []struct {
		kind string
		want int // requests
	}{
		{"deployment", 6}, // the deployment, its ReplicaSets, its pods
		{"statefulset", 4},
	} {
		for _, n := range []int{1, 20} {
			t.Run(fmt.Sprintf("%s of %d", tt.kind, n), func(t *testing.T) {
				var (
					c     *fake.Clientset
					ref   workload.Ref
					isSts = tt.kind == "statefulset"
					// Same labels, another owner.
					strayPod = newPod("carts-stray", stray, pending)
				)
				if isSts {
					pods := []*corev1.Pod{strayPod}
					for i := range n {
						pods = append(pods, newPod(fmt.Sprintf("carts-db-%d", i)))
					}
					obj := sts(int32(n), func(s *appsv1.StatefulSet) { s.Generation = 3 })
					c, ref = cluster(t, obj, pods...), refOf(t, obj)
				} else {
					pods := []*corev1.Pod{strayPod}
					for i := range n {
						pods = append(pods, newPod(fmt.Sprintf("carts-%d", i)))
					}
					obj := deploy(int32(n), restarting)
					c, ref = cluster(t, obj, pods...), refOf(t, obj)
				}
				r := countAll(c)
				done := whenWatched(t, c, "pods", rolloutSteps(c, n, isSts))
				rep, err := Wait(context.Background(), adapt.Clientset(c), ref, Options{Timeout: countedTimeout, Pods: true})
				done()
				if err != nil || !rep.Converged || !strings.HasSuffix(rep.Summary, fmt.Sprintf(": %d/%d pods ready", n, n)) {
					t.Fatalf("Wait = %+v, %v; want converged", rep, err)
				}
				if r.total() != tt.want {
					t.Errorf("%s; want %d requests in all", r, tt.want)
				}
			})
		}
	}
}

// With Pods, a status that says done is not enough while a pod of the
// workload is still terminating; a stray pod never counts.
func TestWaitPodsByWatch(t *testing.T) {
	c := cluster(t, deploy(2), newPod("carts-7d9f-a"), newPod("carts-7d9f-b", terminating), newPod("carts-stray", stray, pending))
	done := whenWatched(t, c, "pods", func() error {
		ctx := context.Background()
		if err := c.CoreV1().Pods(ns).Delete(ctx, "carts-7d9f-b", metav1.DeleteOptions{}); err != nil {
			return err
		}
		p := newPod("carts-7d9f-c")
		p.Namespace, p.Labels = ns, map[string]string{"app": "carts"}
		p.OwnerReferences = []metav1.OwnerReference{controller("ReplicaSet", &metav1.ObjectMeta{Name: rsName, UID: "uid-" + rsName})}
		_, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 5 * time.Second, Pods: true})
	done()
	if err != nil || !rep.Converged || !strings.HasSuffix(rep.Summary, "2/2 pods ready") {
		t.Errorf("Wait = %+v, %v; want converged, 2/2 pods ready", rep, err)
	}
}

func TestWaitArgoRolloutByWatch(t *testing.T) {
	ref := workload.Ref{Kind: workload.Rollout, Namespace: "ns", Name: "carts"}
	ro := func(phase string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": workload.RolloutAPIVersion, "kind": "Rollout",
			"metadata": map[string]any{"name": "carts", "namespace": "ns", "generation": int64(2)},
			"spec":     map[string]any{"replicas": int64(2)},
			"status":   map[string]any{"observedGeneration": "2", "phase": phase, "readyReplicas": int64(2)},
		}}
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{workload.RolloutResource(): "RolloutList"}, ro("Progressing"))
	r := countAll(dyn)
	done := whenWatched(t, dyn, "rollouts", func() error {
		_, err := dyn.Resource(workload.RolloutResource()).Namespace("ns").UpdateStatus(context.Background(), ro("Healthy"), metav1.UpdateOptions{})
		return err
	})
	rep, err := Wait(context.Background(), adapt.Clientset(fake.NewClientset()), ref, Options{Timeout: countedTimeout, Dynamic: dyn})
	done()
	if err != nil || !rep.Converged || !strings.HasSuffix(rep.Summary, "2/2 pods ready") {
		t.Fatalf("Wait = %+v, %v; want converged", rep, err)
	}
	if r.total() != 2 {
		t.Errorf("%s; want one list and one watch", r)
	}
	if _, err := Wait(context.Background(), adapt.Clientset(fake.NewClientset()), ref, Options{Timeout: time.Second}); err == nil || !permanent(err) {
		t.Errorf("Wait without a dynamic client: %v, want a permanent error", err)
	}
}

package rollout

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// fast keeps every wait well under a second.
var fast = Options{Timeout: 50 * time.Millisecond, Interval: 5 * time.Millisecond}

var carts = workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}

// converged matches the Summary of a converged rollout of n ready pods.
func converged(n string) *regexp.Regexp {
	return regexp.MustCompile(`^rollout converged in \d+(\.\d)?m?s: ` + n + ` pods ready$`)
}

// countReads counts the lists and watches of deployments, and lets them
// through.
func countReads(c *fake.Clientset) (lists, watches *atomic.Int32) {
	lists, watches = new(atomic.Int32), new(atomic.Int32)
	c.PrependReactor("list", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
		lists.Add(1)
		return false, nil, nil
	})
	c.PrependWatchReactor("deployments", func(clienttesting.Action) (bool, watch.Interface, error) {
		watches.Add(1)
		return false, nil, nil
	})
	return lists, watches
}

// onWatch calls f when the first watch of resource starts, before the
// fake registers it: the watch still sees f's changes, from the list's
// resourceVersion on.
func onWatch(c *fake.Clientset, resource string, f func()) {
	var once sync.Once
	c.PrependWatchReactor(resource, func(clienttesting.Action) (bool, watch.Interface, error) {
		once.Do(f)
		return false, nil, nil
	})
}

func TestWaitConvergesAfterStatusUpdate(t *testing.T) {
	// The controller has not yet seen the restart.
	c := cluster(t, deploy(3, func(d *appsv1.Deployment) { d.Generation = 3 }))
	lists, watches := countReads(c)
	updated := make(chan error, 1)
	onWatch(c, "deployments", func() {
		go func() {
			d := deploy(3, func(d *appsv1.Deployment) { d.Generation, d.Status.ObservedGeneration = 3, 3 })
			_, err := c.AppsV1().Deployments(ns).UpdateStatus(context.Background(), d, metav1.UpdateOptions{})
			updated <- err
		}()
	})
	opts := fast
	opts.Timeout = 5 * time.Second
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, opts)
	if err := <-updated; err != nil {
		t.Fatalf("update status: %v", err)
	}
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !rep.Converged || !converged("3/3").MatchString(rep.Summary) {
		t.Errorf("Wait = %+v, want converged, 3/3 pods ready", rep)
	}
	// The change came by the watch, not by reading again.
	if lists.Load() != 1 || watches.Load() != 1 {
		t.Errorf("%d lists and %d watches, want 1 of each", lists.Load(), watches.Load())
	}
}

func TestWaitConvergesAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		obj     runtime.Object
		opts    Options
		summary *regexp.Regexp
	}{
		{"deployment", deploy(3), fast, converged("3/3")},
		{"statefulset", sts(2), fast, converged("2/2")},
		{"daemonset", ds(4), fast, converged("4/4")},
		{"the autoscaler has scaled", deploy(4), Options{Replicas: new(int32(4))}, converged("4/4")},
		{
			"statefulset OnDelete says so", sts(2, func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
			}), fast,
			regexp.MustCompile(`^rollout converged in \d+m?s: 2/2 pods ready \(update strategy OnDelete: pods change only when deleted\)$`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Wait(context.Background(), adapt.Clientset(cluster(t, tt.obj)), refOf(t, tt.obj), tt.opts)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if !rep.Converged || !tt.summary.MatchString(rep.Summary) {
				t.Errorf("Wait = %+v, want converged, summary matching %s", rep, tt.summary)
			}
		})
	}
}

func TestWaitTimesOut(t *testing.T) {
	pull := waiting(0, "ImagePullBackOff", `Back-off pulling image "docker.io/keptnexamples/carts:0.13.3"`)
	tests := []struct {
		name string
		obj  runtime.Object
		pods []*corev1.Pod
		opts Options
		want string
	}{
		{
			name: "an image that cannot be pulled",
			obj:  deploy(3, func(d *appsv1.Deployment) { d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2 }),
			pods: []*corev1.Pod{newPod("carts-7d9f-aaaaa"), newPod("carts-7d9f-abcde", pull), newPod("carts-7d9f-bbbbb")},
			opts: fast,
			want: `not converged after 50ms: 2/3 pods ready; pod carts-7d9f-abcde: ImagePullBackOff (Back-off pulling image "docker.io/keptnexamples/carts:0.13.3"); ` +
				`waiting for deployment "carts" rollout to finish: 2 of 3 updated replicas are available`,
		},
		{
			name: "an autoscaler that does not scale",
			obj:  deploy(2),
			pods: []*corev1.Pod{newPod("carts-7d9f-aaaaa"), newPod("carts-7d9f-bbbbb")},
			opts: Options{Timeout: 30 * time.Millisecond, Interval: 5 * time.Millisecond, Replicas: new(int32(4))},
			want: `not converged after 30ms: 2/4 pods ready; waiting for the autoscaler to set spec.replicas to 4 (now 2)`,
		},
		{
			name: "a statefulset pod that keeps crashing",
			obj:  sts(2, func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 1 }),
			pods: []*corev1.Pod{newPod("carts-db-0"), newPod("carts-db-1", waiting(0, "CrashLoopBackOff", ""), lastExit(0, "Error", 1, "mongod: permission denied"))},
			opts: fast,
			want: `not converged after 50ms: 1/2 pods ready; pod carts-db-1: CrashLoopBackOff (last exit: Error, exit code 1: mongod: permission denied); ` +
				`waiting for 1 pods of statefulset "carts-db" to be ready`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Wait(context.Background(), adapt.Clientset(cluster(t, tt.obj, tt.pods...)), refOf(t, tt.obj), tt.opts)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if rep.Converged || rep.Summary != tt.want {
				t.Errorf("Wait =\n  %+v\nwant not converged, summary\n  %s", rep, tt.want)
			}
			if rep.Elapsed < tt.opts.Timeout {
				t.Errorf("gave up after %s, before the timeout of %s", rep.Elapsed, tt.opts.Timeout)
			}
		})
	}
}

func TestWaitFailedReturnsAtOnce(t *testing.T) {
	d := deploy(3, deadlineExceeded, func(d *appsv1.Deployment) {
		d.Status.ReadyReplicas, d.Status.AvailableReplicas = 0, 0
	})
	unsched := unschedulable("0/1 nodes are available: 1 Insufficient cpu.")
	c := cluster(t, d, newPod("carts-7d9f-aaaaa", unsched), newPod("carts-7d9f-bbbbb", unsched), newPod("carts-7d9f-ccccc", unsched), newPod("carts-7d9f-ddddd", unsched))
	rep, err := Wait(context.Background(), adapt.Clientset(c), carts, Options{Timeout: 2 * time.Second, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	want := `progress deadline exceeded: ReplicaSet "carts-7d9f" has timed out progressing; 0/3 pods ready; ` +
		`pod carts-7d9f-aaaaa: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.; ` +
		`pod carts-7d9f-bbbbb: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.; ` +
		`pod carts-7d9f-ccccc: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.; and 1 more pods not ready`
	if rep.Converged || rep.Summary != want {
		t.Errorf("Wait =\n  %+v\nwant not converged, summary\n  %s", rep, want)
	}
	if rep.Elapsed > 500*time.Millisecond {
		t.Errorf("a failed rollout took %s to report", rep.Elapsed)
	}
}

func TestWaitParentEnds(t *testing.T) {
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := cluster(t, deploy(3, func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }))
		onWatch(c, "deployments", cancel) // while watching
		rep, err := Wait(ctx, adapt.Clientset(c), carts, Options{Timeout: 2 * time.Second, Interval: 5 * time.Millisecond})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait error = %v, want context.Canceled", err)
		}
		if want := "wait for the rollout of deployment sockshop-production/carts: context canceled"; err.Error() != want {
			t.Errorf("Wait error = %q, want %q", err, want)
		}
		if rep.Converged {
			t.Errorf("Wait = %+v, converged", rep)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		c := cluster(t, deploy(3, func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }))
		rep, err := Wait(ctx, adapt.Clientset(c), carts, Options{Timeout: 2 * time.Second, Interval: 5 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait error = %v, want the parent's context.DeadlineExceeded", err)
		}
		if rep.Elapsed > 500*time.Millisecond {
			t.Errorf("returned %s after the parent's deadline of 20ms", rep.Elapsed)
		}
	})
}

func TestWaitAPIErrors(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("the server is currently unable to handle the request")
	tests := []struct {
		name    string
		fail    func(n int32) error // the error of the nth list, nil to let it through
		broken  bool                // every watch and get fails too
		obj     runtime.Object      // nil for none
		wantErr string              // "" for no error
		is      func(error) bool
		summary string
		quick   bool  // returns before the timeout
		reads   int32 // at least this many reads
	}{
		{
			name:    "transient errors are retried",
			fail:    func(n int32) error { return map[int32]error{1: unavailable, 2: unavailable}[n] },
			obj:     deploy(3),
			summary: "rollout converged",
			quick:   true,
			reads:   3,
		},
		{
			name:    "every read fails",
			fail:    func(int32) error { return unavailable },
			obj:     deploy(3),
			wantErr: "wait for the rollout of deployment sockshop-production/carts: no successful read in 50ms: list deployment sockshop-production/carts: the server is currently unable to handle the request",
			is:      apierrors.IsServiceUnavailable,
		},
		{
			name: "an API error outweighs the timeout that cut the next read short",
			fail: func(n int32) error {
				if n == 1 {
					return unavailable
				}
				time.Sleep(fast.Timeout + 10*time.Millisecond)
				return fmt.Errorf("client rate limiter Wait returned an error: %w", context.DeadlineExceeded)
			},
			obj:     deploy(3),
			wantErr: "wait for the rollout of deployment sockshop-production/carts: no successful read in 50ms: list deployment sockshop-production/carts: the server is currently unable to handle the request",
			is:      apierrors.IsServiceUnavailable,
		},
		{
			name:    "reads fail after one succeeded",
			fail:    func(n int32) error { return map[bool]error{true: unavailable}[n > 1] },
			broken:  true,
			obj:     deploy(3, func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 2 }),
			summary: `not converged after 50ms: 3/3 pods ready; the pods could not be read: get deployment sockshop-production/carts: the server is currently unable to handle the request; waiting for deployment "carts" rollout to finish: 2 out of 3 new replicas have been updated`,
		},
		{
			name:    "the workload is gone",
			wantErr: `wait for the rollout of deployment sockshop-production/carts: deployments.apps "carts" not found`,
			is:      apierrors.IsNotFound,
			quick:   true,
		},
		{
			name: "the workload may not be read",
			fail: func(int32) error {
				return apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "carts", errors.New("RBAC: access denied"))
			},
			obj:     deploy(3),
			wantErr: `wait for the rollout of deployment sockshop-production/carts: list deployment sockshop-production/carts: deployments.apps "carts" is forbidden: RBAC: access denied`,
			is:      apierrors.IsForbidden,
			quick:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := tt.obj
			if obj == nil {
				obj = ds(1) // and no deployment
			}
			c := cluster(t, obj)
			var reads atomic.Int32
			if tt.broken {
				c.PrependReactor("get", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, unavailable
				})
				c.PrependWatchReactor("deployments", func(clienttesting.Action) (bool, watch.Interface, error) {
					return true, nil, unavailable
				})
			}
			c.PrependReactor("list", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
				n := reads.Add(1)
				if tt.fail == nil {
					return false, nil, nil
				}
				if err := tt.fail(n); err != nil {
					return true, nil, err
				}
				return false, nil, nil
			})
			rep, err := Wait(context.Background(), adapt.Clientset(c), carts, fast)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Wait: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("Wait error =\n  %v\nwant\n  %s", err, tt.wantErr)
			case tt.wantErr != "" && !tt.is(err):
				t.Errorf("Wait error %v does not wrap the API error", err)
			}
			if !strings.HasPrefix(rep.Summary, tt.summary) {
				t.Errorf("Wait summary =\n  %s\nwant it to start\n  %s", rep.Summary, tt.summary)
			}
			if tt.quick && rep.Elapsed >= fast.Timeout {
				t.Errorf("took %s, want an answer before the timeout", rep.Elapsed)
			}
			if reads.Load() < tt.reads {
				t.Errorf("read %d times, want at least %d", reads.Load(), tt.reads)
			}
			if tt.quick && tt.wantErr != "" && reads.Load() != 1 {
				t.Errorf("read %d times, want no retry", reads.Load())
			}
		})
	}
}

func TestWaitUnsupportedKind(t *testing.T) {
	ref := workload.Ref{Kind: "CronJob", Namespace: ns, Name: "carts"}
	_, err := Wait(context.Background(), adapt.Clientset(cluster(t, deploy(1))), ref, Options{Timeout: 2 * time.Second})
	if !errors.Is(err, errUnsupportedKind) || !strings.Contains(err.Error(), `"CronJob"`) {
		t.Errorf("Wait error = %v, want that a CronJob has no rollout", err)
	}
}

// After an eviction the workload's status still reports the old pods as
// ready until its controller notices; with Pods, the pods themselves must
// agree.
func TestWaitPodsMustAgreeWithTheStatus(t *testing.T) {
	obj := deploy(2)
	tests := []struct {
		name      string
		pods      []*corev1.Pod
		opts      Options
		converged bool
		summary   string
	}{
		{"status alone", []*corev1.Pod{newPod("carts-7d9f-a"), newPod("carts-7d9f-b", terminating)}, fast, true, "2/2 pods ready"},
		{"an evicted pod still terminating", []*corev1.Pod{newPod("carts-7d9f-a"), newPod("carts-7d9f-b", terminating)},
			Options{Timeout: fast.Timeout, Interval: fast.Interval, Pods: true}, false,
			"waiting for the pods of deployment sockshop-production/carts to be replaced: 1 of 2 ready, 1 terminating"},
		{"its replacement not ready yet", []*corev1.Pod{newPod("carts-7d9f-a"), newPod("carts-7d9f-c", pending)},
			Options{Timeout: fast.Timeout, Interval: fast.Interval, Pods: true}, false, "1 of 2 ready"},
		{"replaced", []*corev1.Pod{newPod("carts-7d9f-a"), newPod("carts-7d9f-c")},
			Options{Timeout: fast.Timeout, Interval: fast.Interval, Pods: true}, true, "2/2 pods ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Wait(context.Background(), adapt.Clientset(cluster(t, obj, tt.pods...)), refOf(t, obj), tt.opts)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if rep.Converged != tt.converged || !strings.Contains(rep.Summary, tt.summary) {
				t.Errorf("Wait = %+v, want converged %v, summary containing %q", rep, tt.converged, tt.summary)
			}
		})
	}
}

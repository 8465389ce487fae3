package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/rollout"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// verifyRoundsEnv raises the number of restarts TestVerifyWatch measures
// per case (default 3), for figures rather than a check.
const verifyRoundsEnv = "VERIFY_ROUNDS"

// requestCounter counts the requests of one client, watches apart.
type requestCounter struct{ all, watches atomic.Int64 }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.all.Add(1)
		if r.URL.Query().Get("watch") == "true" {
			c.watches.Add(1)
		}
		return rt.RoundTrip(r)
	})
}

// verified is one restart and its verification.
type verified struct {
	afterConverged time.Duration // from the rollout converging to Wait returning
	afterReady     time.Duration // from the last pod turning Ready to Wait returning
	// readyToConverged is the cluster's part of afterReady: from the last
	// pod turning Ready to the rollout converging (old pods gone, the
	// status updated).
	readyToConverged time.Duration
	requests         int64 // made by Wait
	watches          int64 // of those, watches
}

// TestVerifyWatch restarts a deployment of 1 and of 5 replicas and verifies
// each rollout with rollout.Wait, as the restart (status) and delete-pods
// (pods too) actions do. It checks that each converges, and that the
// requests Wait makes stay within a bound that does not depend on how many
// pods are replaced or how long that takes; it logs how long after the
// rollout converged, and after the last pod turned Ready, Wait returned.
//
// Those times are seen by watches of this test's own, so they include the
// delay of the deployment controller's status update but not the watch's
// own delivery. Set VERIFY_ROUNDS for more rounds and steadier medians.
func TestVerifyWatch(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	rounds := 3
	if s := os.Getenv(verifyRoundsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", verifyRoundsEnv, s)
		}
		rounds = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout+time.Duration(rounds)*4*waitTimeout/4)
	defer cancel()
	_, ns := newNamespace(ctx, t, cp.client)

	// One client for every Wait, as the provider has one, counted.
	var count requestCounter
	cfg := rest.CopyConfig(cp.config)
	cfg.WrapTransport = count.wrap
	client, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		replicas int32
		pods     bool
		// Bounds the requests of one Wait: a list and a watch of the
		// deployment (and with pods of its ReplicaSets and its pods),
		// and slack for a watch the server ends early.
		maxRequests int64
	}{
		{1, false, 4}, {5, false, 4}, {1, true, 8}, {5, true, 8},
	} {
		name := fmt.Sprintf("%d replicas, status", tc.replicas)
		if tc.pods {
			name = fmt.Sprintf("%d replicas, pods", tc.replicas)
		}
		t.Run(name, func(t *testing.T) {
			o := object{workload.Deployment, fmt.Sprintf("verify-%d-%v", tc.replicas, tc.pods), tc.replicas}
			o.create(ctx, t, cp.client, ns)
			var afterConverged, afterReady, readyToConverged []time.Duration
			var requests []int64
			for range rounds {
				v := restartAndVerify(ctx, t, cp.client, client, &count, o.ref(ns), tc.replicas, tc.pods)
				afterConverged, afterReady = append(afterConverged, v.afterConverged), append(afterReady, v.afterReady)
				readyToConverged = append(readyToConverged, v.readyToConverged)
				requests = append(requests, v.requests)
				if v.requests > tc.maxRequests {
					t.Errorf("Wait made %d requests (%d watches), want at most %d", v.requests, v.watches, tc.maxRequests)
				}
			}
			t.Logf("converged → Wait returned: median %s %v; last pod Ready → returned: median %s %v, of which last Ready → converged (the cluster's part) median %s; requests per Wait %v",
				median(afterConverged), round(afterConverged), median(afterReady), round(afterReady), median(readyToConverged), requests)
		})
	}
}

// restartAndVerify restarts ref as the restart action does, and verifies
// the rollout with rollout.Wait through client.
func restartAndVerify(ctx context.Context, t *testing.T, admin kubernetes.Interface, client kube.Interface, count *requestCounter, ref workload.Ref, replicas int32, pods bool) verified {
	t.Helper()
	d, err := admin.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	obs := observe(octx, t, admin, ref, d.Generation, replicas, pods)

	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := admin.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	count.all.Store(0)
	count.watches.Store(0)
	rep, err := rollout.Wait(ctx, client, ref, rollout.Options{Timeout: waitTimeout / 2, Pods: pods})
	returned := time.Now()
	v := verified{requests: count.all.Load(), watches: count.watches.Load()}
	if err != nil || !rep.Converged {
		t.Fatalf("Wait = %+v, %v; want converged", rep, err)
	}
	// The test's own watch may deliver the last change after Wait's did.
	select {
	case <-obs.converged:
	case <-time.After(waitTimeout / 4):
	}
	stop()
	seen := <-obs.result
	if seen.err != nil {
		t.Fatal(seen.err)
	}
	if seen.converged.IsZero() || seen.lastReady.IsZero() {
		t.Fatalf("Wait returned, but the test's own watch did not see the rollout converge (%+v)", seen)
	}
	v.afterConverged, v.afterReady = returned.Sub(seen.converged), returned.Sub(seen.lastReady)
	v.readyToConverged = seen.converged.Sub(seen.lastReady)
	return v
}

// observer is observe's answer: converged closes when it sees the rollout
// converge; result comes once its ctx ends.
type observer struct {
	converged chan struct{}
	result    chan observed
}

// observed is what observe saw, by its own clock.
type observed struct {
	converged time.Time // the first moment the rollout was converged
	lastReady time.Time // the last time a pod turned Ready
	err       error
}

// observe watches ref and its pods until ctx ends, and then sends when the
// rollout of a generation after gen converged to replicas ready pods (with
// pods, none terminating either), and when the last pod turned Ready. It
// returns once both watches are established.
func observe(ctx context.Context, t *testing.T, c kubernetes.Interface, ref workload.Ref, gen int64, replicas int32, pods bool) observer {
	t.Helper()
	deps := c.AppsV1().Deployments(ref.Namespace)
	podAPI := c.CoreV1().Pods(ref.Namespace)
	byName := metav1.ListOptions{FieldSelector: "metadata.name=" + ref.Name}
	byApp := metav1.ListOptions{LabelSelector: "app=" + ref.Name}
	dl, err := deps.List(ctx, byName)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := podAPI.List(ctx, byApp)
	if err != nil {
		t.Fatal(err)
	}
	byName.ResourceVersion, byApp.ResourceVersion = dl.ResourceVersion, pl.ResourceVersion
	dw, err := deps.Watch(ctx, byName)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := podAPI.Watch(ctx, byApp)
	if err != nil {
		dw.Stop()
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	if len(dl.Items) == 1 {
		dep = &dl.Items[0]
	}
	ready := map[types.UID]bool{}
	live := map[types.UID]*corev1.Pod{}
	for i := range pl.Items {
		p := &pl.Items[i]
		live[p.UID], ready[p.UID] = p, podReady(*p)
	}
	obs := observer{converged: make(chan struct{}), result: make(chan observed, 1)}
	out := obs.result
	go func() {
		defer dw.Stop()
		defer pw.Stop()
		var o observed
		converged := func() bool {
			if dep == nil || dep.Generation <= gen {
				return false
			}
			st := dep.Status
			if st.ObservedGeneration < dep.Generation || st.UpdatedReplicas != replicas || st.Replicas != replicas ||
				st.AvailableReplicas != replicas || st.ReadyReplicas != replicas {
				return false
			}
			if !pods {
				return true
			}
			var n int32
			for _, p := range live {
				if p.DeletionTimestamp != nil {
					return false
				}
				if podReady(*p) {
					n++
				}
			}
			return n >= replicas
		}
		for {
			var ev watch.Event
			var ok bool
			select {
			case <-ctx.Done():
				out <- o
				return
			case ev, ok = <-dw.ResultChan():
				if d, isDep := ev.Object.(*appsv1.Deployment); ok && isDep {
					dep = d
				}
			case ev, ok = <-pw.ResultChan():
				if p, isPod := ev.Object.(*corev1.Pod); ok && isPod {
					if ev.Type == watch.Deleted {
						delete(live, p.UID)
					} else {
						live[p.UID] = p
						if r := podReady(*p); r && !ready[p.UID] {
							o.lastReady = time.Now()
						}
					}
					ready[p.UID] = ev.Type != watch.Deleted && podReady(*p)
				}
			}
			// Once ctx ends the watches may close or report the
			// cancellation before select picks ctx.Done: that is the end
			// asked for, not an error.
			if (!ok || ev.Type == watch.Error) && ctx.Err() != nil {
				out <- o
				return
			}
			if !ok {
				o.err = fmt.Errorf("a watch of the test's own observer closed")
				out <- o
				return
			}
			if ev.Type == watch.Error {
				o.err = fmt.Errorf("the test's own observer: watch error %v", ev.Object)
				out <- o
				return
			}
			if o.converged.IsZero() && converged() {
				o.converged = time.Now()
				close(obs.converged)
			}
		}
	}()
	return obs
}

// round keeps durations readable in a log line.
func round(ds []time.Duration) []time.Duration {
	r := make([]time.Duration, len(ds))
	for i, d := range ds {
		r[i] = d.Round(10 * time.Microsecond)
	}
	return r
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

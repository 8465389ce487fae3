package kube_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

// recorder is an API server that writes down each request and answers
// 404, so that both clients go no further than one request per call.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %s?%s accept=%q content-type=%q", req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Get("Accept"), req.Header.Get("Content-Type")))
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

// TestSameRequestsAsClientGo runs every call the provider makes through the
// narrow clientset and through client-go's, and wants the same requests:
// method, path, query, and the content types offered and sent (protobuf
// where client-go prefers it).
func TestSameRequestsAsClientGo(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL, QPS: -1}

	narrow, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	full, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "carts", Namespace: "ns"}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
	list := metav1.ListOptions{LabelSelector: "app=carts", ResourceVersion: "7", Limit: 100}

	calls := map[string]func(kube.Interface) error{
		"deployment get": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").Get(ctx, "carts", metav1.GetOptions{ResourceVersion: "0"})
			return err
		},
		"deployment list": func(c kube.Interface) error { _, err := c.AppsV1().Deployments("ns").List(ctx, list); return err },
		"deployment watch": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=carts", ResourceVersion: "7"})
			return err
		},
		"deployment update": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").Update(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "carts"}}, metav1.UpdateOptions{FieldManager: "m"})
			return err
		},
		"deployment patch": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").Patch(ctx, "carts", types.StrategicMergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		},
		"deployment get scale": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").GetScale(ctx, "carts", metav1.GetOptions{})
			return err
		},
		"deployment update scale": func(c kube.Interface) error {
			_, err := c.AppsV1().Deployments("ns").UpdateScale(ctx, "carts", scale, metav1.UpdateOptions{})
			return err
		},
		"statefulset update scale": func(c kube.Interface) error {
			_, err := c.AppsV1().StatefulSets("ns").UpdateScale(ctx, "db", scale, metav1.UpdateOptions{})
			return err
		},
		"daemonset delete": func(c kube.Interface) error {
			return c.AppsV1().DaemonSets("ns").Delete(ctx, "agent", metav1.DeleteOptions{})
		},
		"replicasets list": func(c kube.Interface) error { _, err := c.AppsV1().ReplicaSets("ns").List(ctx, list); return err },
		"controllerrevisions list": func(c kube.Interface) error {
			_, err := c.AppsV1().ControllerRevisions("ns").List(ctx, list)
			return err
		},
		"hpa list": func(c kube.Interface) error {
			_, err := c.AutoscalingV2().HorizontalPodAutoscalers("ns").List(ctx, list)
			return err
		},
		"job delete": func(c kube.Interface) error {
			bg := metav1.DeletePropagationBackground
			return c.BatchV1().Jobs("ns").Delete(ctx, "j", metav1.DeleteOptions{PropagationPolicy: &bg})
		},
		"lease create": func(c kube.Interface) error {
			_, err := c.CoordinationV1().Leases("keptn").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}}, metav1.CreateOptions{})
			return err
		},
		"pod watch": func(c kube.Interface) error { _, err := c.CoreV1().Pods("ns").Watch(ctx, list); return err },
		"pod logs": func(c kube.Interface) error {
			tail := int64(50)
			_, err := c.CoreV1().Pods("ns").GetLogs("p", &corev1.PodLogOptions{Container: "job", TailLines: &tail}).DoRaw(ctx)
			return err
		},
		"event create": func(c kube.Interface) error {
			_, err := c.CoreV1().Events("ns").Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e"}}, metav1.CreateOptions{})
			return err
		},
		"namespace get": func(c kube.Interface) error {
			_, err := c.CoreV1().Namespaces().Get(ctx, "ns", metav1.GetOptions{})
			return err
		},
		"secret get": func(c kube.Interface) error {
			_, err := c.CoreV1().Secrets("ns").Get(ctx, "s", metav1.GetOptions{})
			return err
		},
		"serviceaccount get": func(c kube.Interface) error {
			_, err := c.CoreV1().ServiceAccounts("ns").Get(ctx, "sa", metav1.GetOptions{})
			return err
		},
		"pdb list": func(c kube.Interface) error {
			_, err := c.PolicyV1().PodDisruptionBudgets("ns").List(ctx, list)
			return err
		},
		"evict": func(c kube.Interface) error {
			return c.PolicyV1().Evictions("ns").Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(adapt.Clientset(full)); err == nil {
				t.Fatal("client-go's clientset: no error from a server that answers 404")
			}
			want := rec.take()
			if err := call(narrow); err == nil {
				t.Fatal("narrow clientset: no error from a server that answers 404")
			}
			got := rec.take()
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("requests:\n got  %q\n want %q", got, want)
			}
		})
	}
}

// TestOneRateLimiterForAllGroups: client-go's clientset gives its groups one
// token bucket; so must this one, or KUBE_API_QPS would hold per group.
func TestOneRateLimiterForAllGroups(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, err := kube.NewForConfig(&rest.Config{Host: srv.URL, QPS: 0.5, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The one token goes to the first call; the second, in another group,
	// must wait for the next one, two seconds away, and so runs out of time.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.AppsV1().Deployments("ns").Get(ctx, "a", metav1.GetOptions{}); err == nil {
		t.Fatal("want a 404")
	}
	_, err = c.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if err == nil || len(rec.take()) != 1 {
		t.Fatalf("second call, other group: %v; want it held by the shared rate limiter", err)
	}
}

func TestBurstWithoutQPSIsAnError(t *testing.T) {
	if _, err := kube.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1", QPS: 5}); err == nil {
		t.Fatal("QPS without burst: want an error")
	}
}

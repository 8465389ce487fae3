package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// project is the Keptn project of every test namespace: <project>-<stage>.
const project = "itest"

// randomSuffix is a short random DNS label fragment.
func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNamespace creates namespace <project>-<stage> with a fresh random
// stage, deletes it when the test ends, and returns the stage and the
// namespace. It waits for the namespace's default ServiceAccount, without
// which no pod can be created in it.
func newNamespace(ctx context.Context, t *testing.T, c kubernetes.Interface) (stage, ns string) {
	t.Helper()
	stage = "s" + randomSuffix()
	ns = project + "-" + stage
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"action-provider/test": "integration"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	eventually(ctx, t, "ServiceAccount "+ns+"/default", func(ctx context.Context) (bool, string, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not created yet", nil
		}
		return err == nil, "", err
	})
	return stage, ns
}

// eventually polls cond until it is done, fails the test at once on an
// error, and fails it after waitTimeout with the last state cond described.
func eventually(ctx context.Context, t *testing.T, what string, cond func(context.Context) (done bool, state string, err error)) {
	t.Helper()
	if err := poll(ctx, what, cond); err != nil {
		t.Fatal(err)
	}
}

// object is a workload a test creates.
type object struct {
	kind     workload.Kind // Deployment or StatefulSet
	name     string
	replicas int32
}

func (o object) ref(ns string) workload.Ref {
	return workload.Ref{Kind: o.kind, Namespace: ns, Name: o.name}
}

func podTemplate(name string) corev1.PodTemplateSpec {
	zero := int64(0)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			// kwok runs no container: the image is never pulled.
			Containers:                    []corev1.Container{{Name: "app", Image: "registry.invalid/" + name + ":1"}},
			TerminationGracePeriodSeconds: &zero,
		},
	}
}

// create creates the workload and waits until it has converged.
func (o object) create(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	replicas := o.replicas
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": o.name}}
	var err error
	switch o.kind {
	case workload.Deployment:
		_, err = c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: o.name, Labels: map[string]string{"app": o.name}},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector, Template: podTemplate(o.name)},
		}, metav1.CreateOptions{})
	case workload.StatefulSet:
		_, err = c.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: o.name, Labels: map[string]string{"app": o.name}},
			Spec: appsv1.StatefulSetSpec{
				Replicas: &replicas, Selector: selector, Template: podTemplate(o.name),
				ServiceName: o.name, PodManagementPolicy: appsv1.ParallelPodManagement,
			},
		}, metav1.CreateOptions{})
	default:
		t.Fatalf("cannot create a %s", o.kind)
	}
	if err != nil {
		t.Fatalf("create %s: %v", o.ref(ns), err)
	}
	waitConverged(ctx, t, c, o.ref(ns), o.replicas)
}

// state is what the API server says about a workload.
type state struct {
	replicas   int32 // spec.replicas
	generation int64 // metadata.generation: changes with every write to the spec
}

// read returns spec.replicas and the generation of ref, from the API server.
func read(ctx context.Context, t *testing.T, c kubernetes.Interface, ref workload.Ref) state {
	t.Helper()
	var (
		replicas *int32
		meta     metav1.ObjectMeta
		err      error
	)
	switch ref.Kind {
	case workload.Deployment:
		var d *appsv1.Deployment
		if d, err = c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil {
			replicas, meta = d.Spec.Replicas, d.ObjectMeta
		}
	case workload.StatefulSet:
		var s *appsv1.StatefulSet
		if s, err = c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil {
			replicas, meta = s.Spec.Replicas, s.ObjectMeta
		}
	default:
		t.Fatalf("cannot read a %s", ref.Kind)
	}
	if err != nil {
		t.Fatalf("read %s: %v", ref, err)
	}
	if replicas == nil {
		t.Fatalf("%s has no spec.replicas", ref)
	}
	return state{replicas: *replicas, generation: meta.Generation}
}

// waitConverged waits until the controllers have caught up with ref's
// spec.replicas, which must be want: the status reports want replicas, all
// of them ready, and want pods of the workload are Running and Ready
// (kwok plays the kubelet) with none left over.
func waitConverged(ctx context.Context, t *testing.T, c kubernetes.Interface, ref workload.Ref, want int32) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("%s to converge on %d ready replicas", ref, want), converged(c, ref, want))
}

// converged is waitConverged's condition, for eventually or poll.
func converged(c kubernetes.Interface, ref workload.Ref, want int32) func(context.Context) (bool, string, error) {
	return func(ctx context.Context) (bool, string, error) {
		var (
			spec                          *int32
			selector                      *metav1.LabelSelector
			generation, observed          int64
			replicas, ready, updated, cur int32
		)
		switch ref.Kind {
		case workload.Deployment:
			d, err := c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			spec, selector, generation = d.Spec.Replicas, d.Spec.Selector, d.Generation
			observed, replicas, ready, updated = d.Status.ObservedGeneration, d.Status.Replicas, d.Status.ReadyReplicas, d.Status.UpdatedReplicas
			cur = d.Status.AvailableReplicas
		case workload.StatefulSet:
			s, err := c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			spec, selector, generation = s.Spec.Replicas, s.Spec.Selector, s.Generation
			observed, replicas, ready, updated = s.Status.ObservedGeneration, s.Status.Replicas, s.Status.ReadyReplicas, s.Status.UpdatedReplicas
			cur = s.Status.AvailableReplicas
		default:
			return false, "", fmt.Errorf("cannot watch a %s", ref.Kind)
		}
		if spec == nil || *spec != want {
			return false, "", fmt.Errorf("spec.replicas of %s is %v, want %d", ref, spec, want)
		}
		status := fmt.Sprintf("generation %d observed %d, status replicas %d ready %d updated %d available %d",
			generation, observed, replicas, ready, updated, cur)
		if observed < generation || replicas != want || ready != want || updated != want || cur != want {
			return false, status, nil
		}
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return false, "", err
		}
		pods, err := c.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, "", err
		}
		var live, readyPods int32
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if p.Status.Phase == corev1.PodRunning && podReady(p) {
				readyPods++
			}
		}
		status += fmt.Sprintf("; pods %d (not terminating), %d Running and Ready", live, readyPods)
		return live == want && readyPods == want, status, nil
	}
}

// poll is eventually for code that has no *testing.T: it returns the error
// instead of failing a test.
func poll(ctx context.Context, what string, cond func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	var state string
	for {
		done, s, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if s != "" {
			state = s
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached within %s; last seen: %s", what, waitTimeout, state)
		case <-time.After(pollInterval):
		}
	}
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

package sandbox

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// addJobReactor stands in for the job controller and a kubelet: a created
// Job gets one pod, which has already succeeded, and the Job is Complete.
// No container runs; JobLogs says what would have.
func addJobReactor(cs *fake.Clientset) {
	t := cs.Tracker()
	cs.PrependReactor("create", "jobs", func(a clienttesting.Action) (bool, runtime.Object, error) {
		create, ok := a.(clienttesting.CreateAction)
		if !ok || a.GetSubresource() != "" {
			return false, nil, nil
		}
		j, ok := create.GetObject().(*batchv1.Job)
		if !ok {
			return true, nil, apierrors.NewBadRequest("expected a batch/v1 Job")
		}
		j = j.DeepCopy()
		ns := a.GetNamespace()
		if _, err := t.Get(a.GetResource(), ns, j.Name); err == nil {
			return true, nil, apierrors.NewAlreadyExists(a.GetResource().GroupResource(), j.Name)
		}
		now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		j.UID, j.ResourceVersion, j.CreationTimestamp = uuid.NewUUID(), "1", now
		j.Status = batchv1.JobStatus{
			StartTime: &now, CompletionTime: &now, Succeeded: 1,
			Conditions: []batchv1.JobCondition{
				{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
		}
		if err := t.Create(a.GetResource(), j, ns); err != nil {
			return true, nil, err
		}
		if err := t.Create(corev1.SchemeGroupVersion.WithResource("pods"), jobPod(j, now), ns); err != nil {
			return true, nil, err
		}
		return true, j, nil
	})
}

// jobPod is the pod the job controller would have made, as the kubelet
// leaves it once its containers exited 0.
func jobPod(j *batchv1.Job, now metav1.Time) *corev1.Pod {
	labels := map[string]string{batchv1.ControllerUidLabel: string(j.UID), batchv1.JobNameLabel: j.Name}
	for k, v := range j.Spec.Template.Labels {
		labels[k] = v
	}
	yes := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: j.Name + "-" + rand.String(5), Namespace: j.Namespace, Labels: labels,
			UID: uuid.NewUUID(), ResourceVersion: "1", CreationTimestamp: now,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: &yes}},
		},
		Spec:   *j.Spec.Template.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded, StartTime: &now},
	}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now,
			}},
		})
	}
	return p
}

// JobLogs is the log of a sandbox Job's container: since nothing ran, it
// says what would have, with the $(NAME) references of the command
// expanded as the kubelet would, from the container's plain variables (a
// Secret's stays a reference: the sandbox has none).
type JobLogs struct {
	Client kube.Interface
}

// reference is a $(NAME) reference with the "$"s before it: an even
// number of them is an escaped one.
var reference = regexp.MustCompile(`\$+\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// Tail implements the job action's LogReader.
func (l JobLogs) Tail(ctx context.Context, namespace, pod, container string, lines int64) ([]byte, error) {
	p, err := l.Client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	for _, c := range p.Spec.Containers {
		if c.Name != container {
			continue
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				env[e.Name] = strings.ReplaceAll(e.Value, "$$", "$")
			}
		}
		// As the kubelet expands: $(NAME) is the variable's value, $$ is $.
		expand := func(s string) string {
			return reference.ReplaceAllStringFunc(s, func(m string) string {
				open := strings.IndexByte(m, '(')
				dollars, name := open, m[open+1:len(m)-1]
				lead := strings.Repeat("$", dollars/2)
				if dollars%2 == 0 {
					return lead + m[open:]
				}
				if v, ok := env[name]; ok {
					return lead + v
				}
				return lead + m[dollars-1:]
			})
		}
		var words []string
		for _, w := range append(append([]string{}, c.Command...), c.Args...) {
			words = append(words, expand(w))
		}
		out := []string{
			"sandbox: no container runs here; a cluster would have run",
			"  image:   " + c.Image,
			fmt.Sprintf("  command: %q", words),
		}
		if sc := p.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
			out = append(out, fmt.Sprintf("  as user %d", *sc.RunAsUser))
		}
		if int64(len(out)) > lines {
			out = out[int64(len(out))-lines:]
		}
		return []byte(strings.Join(out, "\n") + "\n"), nil
	}
	return nil, fmt.Errorf("sandbox: pod %s/%s has no container %s", namespace, pod, container)
}

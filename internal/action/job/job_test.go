package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

const ns = "sockshop-production"

// cluster is a fake API server whose Job watches the test drives: the
// fake tracker drops what happens between a list and a watch, so a test
// that updated the Job "while" the handler watched would race it.
type cluster struct {
	cs      *fake.Clientset
	watches chan *watch.FakeWatcher
	logs    *fakeLogs
}

func newCluster(objs ...runtime.Object) *cluster {
	c := &cluster{cs: fake.NewClientset(objs...), watches: make(chan *watch.FakeWatcher, 4), logs: &fakeLogs{}}
	c.cs.PrependWatchReactor("jobs", func(clienttesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFakeWithChanSize(4, false)
		c.watches <- w
		return true, w, nil
	})
	// The API server gives every object a UID; the fake does not.
	c.cs.PrependReactor("create", "jobs", func(a clienttesting.Action) (bool, runtime.Object, error) {
		j := a.(clienttesting.CreateAction).GetObject().(*batchv1.Job)
		j.UID = types.UID("uid-" + j.Name)
		return false, nil, nil
	})
	return c
}

type fakeLogs struct {
	text string
	err  error
	asks []string
}

func (f *fakeLogs) Tail(_ context.Context, namespace, pod, container string, lines int64) ([]byte, error) {
	f.asks = append(f.asks, fmt.Sprintf("%s/%s/%s tail=%d", namespace, pod, container, lines))
	return []byte(f.text), f.err
}

func (c *cluster) handler(t *testing.T, cfg Config, allowed ...string) *Handler {
	t.Helper()
	if allowed == nil {
		allowed = []string{ns}
	}
	p, err := guard.NewPolicy(allowed, "keptn")
	if err != nil {
		t.Fatal(err)
	}
	h, err := New("flush-cache", cfg, Options{
		Client: adapt.Clientset(c.cs), Policy: p, Audit: audit.New(adapt.Clientset(c.cs), "test-pod"), Deadline: 5 * time.Minute, Logs: c.logs,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func request() action.Request {
	return action.Request{
		Action: "flush-cache", Project: "sockshop", Stage: "production", Service: "carts",
		Labels:       map[string]string{"build-id": "42", "owner": "team-a"},
		Value:        json.RawMessage(`{"cache":"sessions"}`),
		Problem:      keptnv2.ProblemDetails{ProblemTitle: "Response time degradation"},
		KeptnContext: "ctx-1", TriggeredID: "trig-1",
	}
}

// finish plays the job controller and the kubelet: a pod whose container
// ended with code, and the Job's final condition, sent on the watch.
func (c *cluster) finish(t *testing.T, name string, code int32, cond batchv1.JobConditionType, reason string) {
	t.Helper()
	w := c.watch(t)
	w.Modify(c.end(t, name, code, cond, reason))
}

// end writes the Job's end on the API server: its pod and its condition.
func (c *cluster) end(t *testing.T, name string, code int32, cond batchv1.JobConditionType, reason string) *batchv1.Job {
	t.Helper()
	j, err := c.cs.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	term := &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed"}
	if code != 0 {
		term.Reason = "Error"
	}
	if code == 137 {
		term.Reason = "OOMKilled"
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-abcde", Namespace: ns, Labels: map[string]string{batchv1.ControllerUidLabel: string(j.UID)}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: ContainerName, State: corev1.ContainerState{Terminated: term},
		}}},
	}
	if _, err := c.cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := metav1.NewTime(time.Unix(1000, 0))
	end := metav1.NewTime(time.Unix(1004, 0))
	j.Status.StartTime, j.Status.CompletionTime = &start, &end
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: cond, Status: corev1.ConditionTrue, Reason: reason})
	if _, err := c.cs.BatchV1().Jobs(ns).UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return j
}

type result struct {
	out action.Outcome
	err error
}

func (c *cluster) run(ctx context.Context, h *Handler, req action.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		out, err := h.Run(ctx, req)
		ch <- result{out, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return")
		return result{}
	}
}

func jobs(t *testing.T, c *cluster) []batchv1.Job {
	t.Helper()
	l, err := c.cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestCompleteJobPassesWithItsLogLines(t *testing.T) {
	c := newCluster()
	c.logs.text = "flushing sessions\nflushed 12 keys\n"
	h := c.handler(t, Config{Image: "curlimages/curl:8.11.1", Command: []string{"curl"}})
	ch := c.run(context.Background(), h, request())
	name := Name("flush-cache", "trig-1")
	c.finish(t, name, 0, batchv1.JobComplete, "")
	r := receive(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := "job sockshop-production/" + name + " completed in 4s; last 2 log lines of pod " + name + "-abcde:\nflushing sessions\nflushed 12 keys"
	if r.out.Result != keptnv2.ResultPass || r.out.Message != want {
		t.Errorf("got %s %q\nwant pass %q", r.out.Result, r.out.Message, want)
	}
	if got := c.logs.asks; len(got) != 1 || got[0] != ns+"/"+name+"-abcde/job tail=20" {
		t.Errorf("log reads: %q", got)
	}
	events, _ := c.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	var reasons []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind != "Job" || e.InvolvedObject.APIVersion != "batch/v1" || e.InvolvedObject.Name != name {
			t.Errorf("audit event on %+v", e.InvolvedObject)
		}
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "JobCreated,JobCompleted" {
		t.Errorf("audit events: %q", reasons)
	}
}

func TestFailedJobFailsWithReasonAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		code   int32
		reason string
		want   string
	}{
		{3, "BackoffLimitExceeded", "failed (BackoffLimitExceeded); container job exited with code 3 (Error)"},
		{137, "BackoffLimitExceeded", "failed (BackoffLimitExceeded); container job exited with code 137 (OOMKilled)"},
		{0, "DeadlineExceeded", "failed (DeadlineExceeded); container job exited with code 0 (Completed)"},
	} {
		t.Run(fmt.Sprint(tc.code, tc.reason), func(t *testing.T) {
			c := newCluster()
			c.logs.text = "connection refused\n"
			h := c.handler(t, Config{Image: "busybox:1.37"})
			ch := c.run(context.Background(), h, request())
			c.finish(t, Name("flush-cache", "trig-1"), tc.code, batchv1.JobFailed, tc.reason)
			r := receive(t, ch)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.out.Result != keptnv2.ResultFailed || !strings.Contains(r.out.Message, tc.want) || !strings.HasSuffix(r.out.Message, ":\nconnection refused") {
				t.Errorf("got %s %q, want fail containing %q", r.out.Result, r.out.Message, tc.want)
			}
		})
	}
}

func TestRedeliveryFindsTheJobOfTheFirstDelivery(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "busybox:1.37"})
	first := c.run(context.Background(), h, request())
	name := Name("flush-cache", "trig-1")
	c.finish(t, name, 0, batchv1.JobComplete, "")
	if r := receive(t, first); r.err != nil {
		t.Fatal(r.err)
	}
	// The Job is Complete: the second delivery reports it without a watch.
	r := receive(t, c.run(context.Background(), h, request()))
	if r.err != nil || r.out.Result != keptnv2.ResultPass {
		t.Fatalf("second delivery: %v %+v", r.err, r.out)
	}
	if n := len(jobs(t, c)); n != 1 {
		t.Errorf("%d jobs, want 1", n)
	}
}

func TestAJobOfTheSameNameForAnotherEventIsNotAdopted(t *testing.T) {
	name := Name("flush-cache", "trig-1")
	other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{annotTriggered: "someone-else"}}}
	c := newCluster(other)
	_, err := c.handler(t, Config{Image: "busybox:1.37"}).Run(context.Background(), request())
	if err == nil || !strings.Contains(err.Error(), `exists for another event (triggeredid "someone-else")`) {
		t.Fatalf("got %v", err)
	}
}

func TestDeadlineDeletesTheJobAndNamesIt(t *testing.T) {
	c := newCluster()
	c.logs.text = "still waiting for the lock\n"
	var deleted []string
	c.cs.PrependReactor("delete", "jobs", func(a clienttesting.Action) (bool, runtime.Object, error) {
		d := a.(clienttesting.DeleteAction)
		if p := d.GetDeleteOptions().PropagationPolicy; p == nil || *p != metav1.DeletePropagationBackground {
			t.Errorf("propagation %v, want Background", p)
		}
		deleted = append(deleted, d.GetName())
		return false, nil, nil
	})
	h := c.handler(t, Config{Image: "busybox:1.37"})
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.run(ctx, h, request())
	name := Name("flush-cache", "trig-1")
	c.running(t, name)
	cancel()
	r := receive(t, ch)
	want := "job sockshop-production/" + name + " did not finish before the action was cancelled; deleted it and its pods; last 1 log line of pod " + name + "-abcde:\nstill waiting for the lock"
	if r.err == nil || r.err.Error() != want {
		t.Fatalf("got %v\nwant %s", r.err, want)
	}
	if len(deleted) != 1 || deleted[0] != name || len(jobs(t, c)) != 0 {
		t.Errorf("deleted %q, left %d", deleted, len(jobs(t, c)))
	}
}

// running waits for the handler's watch and gives the Job a running pod.
func (c *cluster) running(t *testing.T, name string) {
	t.Helper()
	select {
	case <-c.watches:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never watched the job")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-abcde", Namespace: ns,
		Labels: map[string]string{batchv1.ControllerUidLabel: "uid-" + name}}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsAreReferencesAndMaskedInTheLog(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cache-admin", Namespace: ns},
		Data: map[string][]byte{"token": []byte("s3cr3t-admin-token"), "user": []byte("admin-user")}}
	c := newCluster(s)
	c.logs.text = "using token s3cr3t-admin-token as admin-user\n"
	h := c.handler(t, Config{Image: "busybox:1.37", Secrets: []SecretEnv{
		{SecretName: "cache-admin", Key: "token", Env: "ADMIN_TOKEN"},
		{SecretName: "cache-admin"},
	}})
	ch := c.run(context.Background(), h, request())
	name := Name("flush-cache", "trig-1")
	c.finish(t, name, 0, batchv1.JobComplete, "")
	r := receive(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if strings.Contains(r.out.Message, "s3cr3t") || strings.Contains(r.out.Message, "admin-user") || !strings.Contains(r.out.Message, "using token "+secret.Mask+" as "+secret.Mask) {
		t.Errorf("message not masked: %q", r.out.Message)
	}
	j := jobs(t, c)[0]
	spec, _ := json.Marshal(j)
	if strings.Contains(string(spec), "s3cr3t") || strings.Contains(string(spec), "admin-user") {
		t.Errorf("a secret's value is in the Job: %s", spec)
	}
	ctr := j.Spec.Template.Spec.Containers[0]
	var ref *corev1.SecretKeySelector
	for _, e := range ctr.Env {
		if e.Name == "ADMIN_TOKEN" {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil || ref.Name != "cache-admin" || ref.Key != "token" {
		t.Errorf("ADMIN_TOKEN: %+v", ref)
	}
	if len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].SecretRef.Name != "cache-admin" {
		t.Errorf("envFrom: %+v", ctr.EnvFrom)
	}
}

func TestUnreadableSecretStopsBeforeAnythingRuns(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"missing", nil, `read Secret sockshop-production/cache-admin, which the job references (to mask its values in the job's log): secrets "cache-admin" not found`},
		{"no such key", []runtime.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cache-admin", Namespace: ns}}},
			`the job references key "token" of Secret sockshop-production/cache-admin, which has no such key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(tc.objs...)
			h := c.handler(t, Config{Image: "busybox:1.37", Secrets: []SecretEnv{{SecretName: "cache-admin", Key: "token"}}})
			_, err := h.Run(context.Background(), request())
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
			if n := len(jobs(t, c)); n != 0 {
				t.Errorf("%d jobs created", n)
			}
		})
	}
}

func TestRefusedNamespaceAndOptOutCreateNothing(t *testing.T) {
	deploy := deployment("carts", map[string]string{guard.OptOutAnnotation: "true"})
	for _, tc := range []struct {
		name    string
		cfg     Config
		allowed []string
		objs    []runtime.Object
		rule    string
	}{
		{"namespace not allowed", Config{Image: "busybox:1.37"}, []string{"other-*"}, nil, guard.RuleNamespace},
		{"entry's namespace not allowed", Config{Image: "busybox:1.37", Namespace: "ops"}, []string{ns}, nil, guard.RuleNamespace},
		{"service opted out", Config{Image: "busybox:1.37"}, []string{ns}, []runtime.Object{deploy}, guard.RuleOptOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(tc.objs...)
			_, err := c.handler(t, tc.cfg, tc.allowed...).Run(context.Background(), request())
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != tc.rule {
				t.Fatalf("got %v, want a refusal by %q", err, tc.rule)
			}
			for _, a := range c.cs.Actions() {
				if a.GetVerb() == "create" {
					t.Errorf("created %s", a.GetResource().Resource)
				}
			}
		})
	}
}

func TestDryRunRendersAndCreatesNothing(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "busybox:1.37", Command: []string{"sh", "/keptn/flush.sh"},
		Secrets: []SecretEnv{{SecretName: "cache-admin", Key: "token"}}, Files: &Files{ConfigMap: "scripts"}})
	req := request()
	req.DryRun = true
	out, err := h.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := "dry run: would create job sockshop-production/" + Name("flush-cache", "trig-1") +
		`: image busybox:1.37, command ["sh" "/keptn/flush.sh"], secrets: TOKEN from Secret cache-admin key token, files from ConfigMap scripts, deadline 4m45s`
	if out.Message != want {
		t.Errorf("got  %q\nwant %q", out.Message, want)
	}
	for _, a := range c.cs.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("dry run did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func deployment(name string, annotations map[string]string) runtime.Object {
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       appsv1.DeploymentSpec{Replicas: &one},
	}
}

// watch returns the handler's next watch of the Job.
func (c *cluster) watch(t *testing.T) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-c.watches:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never watched the job")
		return nil
	}
}

// TestWatchSurvivesItsEndAndExpiry: a watch the API server closes, or
// whose version expired (410), is followed by a fresh read and watch, and
// the Job's end is still seen.
func TestWatchSurvivesItsEndAndExpiry(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "busybox:1.37"})
	ch := c.run(context.Background(), h, request())
	c.watch(t).Stop()
	c.watch(t).Error(&apierrors.NewResourceExpired("too old resource version: 1 (2)").ErrStatus)
	c.finish(t, Name("flush-cache", "trig-1"), 0, batchv1.JobComplete, "")
	if r := receive(t, ch); r.err != nil || r.out.Result != keptnv2.ResultPass {
		t.Fatalf("got %v %+v", r.err, r.out)
	}
}

// TestWatchFailuresGiveUpAndDeleteTheJob: an API server that keeps
// failing the watch ends the action errored, and the Job does not run on
// unwatched.
func TestWatchFailuresGiveUpAndDeleteTheJob(t *testing.T) {
	c := newCluster()
	c.cs.PrependWatchReactor("jobs", func(clienttesting.Action) (bool, watch.Interface, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	h := c.handler(t, Config{Image: "busybox:1.37"})
	h.pause = func(context.Context, time.Duration) error { return nil }
	_, err := h.Run(context.Background(), request())
	name := Name("flush-cache", "trig-1")
	want := "job sockshop-production/" + name + " did not finish before watching it failed: watching it: etcd is down; deleted it and its pods"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if n := len(jobs(t, c)); n != 0 {
		t.Errorf("%d jobs left running", n)
	}
}

// TestCancelledJustAsItEndedReportsTheEnd: a Job that is over, or whose
// end Kubernetes has decided while its pod stops, when the action is cut
// short is reported as it ends, not deleted.
func TestCancelledJustAsItEndedReportsTheEnd(t *testing.T) {
	for _, tc := range []struct {
		cond   batchv1.JobConditionType
		reason string
		want   string
	}{
		{batchv1.JobComplete, "", " completed in 4s"},
		{batchv1.JobFailureTarget, "DeadlineExceeded", " failed (DeadlineExceeded)"},
		{batchv1.JobSuccessCriteriaMet, "CompletionsReached", " completed in 4s"},
	} {
		t.Run(string(tc.cond), func(t *testing.T) {
			c := newCluster()
			h := c.handler(t, Config{Image: "busybox:1.37"})
			ctx, cancel := context.WithCancel(context.Background())
			ch := c.run(ctx, h, request())
			name := Name("flush-cache", "trig-1")
			c.watch(t)
			// The end is written, but its event never reaches the
			// handler before the cancellation does.
			c.end(t, name, 0, tc.cond, tc.reason)
			cancel()
			r := receive(t, ch)
			if r.err != nil || !strings.Contains(r.out.Message, tc.want) {
				t.Fatalf("got %v %q, want %q", r.err, r.out.Message, tc.want)
			}
			if n := len(jobs(t, c)); n != 1 {
				t.Errorf("%d jobs: the finished one was deleted", n)
			}
		})
	}
}

func TestEventNamesThatAreNotDNSLabelsRunNothing(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "i", Namespace: ns})
	req := request()
	req.Service = "evil.example/?"
	_, err := h.Run(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), `the event's service "evil.example/?" is not a DNS label`) {
		t.Fatalf("got %v", err)
	}
	if n := len(jobs(t, c)); n != 0 {
		t.Errorf("%d jobs", n)
	}
}

func TestSummaryOfAJobAWebhookChanged(t *testing.T) {
	c := newCluster()
	j, err := c.handler(t, Config{Image: "i"}).render(ns, request())
	if err != nil {
		t.Fatal(err)
	}
	// A mutating webhook may add what the provider never writes.
	j.Spec.Template.Spec.Containers[0].EnvFrom = append(j.Spec.Template.Spec.Containers[0].EnvFrom,
		corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}})
	j.Spec.ActiveDeadlineSeconds = nil
	if s := summary(j); !strings.HasPrefix(s, "job "+ns+"/") {
		t.Errorf("summary %q", s)
	}
}

func TestCreateCutShortLeavesNoJob(t *testing.T) {
	c := newCluster()
	ctx, cancel := context.WithCancel(context.Background())
	// The API server stores the Job, but the answer is lost to the
	// cancellation.
	c.cs.PrependReactor("create", "jobs", func(a clienttesting.Action) (bool, runtime.Object, error) {
		j := a.(clienttesting.CreateAction).GetObject().(*batchv1.Job)
		j.UID = types.UID("uid-" + j.Name)
		if err := c.cs.Tracker().Create(a.GetResource(), j, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		cancel()
		return true, nil, context.Canceled
	})
	_, err := c.handler(t, Config{Image: "i"}).Run(ctx, request())
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(jobs(t, c)); n != 0 {
		t.Errorf("%d jobs left behind", n)
	}
}

func TestLastBytesKeepsTheEndFromALineStart(t *testing.T) {
	var b strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	got, err := lastBytes(strings.NewReader(b.String()), 64)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), "line 9999\n") || !strings.HasPrefix(string(got), "line ") || len(got) > 64 {
		t.Errorf("%q", got)
	}
	short, _ := lastBytes(strings.NewReader("a\nb\n"), 64)
	if string(short) != "a\nb\n" {
		t.Errorf("%q", short)
	}
}

func TestASecretCutAtTheEndIsDropped(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cache-admin", Namespace: ns},
		Data: map[string][]byte{"token": []byte("s3cr3t-admin-token")}}
	c := newCluster(s)
	c.logs.text = "authorising\nAuthorization: Bearer s3cr3t-adm"
	h := c.handler(t, Config{Image: "i", Secrets: []SecretEnv{{SecretName: "cache-admin", Key: "token"}}})
	ch := c.run(context.Background(), h, request())
	c.finish(t, Name("flush-cache", "trig-1"), 0, batchv1.JobComplete, "")
	r := receive(t, ch)
	if r.err != nil || strings.Contains(r.out.Message, "s3cr") || !strings.HasSuffix(r.out.Message, ":\nauthorising\nAuthorization: Bearer ") {
		t.Fatalf("got %v %q", r.err, r.out.Message)
	}
}

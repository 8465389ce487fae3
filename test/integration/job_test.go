package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/job"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// The images test/controlplane's kwok stages give an outcome: any other
// image completes with exit code 0.
const (
	imageComplete = "docker.io/library/busybox:1.37"
	imageFail     = "kwok.test/job:fail"
	imageOOM      = "kwok.test/job:oomkilled"
	imageHang     = "kwok.test/job:hang"
	// kwokSecret is on line 299 of the log kwok serves for every Job pod
	// (KWOK_JOB_LOG_FILE), as "token=<it>".
	kwokSecret = "kwok-s3cr3t-token-value"
)

// jobLogLines are the lines kwok serves as every Job pod's log, as kubectl
// logs shows them: the file is in the CRI's format, "<time> stdout F <text>".
func jobLogLines(t *testing.T, cp *controlPlane) []string {
	t.Helper()
	path := cp.env["KWOK_JOB_LOG_FILE"]
	if path == "" {
		t.Fatal("the control plane's env file has no KWOK_JOB_LOG_FILE: test/controlplane/controlplane.sh serves no Job logs")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			t.Fatalf("%s: %q is not a CRI log line", path, l)
		}
		lines = append(lines, f[3])
	}
	return lines
}

// jobHandler is a job entry's handler, wired as the catalog wires it, but
// without the entry's lock: two of them stand for two replicas that both
// got the event.
func jobHandler(t *testing.T, c kube.Interface, cfg job.Config, deadline time.Duration) *job.Handler {
	t.Helper()
	p, err := guard.NewPolicy([]string{project + "-*"}, ledgerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	h, err := job.New("remediate", cfg, job.Options{Client: c, Policy: p, Audit: audit.New(c, "itest"), Deadline: deadline, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func jobRequest(stage, triggeredID string) action.Request {
	return action.Request{
		Action: "remediate", Project: project, Stage: stage, Service: "carts",
		Labels: map[string]string{"owner": "team-carts"}, Value: json.RawMessage(`{"cache":"sessions"}`),
		Problem:      keptnv2.ProblemDetails{ProblemTitle: "Response time degradation"},
		KeptnContext: "ctx-" + triggeredID, TriggeredID: triggeredID,
	}
}

func getJob(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) *batchv1.Job {
	t.Helper()
	j, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get job %s/%s: %v", ns, name, err)
	}
	return j
}

func jobPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// awaitGone waits until the Job and its pods are deleted.
func awaitGone(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) {
	t.Helper()
	eventually(ctx, t, "job "+ns+"/"+name+" and its pods deleted", func(ctx context.Context) (bool, string, error) {
		_, err := c.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, "", err
		}
		pods := jobPods(ctx, t, c, ns, name)
		return apierrors.IsNotFound(err) && len(pods) == 0, fmt.Sprintf("job found: %t, %d pods", err == nil, len(pods)), nil
	})
}

// TestJobOutcomes: a Job that completes, fails, is OOMKilled or runs past
// its deadline, each read off the real job controller, with the log lines
// the API server serves from kwok.
func TestJobOutcomes(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	lines := jobLogLines(t, cp)
	last5 := strings.Join(lines[len(lines)-5:], "\n")
	masked := strings.ReplaceAll(last5, kwokSecret, "***")
	if masked == last5 {
		t.Fatalf("the last 5 lines of KWOK_JOB_LOG_FILE do not hold %q", kwokSecret)
	}
	five := 5
	for _, tc := range []struct {
		name, image string
		timeout     action.Duration
		result      keptnv2.ResultType
		want        []string
		podsLeft    bool
	}{
		{"complete", imageComplete, 0, keptnv2.ResultPass, []string{" completed in ", "; last 5 log lines of pod ", ":\n" + masked}, true},
		{"fail", imageFail, 0, keptnv2.ResultFailed, []string{" failed (BackoffLimitExceeded): ", "; container job exited with code 3 (Error); last 5 log lines", ":\n" + masked}, true},
		{"oomkilled", imageOOM, 0, keptnv2.ResultFailed, []string{" failed (BackoffLimitExceeded)", "; container job exited with code 137 (OOMKilled)"}, true},
		{"deadline", imageHang, action.Duration(3 * time.Second), keptnv2.ResultFailed, []string{" failed (DeadlineExceeded): "}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			stage, ns := newNamespace(ctx, t, cp.client)
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kwok-token", Namespace: ns},
				StringData: map[string]string{"token": kwokSecret}}
			if _, err := cp.client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			h := jobHandler(t, cp.api, job.Config{
				Image: tc.image, Command: []string{"sh", "-c", "echo $(TOKEN)"}, LogLines: &five, Timeout: tc.timeout,
				Secrets: []job.SecretEnv{{SecretName: "kwok-token", Key: "token", Env: "TOKEN"}},
			}, 5*time.Minute)
			id := "itest-" + randomSuffix()
			got := report(h.Run(ctx, jobRequest(stage, id)))
			name := job.Name("remediate", id)
			if got.status != keptnv2.StatusSucceeded || got.result != tc.result || !strings.HasPrefix(got.message, "job "+ns+"/"+name) {
				t.Fatalf("finished %s/%s %q, want succeeded/%s for job %s/%s", got.status, got.result, got.message, tc.result, ns, name)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.message, w) {
					t.Errorf("message lacks %q:\n%s", w, got.message)
				}
			}
			if strings.Contains(got.message, kwokSecret) {
				t.Errorf("the Secret's value is in the message:\n%s", got.message)
			}
			// On the API server: the Job holds the Secret as a reference,
			// and its pods are where the job controller left them.
			j := getJob(ctx, t, cp.client, ns, name)
			spec, _ := json.Marshal(j)
			if strings.Contains(string(spec), kwokSecret) {
				t.Errorf("the Secret's value is in the Job: %s", spec)
			}
			if j.Annotations[action.AnnotationPrefix+"triggeredid"] != id || *j.Spec.BackoffLimit != 0 {
				t.Errorf("job %s: annotations %v, backoffLimit %d", name, j.Annotations, *j.Spec.BackoffLimit)
			}
			if pods := jobPods(ctx, t, cp.client, ns, name); (len(pods) > 0) != tc.podsLeft {
				t.Errorf("%d pods left, want some: %t", len(pods), tc.podsLeft)
			}
			var reasons []string
			for _, e := range auditEvents(ctx, t, cp.client, workload.Ref{Kind: "Job", Namespace: ns, Name: name}) {
				reasons = append(reasons, e.Type+" "+e.Reason)
			}
			wantReasons := "Normal JobCreated,Normal JobCompleted"
			if tc.result != keptnv2.ResultPass {
				wantReasons = "Normal JobCreated,Warning JobFailed"
			}
			if strings.Join(reasons, ",") != wantReasons {
				t.Errorf("audit events on the Job: %q, want %q", reasons, wantReasons)
			}
		})
	}
}

// TestJobActionDeadlineDeletesIt: when the action's deadline passes before
// the Job ends, the Job and its pods are deleted, and the error names it.
func TestJobActionDeadlineDeletesIt(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	h := jobHandler(t, cp.api, job.Config{Image: imageHang}, 5*time.Minute)
	id := "itest-" + randomSuffix()
	name := job.Name("remediate", id)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan finished, 1)
	go func() { done <- report(h.Run(runCtx, jobRequest(stage, id))) }()
	eventually(ctx, t, "a running pod of job "+name, func(ctx context.Context) (bool, string, error) {
		for _, p := range jobPods(ctx, t, cp.client, ns, name) {
			if p.Status.Phase == corev1.PodRunning {
				return true, "", nil
			}
		}
		return false, "no running pod", nil
	})
	cancel() // as the action's deadline or a shutdown does
	got := testsupport.Receive(t, done, waitTimeout, "the handler's answer")
	want := "job " + ns + "/" + name + " did not finish before the action was cancelled; deleted it and its pods; last 20 log lines of pod " + name + "-"
	if got.status != keptnv2.StatusErrored || !strings.HasPrefix(got.message, want) {
		t.Fatalf("finished %s/%s %q, want errored starting %q", got.status, got.result, got.message, want)
	}
	awaitGone(ctx, t, cp.client, ns, name)
}

// TestJobTwoDeliveriesOneJob: two replicas that both run the same event
// (the entry's lock aside) create one Job between them, on the real API
// server, and report the same outcome.
func TestJobTwoDeliveriesOneJob(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	id := "itest-" + randomSuffix()
	var (
		wg  sync.WaitGroup
		got [2]finished
	)
	for i := range got {
		h := jobHandler(t, cp.api, job.Config{Image: imageComplete}, 5*time.Minute)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = report(h.Run(ctx, jobRequest(stage, id)))
		}()
	}
	wg.Wait()
	for i, f := range got {
		if f.result != keptnv2.ResultPass || !strings.Contains(f.message, " completed in ") {
			t.Errorf("replica %d: %s/%s %q", i, f.status, f.result, f.message)
		}
	}
	l, err := cp.client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 {
		t.Fatalf("%d jobs, want 1", len(l.Items))
	}
	var reasons []string
	for _, e := range auditEvents(ctx, t, cp.client, workload.Ref{Kind: "Job", Namespace: ns, Name: l.Items[0].Name}) {
		reasons = append(reasons, e.Reason)
	}
	// One created it; both saw it complete.
	if strings.Count(strings.Join(reasons, ","), "JobCreated") != 1 {
		t.Errorf("audit events %q, want one JobCreated", reasons)
	}
}

// jobCatalog writes a catalog with one job entry, "remediate", for the
// binary.
func jobCatalog(t *testing.T, settings string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "actions.yaml")
	body := "actions:\n  - name: remediate\n    kind: job\n    settings: " + settings + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJobServiceRedeliveryAndSIGTERM, through the binary: the distributor
// POSTs the event twice, which runs one Job and answers once; then a
// SIGTERM while the Job runs ends the action errored, naming the Job,
// which is deleted with its pods.
func TestJobServiceRedeliveryAndSIGTERM(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	sink := &eventsink.Sink{}
	env := map[string]string{
		"EVENTBROKER": testsupport.ServeSink(t, sink), "SHUTDOWN_GRACE": "2s",
	}

	// Redelivery of a Job that completes.
	p := startProvider(ctx, t, with(env, "ACTIONS_CONFIG", jobCatalog(t, `{image: "`+imageComplete+`"}`)))
	id, body := triggered(t, "07-restart.json", stage, nil)
	body = []byte(strings.Replace(string(body), `"action":"restart"`, `"action":"remediate"`, 1))
	if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
		t.Fatalf("POST answered %d %s", code, answer)
	}
	if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusOK || answer != "ignored: duplicate of an accepted event" {
		t.Fatalf("the redelivery answered %d %s", code, answer)
	}
	fin := awaitFinished(ctx, t, sink, id)
	if fin.Data.Result != keptnv2.ResultPass || !strings.HasPrefix(fin.Data.Message, "job "+ns+"/"+job.Name("remediate", id)+" completed") {
		t.Fatalf("finished %s/%s %q", fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}
	if err := p.terminate(t, 30*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log)
	}
	checkEvents(t, sink, id, stage)
	if l, _ := cp.client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 1 {
		t.Fatalf("%d jobs for one event delivered twice, want 1", len(l.Items))
	}

	// SIGTERM while a Job runs.
	p = startProvider(ctx, t, with(env, "ACTIONS_CONFIG", jobCatalog(t, `{image: "`+imageHang+`"}`)))
	id, body = triggered(t, "07-restart.json", stage, nil)
	body = []byte(strings.Replace(string(body), `"action":"restart"`, `"action":"remediate"`, 1))
	name := job.Name("remediate", id)
	if code, answer := post(ctx, t, p.rcvURL, body); code != http.StatusAccepted {
		t.Fatalf("POST answered %d %s", code, answer)
	}
	eventually(ctx, t, "a running pod of job "+name, func(ctx context.Context) (bool, string, error) {
		for _, pod := range jobPods(ctx, t, cp.client, ns, name) {
			if pod.Status.Phase == corev1.PodRunning {
				return true, "", nil
			}
		}
		return false, "no running pod", nil
	})
	p.Signal(t, syscall.SIGTERM)
	fin = awaitFinished(ctx, t, sink, id)
	want := "interrupted: the provider shut down while the action ran: job " + ns + "/" + name + " did not finish before the action was cancelled; deleted it and its pods"
	if fin.Data.Status != keptnv2.StatusErrored || !strings.HasPrefix(fin.Data.Message, want) {
		t.Fatalf("finished %s/%s %q, want errored starting %q", fin.Data.Status, fin.Data.Result, fin.Data.Message, want)
	}
	if exited, err := p.Wait(30 * time.Second); !exited || err != nil {
		t.Fatalf("after SIGTERM: exited %t, %v\n%s", exited, err, p.log)
	}
	checkEvents(t, sink, id, stage)
	awaitGone(ctx, t, cp.client, ns, name)
}

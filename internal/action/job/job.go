// Package job implements the "job" kind of action: run a remediation
// container as a Kubernetes Job, as keptn-contrib's job executor does, but
// safe by default. A catalog entry looks like
//
//	actions:
//	  - name: flush-cache
//	    kind: job
//	    settings:
//	      image: curlimages/curl:8.11.1
//	      command: [curl, -fsS, -X, POST]
//	      args: ["http://$(KEPTN_SERVICE):8080/admin/flush-cache"]
//	      env:
//	        - {name: REASON, value: "{{.Problem.ProblemTitle}}"}
//	      secrets:
//	        - {secretName: cache-admin, key: token, env: ADMIN_TOKEN}
//	      timeout: 2m
//
// The image, the command, the Secrets and the namespace are configuration:
// an event chooses which entry runs and fills in the env templates, never
// what runs or with what. Every value an event fills in has its "$"
// doubled, so that Kubernetes' $(NAME) expansion cannot copy a secret's
// variable into it.
//
// One run is:
//
//	namespace allowed → opt-out → render → read the Secrets (to mask them)
//	→ create (or find, on a redelivery) → watch until Complete or Failed
//	→ read the log's last lines → report
//
// and, when the action's deadline passes or the provider shuts down first,
// delete the Job with its pods and say so, naming the Job.
//
// The Job runs under the restricted Pod Security profile: non-root,
// read-only root file system (with an emptyDir at /tmp), no privilege
// escalation, every capability dropped, seccomp RuntimeDefault, no
// service account token unless the entry names a service account.
package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Kind is the catalog kind of the action.
const Kind = "job"

// cleanupTimeout bounds what follows a deadline or a shutdown: reading the
// Job, its log, and deleting it, together; recordTimeout the audit Event
// after it. Both fit in SHUTDOWN_FLUSH's default, 10s, with room for the
// finished event.
const (
	cleanupTimeout = 5 * time.Second
	recordTimeout  = 2 * time.Second
)

// Options are the provider-wide dependencies of every job entry.
type Options struct {
	Client kube.Interface
	// Policy decides the namespaces a Job may run in.
	Policy guard.Policy
	// Audit records each Job's start and end as Kubernetes Events on the
	// Job; nil records nothing.
	Audit *audit.Recorder
	// Masker learns the values of the Secrets a Job references, and masks
	// them in what finished carries; nil uses one of the handler's own.
	Masker *secret.Masker
	// Deadline is the action's deadline (ACTION_TIMEOUT), which bounds the
	// Job's.
	Deadline time.Duration
	// Logs reads the last lines of a container's log; nil reads them from
	// the API server (pods/log).
	Logs LogReader
	Log  logrus.FieldLogger
}

// Handler is one job entry of the catalog. It is safe for concurrent use.
type Handler struct {
	name   string
	spec   *spec
	client kube.Interface
	policy guard.Policy
	audit  *audit.Recorder
	masker *secret.Masker
	logs   LogReader
	log    logrus.FieldLogger
	// pause spaces the wait's retries; tests do not wait.
	pause func(context.Context, time.Duration) error
}

// New checks an entry's settings. name is the entry's name, which names
// its Jobs.
func New(name string, c Config, opts Options) (*Handler, error) {
	if opts.Client == nil {
		return nil, errors.New("job action: no Kubernetes client")
	}
	s, err := check(c, opts.Deadline)
	if err != nil {
		return nil, err
	}
	h := &Handler{
		name: name, spec: s, client: opts.Client, policy: opts.Policy, audit: opts.Audit,
		masker: opts.Masker, logs: opts.Logs, log: opts.Log, pause: waitFor,
	}
	if h.masker == nil {
		h.masker = &secret.Masker{}
	}
	if h.logs == nil {
		h.logs = apiLogs{opts.Client}
	}
	if h.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		h.log = l
	}
	// A template that does not run on a sample event fails now, not at
	// 3 a.m. Those that read .Value are lint's to run, with real values.
	if _, err := h.environment(sampleData(), sampleRequest()); err != nil && !strings.Contains(err.Error(), ".Value") {
		return nil, err
	}
	return h, nil
}

// Validate runs the env templates on a value, for lint.
func (h *Handler) Validate(value json.RawMessage) error {
	req := sampleRequest()
	req.Value = value
	d, err := newData(req)
	if err != nil {
		return err
	}
	_, err = h.environment(d, req)
	return err
}

// Run runs the Job of one event and reports how it ended.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	// The project, stage and service reach the container, and may be
	// $(NAME) references in its command: only DNS labels, as Keptn names
	// them, never an event's free text.
	for _, f := range []struct{ name, value string }{{"project", req.Project}, {"stage", req.Stage}, {"service", req.Service}} {
		if errs := validation.IsDNS1123Label(f.value); len(errs) > 0 {
			return action.Outcome{}, fmt.Errorf("the event's %s %q is not a DNS label (%s); a job runs only for a Keptn project, stage and service", f.name, f.value, strings.Join(errs, "; "))
		}
	}
	target := req.Project + "-" + req.Stage
	ns := h.spec.Namespace
	if ns == "" {
		ns = target
	}
	if err := h.policy.Namespace(ctx, ns); err != nil {
		return action.Outcome{}, err
	}
	if ns == target {
		if err := h.optOut(ctx, req); err != nil {
			return action.Outcome{}, err
		}
	}
	job, err := h.render(ns, req)
	if err != nil {
		return action.Outcome{}, err
	}
	what := summary(job)
	if req.DryRun {
		return action.Pass("dry run: would create " + what), nil
	}

	masker, err := h.secrets(ctx, ns)
	if err != nil {
		return action.Outcome{}, err
	}
	log := h.log.WithFields(logrus.Fields{"job": ref(job), "shkeptncontext": req.KeptnContext, "triggeredid": req.TriggeredID})
	job, created, err := h.create(ctx, log, job)
	if err != nil {
		return action.Outcome{}, err
	}
	if created {
		log.Info("job created")
		h.record(ctx, log, job, req, "JobCreated", "created "+what, false)
	} else {
		log.Info("job of an earlier delivery found; waiting for it")
	}

	done, err := h.wait(ctx, job)
	if err != nil {
		out, err := h.abandon(ctx, log, job, masker, err)
		h.record(ctx, log, job, req, "JobAbandoned", h.masker.String(masker.String(orError(out, err))), true)
		return out, err
	}
	out := h.report(ctx, done, masker)
	h.record(ctx, log, done, req, reason(out), out.Message, out.Result != action.Pass("").Result)
	return out, nil
}

// orError is the message of an outcome, or the error's when there is one.
func orError(out action.Outcome, err error) string {
	if err != nil {
		return err.Error()
	}
	return out.Message
}

// optOut refuses when the Keptn service's workload opted out. A service
// with no workload (a job may remediate something else) cannot opt out.
func (h *Handler) optOut(ctx context.Context, req action.Request) error {
	if req.Service == "" {
		return nil
	}
	ref, obj, err := workload.ResolveObject(ctx, h.client, req, workload.Selector{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read the service's workload for its opt-out annotation: %w", err)
	}
	return guard.OptOut(ref, obj)
}

// secrets reads every Secret the entry references, so that their values
// are masked in the log lines finished carries. A Secret that cannot be
// read is an error before anything runs: a pod would not start without
// it, and a log that cannot be masked is not reported.
func (h *Handler) secrets(ctx context.Context, ns string) (*secret.Masker, error) {
	m := &secret.Masker{}
	for _, r := range h.spec.Secrets {
		s, err := h.client.CoreV1().Secrets(ns).Get(ctx, r.SecretName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read Secret %s/%s, which the job references (to mask its values in the job's log): %w", ns, r.SecretName, err)
		}
		if r.Key != "" {
			if _, ok := s.Data[r.Key]; !ok {
				return nil, fmt.Errorf("the job references key %q of Secret %s/%s, which has no such key", r.Key, ns, r.SecretName)
			}
		}
		for _, v := range s.Data {
			m.Add(string(v))
			h.masker.Add(string(v))
		}
	}
	return m, nil
}

// create creates the Job, or finds the one an earlier delivery of the same
// event created.
func (h *Handler) create(ctx context.Context, log logrus.FieldLogger, job *batchv1.Job) (*batchv1.Job, bool, error) {
	jobs := h.client.BatchV1().Jobs(job.Namespace)
	got, err := jobs.Create(ctx, job, metav1.CreateOptions{})
	switch {
	case err == nil:
		return got, true, nil
	case ctx.Err() != nil:
		// The API server may have created it as the request was cut
		// short: a Job nobody waits for must not run on.
		h.removeLost(ctx, log, job)
		return nil, false, fmt.Errorf("create %s: %w", ref(job), err)
	case !apierrors.IsAlreadyExists(err):
		return nil, false, fmt.Errorf("create %s: %w", ref(job), err)
	}
	got, err = jobs.Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("create %s: it exists, but reading it failed: %w", ref(job), err)
	}
	if id := got.Annotations[annotTriggered]; id != job.Annotations[annotTriggered] {
		return nil, false, fmt.Errorf("create %s: a job of that name exists for another event (triggeredid %q); delete it or rename the entry", ref(job), id)
	}
	return got, false, nil
}

// removeLost deletes a Job whose create was cut short, if it was created,
// and is this event's.
func (h *Handler) removeLost(ctx context.Context, log logrus.FieldLogger, job *batchv1.Job) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	got, err := h.client.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil || got.Annotations[annotTriggered] != job.Annotations[annotTriggered] {
		return
	}
	if err := h.delete(ctx, got); err != nil && !apierrors.IsNotFound(err) {
		log.WithError(err).Error("a job created as its action was cut short could not be deleted; delete it by hand")
	}
}

func (h *Handler) delete(ctx context.Context, job *batchv1.Job) error {
	background := metav1.DeletePropagationBackground
	return h.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &background,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
}

// abandon ends a wait that failed or that the deadline or a shutdown cut
// short. A Job that finished meanwhile is reported as it ended; one whose
// end is decided (its pods still stopping) as it will end; any other is
// deleted with its pods, after reading what its log says so far, and the
// error says so. Each step is bounded: this runs in the time kept for
// the finished event.
func (h *Handler) abandon(ctx context.Context, log logrus.FieldLogger, job *batchv1.Job, masker *secret.Masker, cause error) (action.Outcome, error) {
	after, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	latest, err := h.client.BatchV1().Jobs(job.Namespace).Get(after, job.Name, metav1.GetOptions{})
	if err == nil && latest.UID == job.UID {
		_, final := outcome(latest)
		if _, ok := decision(latest); final || ok {
			return h.report(after, latest, masker), nil
		}
		job = latest
	}
	why := "watching it failed: " + cause.Error()
	switch {
	case errors.Is(cause, context.DeadlineExceeded):
		why = "the action's deadline passed"
	case errors.Is(cause, context.Canceled):
		why = "the action was cancelled"
	case errors.Is(cause, errGone), errors.Is(cause, errReplaced):
		return action.Outcome{}, fmt.Errorf("%s: %w", ref(job), cause)
	}
	// The log first, briefly: the deletion takes the pods and their logs.
	tctx, tcancel := context.WithTimeout(after, cleanupTimeout/3)
	tail := h.tail(tctx, job, masker)
	tcancel()

	what := "deleted it and its pods"
	switch err := h.delete(after, job); {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		what = "it was already gone"
	case err != nil:
		what = fmt.Sprintf("deleting it failed (%v); delete it by hand: kubectl -n %s delete job %s", err, job.Namespace, job.Name)
		log.WithError(err).Error("job not deleted after its action was cut short")
	default:
		log.Info("job deleted after its action was cut short")
	}
	return action.Outcome{}, errors.New(h.masker.String(masker.String(fmt.Sprintf("%s did not finish before %s; %s%s", ref(job), why, what, tail))))
}

// record writes an audit Event on the Job; a failure is logged, not
// returned: the Job ran either way.
func (h *Handler) record(ctx context.Context, log logrus.FieldLogger, job *batchv1.Job, req action.Request, reason, change string, warning bool) {
	if h.audit == nil {
		return
	}
	e := audit.Entry{
		Reason: reason, Action: h.name, Change: change, Context: req.KeptnContext,
		Trigger: req.TriggeredID, Problem: req.Problem.ProblemTitle, Warning: warning,
	}
	r := workload.Ref{Kind: "Job", Namespace: job.Namespace, Name: job.Name}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := h.audit.Record(ctx, r, job, e); err != nil {
		log.WithError(err).Warn("audit event not recorded")
	}
}

func reason(o action.Outcome) string {
	if o.Result == action.Pass("").Result {
		return "JobCompleted"
	}
	return "JobFailed"
}

func ref(j *batchv1.Job) string { return "job " + j.Namespace + "/" + j.Name }

// summary says what a Job runs, for dry runs and the audit record: never
// a Secret's value, which the Job does not hold.
func summary(j *batchv1.Job) string {
	c := j.Spec.Template.Spec.Containers[0]
	var b strings.Builder
	fmt.Fprintf(&b, "%s: image %s", ref(j), c.Image)
	if len(c.Command) > 0 {
		fmt.Fprintf(&b, ", command %q", c.Command)
	}
	if len(c.Args) > 0 {
		fmt.Fprintf(&b, ", args %q", c.Args)
	}
	var secrets []string
	for _, e := range c.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			secrets = append(secrets, fmt.Sprintf("%s from Secret %s key %s", e.Name, r.SecretKeyRef.Name, r.SecretKeyRef.Key))
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			secrets = append(secrets, "every key of Secret "+e.SecretRef.Name)
		}
	}
	if len(secrets) > 0 {
		fmt.Fprintf(&b, ", secrets: %s", strings.Join(secrets, "; "))
	}
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			fmt.Fprintf(&b, ", files from ConfigMap %s", v.ConfigMap.Name)
		}
	}
	if d := j.Spec.ActiveDeadlineSeconds; d != nil {
		fmt.Fprintf(&b, ", deadline %s", time.Duration(*d)*time.Second)
	}
	if sa := j.Spec.Template.Spec.ServiceAccountName; sa != "" {
		fmt.Fprintf(&b, ", service account %s", sa)
	}
	return b.String()
}

// sampleRequest is an event for checking templates before any arrives.
func sampleRequest() action.Request {
	return action.Request{
		Action: "sample", Project: "project", Stage: "stage", Service: "service",
		Labels: map[string]string{}, KeptnContext: "00000000-0000-0000-0000-000000000000",
		TriggeredID: "00000000-0000-0000-0000-000000000001",
	}
}

func sampleData() Data {
	d, _ := newData(sampleRequest())
	return d
}

// terminated is the last state of the Job's container in a pod, if known.
func terminated(p *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name != ContainerName {
			continue
		}
		if t := s.State.Terminated; t != nil {
			return t
		}
		return s.LastTerminationState.Terminated
	}
	return nil
}

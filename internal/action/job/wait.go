package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// maxLogBytes bounds the log lines one finished event carries, so that it
// stays far below the 64 KiB Keptn's /event accepts.
const maxLogBytes = 8 << 10

// maxFailures bounds the failed watches and reads in a row before the
// wait gives up; each is followed by a pause one second longer.
const maxFailures = 5

// wait watches the Job until it is Complete or Failed: a read, then a
// watch from the version read, and again when the API server ends the
// watch, which it does every few minutes, or its version has expired.
func (h *Handler) wait(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	jobs := h.client.BatchV1().Jobs(job.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", job.Name).String()
	failures := 0
	for !finished(job) {
		began := time.Now()
		w, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: job.ResourceVersion})
		if err == nil {
			var seen int
			job, seen, err = follow(ctx, w, job)
			if err == nil && finished(job) {
				return job, nil
			}
			if seen > 0 {
				failures = 0 // a watch that worked: the failures were not in a row
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, errGone), errors.Is(err, errReplaced):
			return nil, err
		case err == nil, apierrors.IsResourceExpired(err), apierrors.IsGone(err):
			// The watch ended, or its version is too old: read afresh,
			// but never in a tight loop.
			if time.Since(began) < time.Second {
				if err := h.pause(ctx, time.Second); err != nil {
					return nil, err
				}
			}
		default:
			if failures++; failures > maxFailures {
				return nil, fmt.Errorf("watching it: %w", err)
			}
			if err := h.pause(ctx, time.Duration(failures)*time.Second); err != nil {
				return nil, err
			}
		}
		for {
			got, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
			switch {
			case err == nil && got.UID != job.UID:
				return nil, errReplaced
			case err == nil:
				job = got
			case apierrors.IsNotFound(err):
				return nil, errGone
			case ctx.Err() != nil:
				return nil, ctx.Err()
			default:
				if failures++; failures > maxFailures {
					return nil, fmt.Errorf("reading it: %w", err)
				}
				if err := h.pause(ctx, time.Duration(failures)*time.Second); err != nil {
					return nil, err
				}
				continue
			}
			break
		}
	}
	return job, nil
}

// waitFor waits d, or less if ctx ends first.
func waitFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

var (
	errGone     = errors.New("it was deleted before it finished")
	errReplaced = errors.New("it was replaced by another job of the same name before it finished")
)

// follow reads one watch until the Job finishes or the watch ends, and
// returns the Job as last seen and how many of its changes were seen.
func follow(ctx context.Context, w watch.Interface, job *batchv1.Job) (*batchv1.Job, int, error) {
	defer w.Stop()
	seen := 0
	for {
		var e watch.Event
		select {
		case <-ctx.Done():
			return job, seen, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return job, seen, nil
			}
			e = ev
		}
		switch e.Type {
		case watch.Error:
			return job, seen, fmt.Errorf("watch: %w", apierrors.FromObject(e.Object))
		case watch.Deleted:
			return job, seen, errGone
		case watch.Added, watch.Modified:
			j, ok := e.Object.(*batchv1.Job)
			if !ok || j.Name != job.Name {
				continue
			}
			if j.UID != job.UID {
				return job, seen, errReplaced
			}
			job, seen = j, seen+1
			if finished(job) {
				return job, seen, nil
			}
		}
	}
}

// finished is true once the Job is Complete or Failed. FailureTarget and
// SuccessCriteriaMet come first, while its pods still terminate; only the
// final conditions say that nothing runs any more.
func finished(j *batchv1.Job) bool {
	_, ok := outcome(j)
	return ok
}

// outcome is the Job's final condition: Complete or Failed.
func outcome(j *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}

// decision is how a Job will end, once Kubernetes (1.31 and later) has
// decided it but its pods still stop: SuccessCriteriaMet as Complete,
// FailureTarget as Failed, with its reason.
func decision(j *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobSuccessCriteriaMet:
			c.Type = batchv1.JobComplete
			return c, true
		case batchv1.JobFailureTarget:
			c.Type = batchv1.JobFailed
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}

// report is the outcome of a finished Job, with its container's exit and
// the last lines of its log.
func (h *Handler) report(ctx context.Context, j *batchv1.Job, masker *secret.Masker) action.Outcome {
	c, ok := outcome(j)
	if !ok {
		c, _ = decision(j)
	}
	took := ""
	if s, e := j.Status.StartTime, j.Status.CompletionTime; s != nil && e != nil {
		took = " in " + e.Sub(s.Time).Round(time.Second).String()
	}
	pod, perr := h.lastPod(ctx, j)
	var b strings.Builder
	if c.Type == batchv1.JobComplete {
		fmt.Fprintf(&b, "%s completed%s", ref(j), took)
	} else {
		fmt.Fprintf(&b, "%s failed (%s)", ref(j), orWord(c.Reason, "Failed"))
		if c.Message != "" {
			fmt.Fprintf(&b, ": %s", strings.TrimSuffix(c.Message, "."))
		}
		if pod != nil {
			if t := terminated(pod); t != nil {
				fmt.Fprintf(&b, "; container %s exited with code %d (%s)", ContainerName, t.ExitCode, orWord(t.Reason, "terminated"))
			} else if w := waiting(pod); w != "" {
				fmt.Fprintf(&b, "; container %s never ran: %s", ContainerName, w)
			}
		}
	}
	switch {
	case perr != nil:
		fmt.Fprintf(&b, "; its pod could not be read: %v", perr)
	case pod == nil:
		b.WriteString("; no pod of it is left to read a log from")
	default:
		b.WriteString(h.podTail(ctx, pod, masker))
	}
	msg := h.masker.String(masker.String(b.String()))
	if c.Type == batchv1.JobComplete {
		return action.Pass(msg)
	}
	return action.Fail(msg)
}

// lastPod is the Job's newest pod: with backoffLimit above 0, the one
// whose failure or success ended it.
func (h *Handler) lastPod(ctx context.Context, j *batchv1.Job) (*corev1.Pod, error) {
	list, err := h.client.CoreV1().Pods(j.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: batchv1.ControllerUidLabel + "=" + string(j.UID),
	})
	if err != nil {
		return nil, fmt.Errorf("list the pods of %s: %w", ref(j), err)
	}
	pods := list.Items
	if len(pods) == 0 {
		return nil, nil
	}
	sort.Slice(pods, func(a, b int) bool {
		return pods[a].CreationTimestamp.Before(&pods[b].CreationTimestamp)
	})
	return &pods[len(pods)-1], nil
}

// waiting says why a container never started (ImagePullBackOff,
// CreateContainerConfigError: a missing Secret key), if it did not.
func waiting(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; s.Name == ContainerName && w != nil && w.Reason != "" {
			if w.Message != "" {
				return w.Reason + ": " + w.Message
			}
			return w.Reason
		}
	}
	return ""
}

// tail is the log of a Job that is still running, for a message about it.
func (h *Handler) tail(ctx context.Context, j *batchv1.Job, masker *secret.Masker) string {
	pod, err := h.lastPod(ctx, j)
	if err != nil || pod == nil {
		return ""
	}
	return h.podTail(ctx, pod, masker)
}

// podTail reads the last lines of the container's log, as "; last N log
// lines:\n...", or says why there are none.
func (h *Handler) podTail(ctx context.Context, pod *corev1.Pod, masker *secret.Masker) string {
	if h.spec.logLines == 0 {
		return ""
	}
	raw, err := h.logs.Tail(ctx, pod.Namespace, pod.Name, ContainerName, int64(h.spec.logLines))
	if err != nil {
		return fmt.Sprintf("; its log could not be read: %v", err)
	}
	// A secret cut at the end (a line still being written) is not one the
	// masker can recognise: its start is dropped.
	text := h.masker.String(masker.String(string(raw)))
	lines := clean(h.masker.TrimPartial(masker.TrimPartial(text)))
	if len(lines) == 0 {
		return "; its log is empty"
	}
	if len(lines) > h.spec.logLines {
		lines = lines[len(lines)-h.spec.logLines:]
	}
	// Keep the last lines that fit: the end of a log says how it ended.
	n, size := len(lines), 0
	for n > 0 && size+len(lines[n-1])+1 <= maxLogBytes {
		size += len(lines[n-1]) + 1
		n--
	}
	if n == len(lines) { // one line longer than the bound: keep its end
		last := lines[n-1]
		cut := last[len(last)-(maxLogBytes-len("…")):]
		for len(cut) > 0 && !utf8.RuneStart(cut[0]) {
			cut = cut[1:]
		}
		lines[n-1] = "…" + cut
		n--
	}
	kept := lines[n:]
	noun := "lines"
	if len(kept) == 1 {
		noun = "line"
	}
	return fmt.Sprintf("; last %d log %s of pod %s:\n%s", len(kept), noun, pod.Name, strings.Join(kept, "\n"))
}

// clean splits a log into lines, dropping control characters (a terminal
// escape has no place in the Bridge) and invalid UTF-8.
func clean(s string) []string {
	s = strings.ToValidUTF8(s, "�")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, s)
	s = strings.TrimRight(s, "\n")
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

// LogReader reads the last lines of a container's log.
type LogReader interface {
	Tail(ctx context.Context, namespace, pod, container string, lines int64) ([]byte, error)
}

// apiLogs reads logs through the API server, as `kubectl logs --tail` does.
type apiLogs struct{ client kube.Interface }

func (a apiLogs) Tail(ctx context.Context, namespace, pod, container string, lines int64) ([]byte, error) {
	// No LimitBytes: it would keep the start of the tail, and the end of a
	// log is what says how it ended. The last bytes are kept instead.
	r, err := a.client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, TailLines: &lines,
	}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return lastBytes(r, 4*maxLogBytes)
}

// lastBytes reads r to its end and returns its last n bytes, from the
// start of a line when it had to cut.
func lastBytes(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, 2*n)
	chunk := make([]byte, 32<<10)
	cut := false
	for {
		k, err := r.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if len(buf) > n {
			buf = append(buf[:0], buf[len(buf)-n:]...)
			cut = true
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if cut {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return buf, nil
}

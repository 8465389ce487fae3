package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Defaults of Options.
const (
	DefaultTimeout  = 2 * time.Minute
	DefaultInterval = 500 * time.Millisecond
)

// Options tune Wait.
type Options struct {
	Timeout time.Duration // 0 means DefaultTimeout
	// Interval is how long Wait waits before reading again after a failed
	// read or watch, or before judging again after a failed judgement; 0
	// means DefaultInterval. Changes themselves arrive by watch, at once.
	Interval time.Duration
	// Replicas, when set, is the spec.replicas to wait for first: an
	// autoscaler, not the action, is moving it.
	Replicas *int32
	// Pods also requires the desired number of the workload's own pods to
	// be ready and none to be terminating. Evicting pods leaves the
	// workload's status as it was until its controller notices, so the
	// status alone would call the rollout done before it began.
	Pods bool
	// Dynamic reads the kinds of other tools (an Argo Rollout); nil where
	// there is none, and a Rollout then cannot be judged.
	Dynamic dynamic.Interface
}

// Report is how a wait ended.
type Report struct {
	Converged bool
	Elapsed   time.Duration
	// Summary says it for a person: "rollout converged in 3.2s: 3/3 pods
	// ready", or why not, naming the pods that hold it up.
	Summary string
}

// resyncParts is how many times within its timeout a wait lists a source
// afresh whose watch has been quiet: the fallback for a watch that broke
// without closing, bounded whatever the rollout does.
const resyncParts = 4

// Wait watches the workload (and, with Pods, its pods) and judges the
// rollout on every change, as `kubectl rollout status` does, until it
// converges, fails, or the timeout passes. The last two are a Report that
// did not converge, not an error: the rollout was judged, and the
// judgement is no.
//
// The requests it makes do not grow with the rollout: a list and a watch
// of the workload (by a field selector on its name); with Pods, also of
// its pods and, for a Deployment or a Rollout, of its ReplicaSets (by its
// label selector). More only when a watch fails, expires, or stays quiet
// for a quarter of the timeout, so that a watch broken without closing
// costs at most that long.
//
// The error is for when the rollout could not be judged: ctx ended (the
// error wraps ctx.Err()), the workload is gone or may not be read, or the
// API server failed every read until the timeout. An error after a
// successful read is taken as transient and the read tried again after
// Interval.
func Wait(ctx context.Context, c kube.Interface, ref workload.Ref, opts Options) (Report, error) {
	timeout, interval := opts.Timeout, opts.Interval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	resync := max(timeout/resyncParts, interval)
	begin := time.Now()
	deadline := begin.Add(timeout)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	fail := func(err error) (Report, error) {
		return Report{Elapsed: time.Since(begin)}, fmt.Errorf("wait for the rollout of %s: %w", ref, err)
	}
	w, err := newWatcher(c, opts.Dynamic, ref)
	if err != nil {
		return fail(err)
	}
	defer w.stop()

	var (
		timer     *time.Timer
		last      Status
		seen      bool
		lastErr   error
		dirty     bool      // something changed since the last judgement
		rejudgeAt time.Time // after a failed judgement
	)
	// readErr notes a failed read and says whether it ends the wait.
	readErr := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case permanent(err):
			return err
		case lastErr == nil || (wctx.Err() == nil && time.Now().Before(deadline)):
			// Keep an answer of the API server over the deadline that
			// cut the next request short (the clock, not wctx alone,
			// since a loaded machine fires wctx's timer late).
			lastErr = err
		}
		return nil
	}
	for {
		now := time.Now()
		for _, s := range w.sources() {
			if wctx.Err() != nil || !s.due(now, resync) {
				continue
			}
			changed, err := s.start(wctx, interval)
			dirty = dirty || changed
			if err != nil {
				if err := readErr(err); err != nil {
					return fail(err)
				}
			}
		}
		obj, err := w.object()
		if err != nil {
			return fail(err)
		}
		if obj != nil && opts.Pods && w.pods == nil {
			if err := w.followPods(obj); err != nil {
				return fail(err)
			}
			continue // start them before judging
		}

		if obj != nil && dirty && !now.Before(rejudgeAt) {
			s, err := w.judge(wctx, obj, opts.Replicas)
			if err == nil && s.Done && opts.Pods {
				s = podsReady(ref, s, w.ownedPods)
			}
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			switch {
			case err == nil:
				last, seen, dirty = s, true, false
			default:
				if err := readErr(err); err != nil {
					return fail(err)
				}
				rejudgeAt = now.Add(interval)
			}
			switch {
			case err == nil && s.Done:
				elapsed := time.Since(begin)
				summary := fmt.Sprintf("rollout converged in %s: %d/%d pods ready", roundElapsed(elapsed), s.Ready, s.Desired)
				if isOnDelete(s) {
					summary += " (" + onDeleteNote + ")"
				}
				return Report{Converged: true, Elapsed: elapsed, Summary: summary}, nil
			case err == nil && s.Failed:
				return Report{Elapsed: time.Since(begin), Summary: capSummary(s.Message + "; " + why(ctx, c, ref, s))}, nil
			}
		}

		// Sleep until an event, a source or a judgement is due, or the end.
		next := time.Time{}
		for _, s := range w.sources() {
			if t := s.next(resync); next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if dirty && (next.IsZero() || rejudgeAt.Before(next)) {
			next = rejudgeAt
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(next))
			defer timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		var (
			src *source
			ev  watch.Event
			ok  bool
		)
		select {
		case ev, ok = <-w.self.events():
			src = w.self
		case ev, ok = <-w.rsEvents():
			src = w.rs
		case ev, ok = <-w.podEvents():
			src = w.pods
		case <-timer.C:
			continue
		case <-wctx.Done():
		}
		if src != nil {
			changed, err := src.apply(ev, ok, interval)
			dirty = dirty || changed
			if err != nil {
				if err := readErr(err); err != nil {
					return fail(err)
				}
			}
			continue
		}

		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if !seen {
			return fail(fmt.Errorf("no successful read in %s: %w", timeout, lastErr))
		}
		summary := fmt.Sprintf("not converged after %s: %s; %s", timeout, why(ctx, c, ref, last), last.Message)
		return Report{Elapsed: time.Since(begin), Summary: capSummary(summary)}, nil
	}
}

// podsReady keeps s done only if the workload's own pods agree: as many
// ready as desired, none terminating.
func podsReady(ref workload.Ref, s Status, owned func() ([]*corev1.Pod, bool)) Status {
	pods, listed := owned()
	if !listed {
		s.Done = false
		s.Message = fmt.Sprintf("waiting for the pods of %s to be listed", ref)
		return s
	}
	var ready, terminating int32
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil:
			terminating++
		case podCondition(p, corev1.PodReady) != nil && podCondition(p, corev1.PodReady).Status == corev1.ConditionTrue:
			ready++
		}
	}
	if ready < s.Desired || terminating > 0 {
		s.Done, s.Ready = false, ready
		s.Message = fmt.Sprintf("waiting for the pods of %s to be replaced: %d of %d ready, %d terminating", ref, ready, s.Desired, terminating)
	}
	return s
}

// permanent reports whether asking again cannot help: the workload is
// gone, the provider may not read it, or its kind has no rollout.
func permanent(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || errors.Is(err, errUnsupportedKind) || errors.Is(err, workload.ErrNoDynamic)
}

// isOnDelete reports whether s judged a workload whose pods change only
// when deleted, which a converged Summary must not hide.
func isOnDelete(s Status) bool {
	return strings.HasSuffix(s.Message, "("+onDeleteNote+")")
}

// roundElapsed keeps a duration readable: "3.2s", "12ms".
func roundElapsed(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Defaults of Options.
const (
	DefaultTimeout  = 2 * time.Minute
	DefaultInterval = 500 * time.Millisecond
)

// Options tune Wait.
type Options struct {
	Timeout  time.Duration // 0 means DefaultTimeout
	Interval time.Duration // 0 means DefaultInterval
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

// Wait polls Check every interval until the rollout converges, fails, or
// the timeout passes. The last two are a Report that did not converge, not
// an error: the rollout was judged, and the judgement is no.
//
// The error is for when the rollout could not be judged: ctx ended (the
// error wraps ctx.Err()), the workload is gone or may not be read, or the
// API server failed every read until the timeout. An error after a
// successful read is taken as transient and tried again on the next tick.
func Wait(ctx context.Context, c kubernetes.Interface, ref workload.Ref, opts Options) (Report, error) {
	timeout, interval := opts.Timeout, opts.Interval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	begin := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		timer   *time.Timer
		last    Status
		seen    bool
		lastErr error
	)
	for {
		s, err := CheckWith(wctx, c, opts.Dynamic, ref, opts.Replicas)
		if err == nil && s.Done && opts.Pods {
			s, err = podsReady(wctx, c, ref, s)
		}
		if ctx.Err() != nil {
			return Report{Elapsed: time.Since(begin)}, fmt.Errorf("wait for the rollout of %s: %w", ref, ctx.Err())
		}
		switch {
		case err == nil:
			last, seen = s, true
		case permanent(err):
			return Report{Elapsed: time.Since(begin)}, fmt.Errorf("wait for the rollout of %s: %w", ref, err)
		case wctx.Err() == nil || lastErr == nil:
			// Keep an answer of the API server over the deadline that
			// cut the next request short.
			lastErr = err
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

		if timer == nil {
			timer = time.NewTimer(interval)
			defer timer.Stop()
		} else {
			timer.Reset(interval)
		}
		select {
		case <-timer.C:
			continue
		case <-wctx.Done():
		}
		if ctx.Err() != nil {
			return Report{Elapsed: time.Since(begin)}, fmt.Errorf("wait for the rollout of %s: %w", ref, ctx.Err())
		}
		if !seen {
			return Report{Elapsed: time.Since(begin)}, fmt.Errorf("wait for the rollout of %s: no successful read in %s: %w", ref, timeout, lastErr)
		}
		summary := fmt.Sprintf("not converged after %s: %s; %s", timeout, why(ctx, c, ref, last), last.Message)
		return Report{Elapsed: time.Since(begin), Summary: capSummary(summary)}, nil
	}
}

// podsReady keeps s done only if the workload's own pods agree: as many
// ready as desired, none terminating.
func podsReady(ctx context.Context, c kubernetes.Interface, ref workload.Ref, s Status) (Status, error) {
	pods, err := workload.Pods(ctx, c, ref)
	if err != nil {
		return s, err
	}
	var ready, terminating int32
	for i := range pods {
		switch {
		case pods[i].DeletionTimestamp != nil:
			terminating++
		case podCondition(&pods[i], corev1.PodReady) != nil && podCondition(&pods[i], corev1.PodReady).Status == corev1.ConditionTrue:
			ready++
		}
	}
	if ready < s.Desired || terminating > 0 {
		s.Done, s.Ready = false, ready
		s.Message = fmt.Sprintf("waiting for the pods of %s to be replaced: %d of %d ready, %d terminating", ref, ready, s.Desired, terminating)
	}
	return s, nil
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

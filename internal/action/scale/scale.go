// Package scale implements the "scale" remediation action: change the
// replica count of a Deployment, StatefulSet or Argo Rollout through its
// scale subresource, as kubectl scale does, within configured bounds. When
// a HorizontalPodAutoscaler drives the workload, setting replicas would be
// undone at its next sync, so the action moves the autoscaler's floor
// (minReplicas) instead; when a KEDA ScaledObject drives it, the action
// pauses the ScaledObject at the count for a bounded time (package keda).
package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Name is the action's name in a remediation.yaml.
const Name = "scale"

// DefaultMaxReplicas is the upper bound New applies when Options leaves
// MaxReplicas at 0, so that a runaway remediation loop cannot scale a
// workload without limit.
const DefaultMaxReplicas = 50

// The environment variables that set the bounds, named in refusals so that
// whoever reads one knows which setting to change.
const (
	EnvMinReplicas = "SCALE_MIN_REPLICAS"
	EnvMaxReplicas = "SCALE_MAX_REPLICAS"
	EnvMaxStep     = "SCALE_MAX_STEP"
)

// Options bound the replica counts the action may set.
type Options struct {
	// MinReplicas is the fewest replicas the action leaves a workload with.
	// 0, the default, allows scaling to zero.
	MinReplicas int32
	// MaxReplicas is the most replicas the action gives a workload.
	// 0 means DefaultMaxReplicas.
	MaxReplicas int32
	// MaxStep is the largest change of one action, up or down. 0 means
	// no limit besides the bounds.
	MaxStep int32
	// KEDAPause is how long a KEDA ScaledObject stays paused at the count
	// asked for, unless the value's "kedaPause" says otherwise. 0 means
	// keda.DefaultPause.
	KEDAPause time.Duration
}

// Handler is the scale action.
type Handler struct {
	pipeline *pipeline.Pipeline
	opts     Options
	now      func() time.Time
}

var _ action.Handler = (*Handler)(nil)

// New returns the scale action acting through p. It applies the defaults
// of Options and refuses a negative bound or a maximum below the minimum.
func New(p *pipeline.Pipeline, opts Options) (*Handler, error) {
	if p == nil || p.Client == nil {
		return nil, errors.New("scale action: no Kubernetes client")
	}
	if opts.MinReplicas < 0 || opts.MaxStep < 0 {
		return nil, fmt.Errorf("scale action: %s (%d) and %s (%d) cannot be negative",
			EnvMinReplicas, opts.MinReplicas, EnvMaxStep, opts.MaxStep)
	}
	var defaulted string
	if opts.MaxReplicas == 0 {
		opts.MaxReplicas = DefaultMaxReplicas
		defaulted = ", the default"
	}
	if opts.KEDAPause < 0 || opts.KEDAPause > keda.MaxPause {
		return nil, fmt.Errorf("scale action: the KEDA pause (%s) is not between 0 and %s", opts.KEDAPause, keda.MaxPause)
	}
	if opts.KEDAPause == 0 {
		opts.KEDAPause = keda.DefaultPause
	}
	if opts.MaxReplicas < opts.MinReplicas {
		return nil, fmt.Errorf("scale action: %s (%d%s) is below %s (%d)",
			EnvMaxReplicas, opts.MaxReplicas, defaulted, EnvMinReplicas, opts.MinReplicas)
	}
	return &Handler{pipeline: p, opts: opts, now: time.Now}, nil
}

// Options returns the bounds in force, defaults applied.
func (h *Handler) Options() Options { return h.opts }

// Run scales the workload the request targets. See parseValue for the forms
// of the value and workload.Resolve for how the workload is found.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	v, err := parseValue(req.Value)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w; %s", actionName(req), err, acceptedForms)
	}
	// Refuse an unscalable kind before looking anything up, so that the
	// error says why rather than that the object is missing.
	if v.Kind != "" {
		k, err := workload.ParseKind(v.Kind)
		if err != nil {
			return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w", actionName(req), err)
		}
		if err := scalable(k); err != nil {
			return action.Outcome{}, err
		}
	}
	pause := h.opts.KEDAPause
	if v.kedaPause > 0 {
		pause = v.kedaPause
	}
	return h.pipeline.Run(ctx, Name, req, v.Options, mutator{
		client: h.pipeline.Client, dynamic: h.pipeline.Dynamic, opts: h.opts, change: v.change, kedaPause: pause, now: h.now,
	})
}

// mutator scales one workload.
type mutator struct {
	client  kube.Interface
	dynamic dynamic.Interface // Argo Rollouts and KEDA; nil where there is none
	opts    Options
	change  change
	// kedaPause is how long a KEDA ScaledObject stays paused; now the clock
	// it is counted from.
	kedaPause time.Duration
	now       func() time.Time
}

// scaler is the scale subresource of one kind of workload; the typed
// clients of Deployments and StatefulSets both provide it.
type scaler interface {
	GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error)
	UpdateScale(ctx context.Context, name string, s *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error)
}

// Mutate sets the count, or the autoscaler's floor when one drives the
// workload, or pauses the KEDA ScaledObject that drives it at the count.
//
// The count is read, changed and written back with the resourceVersion it
// was read at; if another writer got in between, the whole step is repeated
// from a fresh read, so a relative change applies to the count that is
// really there.
func (m mutator) Mutate(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	sc, err := m.scaler(ref)
	if err != nil {
		return pipeline.Change{}, err
	}
	so, err := m.scaledObject(ctx, ref)
	if err != nil {
		return pipeline.Change{}, err
	}
	if so != nil {
		return m.kedaPaused(ctx, ref, sc, dryRun)
	}
	hpa, err := m.autoscaler(ctx, ref)
	if err != nil {
		return pipeline.Change{}, err
	}
	if hpa != nil {
		if owner := kedaOwner(hpa); owner != "" {
			return pipeline.Change{}, refuseKEDA(ref, hpa, owner)
		}
		return m.autoscaled(ctx, ref, sc, hpa.Name, dryRun)
	}

	var from, to int32
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// Fake and sandbox clients ignore ctx; a real one would fail the
		// request anyway. Checking here also stops the retries.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scale %s: %w", ref, err)
		}
		s, err := sc.GetScale(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the replica count of %s: %w", ref, err)
		}
		from = s.Spec.Replicas
		if to, err = m.desired(from, ref.String()); err != nil {
			return err
		}
		if to == from || dryRun {
			return nil
		}
		s.Spec.Replicas = to
		if _, err := sc.UpdateScale(ctx, ref.Name, s, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("scale %s from %d to %s: %w", ref, from, replicas(to), err)
		}
		return nil
	})
	if err != nil {
		return pipeline.Change{}, err
	}
	c := pipeline.Change{Reason: "Scaled", Before: replicas(from), After: replicas(to), Replicas: &to}
	switch {
	case to == from:
		c.Message = fmt.Sprintf("%s already has %s; nothing to do", ref, replicas(from))
	case dryRun:
		c.Message = fmt.Sprintf("would scale %s from %d to %s", ref, from, replicas(to))
	default:
		c.Message = fmt.Sprintf("scaled %s from %d to %s", ref, from, replicas(to))
		c.Changed, c.Rollout = true, true
	}
	return c, nil
}

// autoscaled moves the floor of the autoscaler named hpa to the count the
// change asks for, raising its ceiling too when the floor would pass it.
// Going up, the autoscaler brings the workload to the new floor at its
// next sync, and verification waits for that. Going down, a lower floor
// only allows the autoscaler to go lower when the load does, so there is
// nothing to wait for.
func (m mutator) autoscaled(ctx context.Context, ref workload.Ref, sc scaler, hpa string, dryRun bool) (pipeline.Change, error) {
	client := m.client.AutoscalingV2().HorizontalPodAutoscalers(ref.Namespace)
	var (
		from, to, oldMin, oldMax, newMax int32
	)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scale %s: %w", ref, err)
		}
		s, err := sc.GetScale(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the replica count of %s: %w", ref, err)
		}
		h, err := client.Get(ctx, hpa, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read horizontalpodautoscaler %s/%s: %w", ref.Namespace, hpa, err)
		}
		from, oldMax = s.Spec.Replicas, h.Spec.MaxReplicas
		oldMin = 1
		if h.Spec.MinReplicas != nil {
			oldMin = *h.Spec.MinReplicas
		}
		// The floor is what changes, so a relative change moves it from
		// where it is: "-1" on 5 replicas above a floor of 2 lowers the
		// floor to 1, it does not raise it to 4. An absolute count is the
		// new floor.
		if to, err = m.desired(oldMin, floorOf(ref, hpa)); err != nil {
			return err
		}
		if to < 1 {
			return action.Refuse("autoscaler floor", "%s is autoscaled by horizontalpodautoscaler %s, whose minReplicas cannot be below 1", ref, hpa)
		}
		newMax = max(oldMax, to)
		if to == oldMin || dryRun {
			return nil
		}
		h.Spec.MinReplicas, h.Spec.MaxReplicas = &to, newMax
		if _, err := client.Update(ctx, h, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("set minReplicas of horizontalpodautoscaler %s/%s to %d: %w", ref.Namespace, hpa, to, err)
		}
		return nil
	})
	if err != nil {
		return pipeline.Change{}, err
	}

	bounds := func(lo, hi int32) string {
		return fmt.Sprintf("autoscaler %s minReplicas %d, maxReplicas %d", hpa, lo, hi)
	}
	c := pipeline.Change{Reason: "Scaled", Before: bounds(oldMin, oldMax), After: bounds(to, newMax)}
	what := fmt.Sprintf("%s is autoscaled by horizontalpodautoscaler %s, so its minReplicas was set instead of the replicas: %d → %d",
		ref, hpa, oldMin, to)
	if newMax != oldMax {
		what += fmt.Sprintf(" (maxReplicas raised %d → %d to make room)", oldMax, newMax)
	}
	switch {
	case to == oldMin:
		c.Message = fmt.Sprintf("%s is autoscaled by horizontalpodautoscaler %s, whose minReplicas is already %d; nothing to do", ref, hpa, to)
		return c, nil
	case dryRun:
		c.Message = "would scale: " + strings.Replace(what, "was set", "would be set", 1)
		return c, nil
	}
	c.Changed = true
	c.Message = "scaled: " + what
	switch {
	case to > from:
		c.Rollout, c.Replicas = true, &to
		c.Message += fmt.Sprintf("; the autoscaler takes it from %d to %s", from, replicas(to))
	case to < oldMin:
		c.Message += fmt.Sprintf("; it has %s now, and the autoscaler goes lower only as the load allows", replicas(from))
	default:
		c.Message += fmt.Sprintf("; it has %s now, at or above the new floor, so the autoscaler keeps them while the load needs them", replicas(from))
	}
	return c, nil
}

// floorOf names an autoscaler's floor in refusals.
func floorOf(ref workload.Ref, hpa string) string {
	return fmt.Sprintf("the minReplicas of horizontalpodautoscaler %s/%s (autoscaling %s)", ref.Namespace, hpa, ref)
}

// autoscaler finds the HorizontalPodAutoscaler whose target is ref, if any.
func (m mutator) autoscaler(ctx context.Context, ref workload.Ref) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	list, err := m.client.AutoscalingV2().HorizontalPodAutoscalers(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("look for an autoscaler of %s: %w", ref, err)
	}
	for i, h := range list.Items {
		t := h.Spec.ScaleTargetRef
		gv, _ := schema.ParseGroupVersion(t.APIVersion)
		if t.Kind == string(ref.Kind) && t.Name == ref.Name && gv.Group == ref.Kind.Group() {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// scaler returns the scale subresource client for ref's kind.
func (m mutator) scaler(ref workload.Ref) (scaler, error) {
	switch ref.Kind {
	case workload.Deployment:
		return m.client.AppsV1().Deployments(ref.Namespace), nil
	case workload.StatefulSet:
		return m.client.AppsV1().StatefulSets(ref.Namespace), nil
	case workload.Rollout:
		return newRolloutScaler(m.dynamic, ref)
	}
	return nil, scalable(ref.Kind)
}

// scalable says why a kind has no scale subresource, or nil if it has one.
func scalable(k workload.Kind) error {
	switch k {
	case workload.Deployment, workload.StatefulSet, workload.Rollout:
		return nil
	case workload.DaemonSet:
		return errors.New("a daemonset cannot be scaled: it runs one pod on each eligible node")
	}
	return fmt.Errorf("a %s cannot be scaled", strings.ToLower(string(k)))
}

// desired applies the change to current, the count being changed (a
// workload's replicas, or its autoscaler's floor, as what names), and
// checks the result against the bounds and the largest step.
func (m mutator) desired(current int32, what string) (int32, error) {
	n := m.change.apply(current)
	switch {
	case n < int64(m.opts.MinReplicas):
		return 0, action.Refuse("minimum replicas", "scaling %s from %d to %d replicas is below the minimum of %d (%s)",
			what, current, n, m.opts.MinReplicas, EnvMinReplicas)
	case n > int64(m.opts.MaxReplicas):
		return 0, action.Refuse("maximum replicas", "scaling %s from %d to %d replicas is above the maximum of %d (%s)",
			what, current, n, m.opts.MaxReplicas, EnvMaxReplicas)
	case m.opts.MaxStep > 0 && (n-int64(current) > int64(m.opts.MaxStep) || int64(current)-n > int64(m.opts.MaxStep)):
		return 0, action.Refuse("maximum step", "scaling %s from %d to %d replicas changes more than %d at once (%s)",
			what, current, n, m.opts.MaxStep, EnvMaxStep)
	}
	return int32(n), nil
}

// actionName is the name the remediation used, which may be an alias such
// as "scaling".
func actionName(req action.Request) string {
	if req.Action == "" {
		return Name
	}
	return req.Action
}

// replicas counts replicas in English.
func replicas(n int32) string {
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// Validate checks a value as Run would, without a cluster.
func (h *Handler) Validate(value json.RawMessage) error {
	v, err := parseValue(value)
	if err != nil {
		return fmt.Errorf("%w; %s", err, acceptedForms)
	}
	if v.Kind != "" {
		k, err := workload.ParseKind(v.Kind)
		if err != nil {
			return err
		}
		return scalable(k)
	}
	return nil
}

// Package scale implements the "scale" remediation action: change the
// replica count of a Deployment or StatefulSet through its scale
// subresource, as kubectl scale does, within configured bounds.
package scale

import (
	"context"
	"errors"
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// DefaultMaxReplicas is the upper bound New applies when Options leaves
// MaxReplicas at 0, so that a runaway remediation loop cannot scale a
// workload without limit.
const DefaultMaxReplicas = 50

// The environment variables that set the bounds, named in refusals so that
// whoever reads one knows which setting to change. The configuration that
// fills Options should read these.
const (
	EnvMinReplicas = "SCALE_MIN_REPLICAS"
	EnvMaxReplicas = "SCALE_MAX_REPLICAS"
)

// Options bound the replica counts the action may set.
type Options struct {
	// MinReplicas is the fewest replicas the action leaves a workload with.
	// 0, the default, allows scaling to zero.
	MinReplicas int32
	// MaxReplicas is the most replicas the action gives a workload.
	// 0 means DefaultMaxReplicas.
	MaxReplicas int32
}

// Handler is the scale action.
type Handler struct {
	client kubernetes.Interface
	opts   Options
}

var _ action.Handler = (*Handler)(nil)

// New returns the scale action acting through c. It applies the defaults
// of Options and refuses a negative minimum or a maximum below the minimum.
func New(c kubernetes.Interface, opts Options) (*Handler, error) {
	if c == nil {
		return nil, errors.New("scale action: nil Kubernetes client")
	}
	if opts.MinReplicas < 0 {
		return nil, fmt.Errorf("scale action: %s is %d; it cannot be negative", EnvMinReplicas, opts.MinReplicas)
	}
	var defaulted string
	if opts.MaxReplicas == 0 {
		opts.MaxReplicas = DefaultMaxReplicas
		defaulted = ", the default"
	}
	if opts.MaxReplicas < opts.MinReplicas {
		return nil, fmt.Errorf("scale action: %s (%d%s) is below %s (%d)",
			EnvMaxReplicas, opts.MaxReplicas, defaulted, EnvMinReplicas, opts.MinReplicas)
	}
	return &Handler{client: c, opts: opts}, nil
}

// Options returns the bounds in force, defaults applied.
func (h *Handler) Options() Options { return h.opts }

// scaler is the scale subresource of one kind of workload; the typed
// clients of Deployments and StatefulSets both provide it.
type scaler interface {
	GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error)
	UpdateScale(ctx context.Context, name string, s *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error)
}

// Run scales the workload the request targets. See parseValue for the forms
// of the value and workload.Resolve for how the workload is found.
//
// The count is read, changed and written back with the resourceVersion it
// was read at; if another writer got in between, the whole step is repeated
// from a fresh read, so a relative change applies to the count that is
// really there.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return action.Outcome{}, fmt.Errorf("scale: %w", err)
	}
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
	ref, err := workload.Resolve(ctx, h.client, req, v.Selector)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("find the workload to scale: %w", err)
	}
	sc, err := h.scaler(ref)
	if err != nil {
		return action.Outcome{}, err
	}
	dryRun := req.DryRun || v.dryRun

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
		if to, err = h.desired(ref, from, v.change); err != nil {
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
		return action.Outcome{}, err
	}

	switch {
	case to == from:
		return action.Pass(fmt.Sprintf("%s already has %s; nothing to do", ref, replicas(from))), nil
	case dryRun:
		return action.Pass(fmt.Sprintf("dry run: would scale %s from %d to %s", ref, from, replicas(to))), nil
	default:
		return action.Pass(fmt.Sprintf("scaled %s from %d to %s", ref, from, replicas(to))), nil
	}
}

// scaler returns the scale subresource client for ref's kind.
func (h *Handler) scaler(ref workload.Ref) (scaler, error) {
	switch ref.Kind {
	case workload.Deployment:
		return h.client.AppsV1().Deployments(ref.Namespace), nil
	case workload.StatefulSet:
		return h.client.AppsV1().StatefulSets(ref.Namespace), nil
	}
	return nil, scalable(ref.Kind)
}

// scalable says why a kind has no scale subresource, or nil if it has one.
func scalable(k workload.Kind) error {
	switch k {
	case workload.Deployment, workload.StatefulSet:
		return nil
	case workload.DaemonSet:
		return errors.New("a daemonset cannot be scaled: it runs one pod on each eligible node")
	}
	return fmt.Errorf("a %s cannot be scaled", strings.ToLower(string(k)))
}

// desired applies c to current and checks the result against the bounds.
func (h *Handler) desired(ref workload.Ref, current int32, c change) (int32, error) {
	n := c.apply(current)
	switch {
	case n < int64(h.opts.MinReplicas):
		return 0, fmt.Errorf("refused: scaling %s from %d to %d replicas is below the minimum of %d (%s)",
			ref, current, n, h.opts.MinReplicas, EnvMinReplicas)
	case n > int64(h.opts.MaxReplicas):
		return 0, fmt.Errorf("refused: scaling %s from %d to %d replicas is above the maximum of %d (%s)",
			ref, current, n, h.opts.MaxReplicas, EnvMaxReplicas)
	}
	return int32(n), nil
}

// actionName is the name the remediation used, which may be an alias such
// as "scaling".
func actionName(req action.Request) string {
	if req.Action == "" {
		return "scale"
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

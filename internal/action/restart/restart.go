// Package restart implements the "restart" remediation action: a rollout
// restart of a Deployment, StatefulSet or DaemonSet, done the way
// `kubectl rollout restart` does it, by stamping the pod template with the
// annotation kubectl.kubernetes.io/restartedAt. The controller then
// replaces every pod under the workload's own rollout strategy, so
// PodDisruptionBudgets, maxUnavailable and readiness all apply.
package restart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Name is the action's name in a remediation.yaml.
const Name = "restart"

// Annotation is kubectl's: a restart by kubectl and one by us look alike in
// the pod template, and either one is visible to the other's tools.
const Annotation = "kubectl.kubernetes.io/restartedAt"

// FieldManager is the manager of the restart's field. It must not start
// with "kubectl": Flux's kustomize-controller takes over the fields of
// such managers and removes the annotation at its next apply, which rolls
// the pods a second time (flux2#2888).
const FieldManager = "keptn-action-provider"

// AcceptedForms is appended to every value error.
const AcceptedForms = `no value (restart the service's workload), or an object with ` + pipeline.OptionKeys

// Handler is the restart action.
type Handler struct {
	pipeline *pipeline.Pipeline
	now      func() time.Time
}

var _ action.Handler = (*Handler)(nil)

// New returns the restart action, acting through p.
func New(p *pipeline.Pipeline) *Handler { return &Handler{pipeline: p, now: time.Now} }

// Run restarts the workload the request targets.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	opts, err := parseValue(req.Value)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w; accepted forms: %s", req.Action, err, AcceptedForms)
	}
	return h.pipeline.Run(ctx, Name, req, opts, mutator{client: h.pipeline.Client, dynamic: h.pipeline.Dynamic, now: h.now})
}

// parseValue reads the value: nothing, or the common options.
func parseValue(raw json.RawMessage) (pipeline.Options, error) {
	var opts pipeline.Options
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) || bytes.Equal(raw, []byte(`""`)) {
		return opts, nil
	}
	if raw[0] != '{' {
		var v any
		if err := action.Decode(raw, &v, false); err != nil {
			return opts, err
		}
		return opts, fmt.Errorf("a value of type %s is not understood", action.JSONType(v))
	}
	return opts, action.Decode(raw, &opts, true)
}

type mutator struct {
	client  kube.Interface
	dynamic dynamic.Interface // Argo Rollouts; nil where there is none
	now     func() time.Time
}

// Mutate patches the restart annotation into the pod template, with the
// same strategic merge patch kubectl sends.
func (m mutator) Mutate(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	if ref.Kind == workload.Rollout {
		return m.restartRollout(ctx, ref, dryRun)
	}
	previous, err := m.state(ctx, ref)
	if err != nil {
		return pipeline.Change{}, err
	}
	before := "last restarted " + previous
	if previous == "" {
		before = "never restarted"
	}
	stamp := m.now().UTC().Format(time.RFC3339)
	change := pipeline.Change{Reason: "Restarted", Before: before, After: "restarted at " + stamp, Rollout: true}
	if dryRun {
		change.Message = fmt.Sprintf("would restart %s (%s)", ref, before)
		return change, nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{Annotation: stamp}},
	}}})
	if err != nil {
		return pipeline.Change{}, fmt.Errorf("restart %s: %w", ref, err)
	}
	switch ref.Kind {
	case workload.Deployment:
		_, err = m.client.AppsV1().Deployments(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	case workload.StatefulSet:
		_, err = m.client.AppsV1().StatefulSets(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	case workload.DaemonSet:
		_, err = m.client.AppsV1().DaemonSets(ref.Namespace).Patch(ctx, ref.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	}
	if err != nil {
		return pipeline.Change{}, fmt.Errorf("restart %s: %w", ref, err)
	}
	change.Changed = true
	change.Message = fmt.Sprintf("restarted %s (%s)", ref, before)
	return change, nil
}

// state reads the current restart stamp, and refuses what kubectl refuses:
// a paused deployment, whose restart would wait for a resume nobody asked
// for.
func (m mutator) state(ctx context.Context, ref workload.Ref) (string, error) {
	var annotations map[string]string
	switch ref.Kind {
	case workload.Deployment:
		d, err := m.client.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get %s: %w", ref, err)
		}
		if d.Spec.Paused {
			return "", fmt.Errorf("cannot restart %s: it is paused; resume it first (kubectl rollout resume)", ref)
		}
		annotations = d.Spec.Template.Annotations
	case workload.StatefulSet:
		s, err := m.client.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get %s: %w", ref, err)
		}
		annotations = s.Spec.Template.Annotations
	case workload.DaemonSet:
		ds, err := m.client.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get %s: %w", ref, err)
		}
		annotations = ds.Spec.Template.Annotations
	default:
		return "", errors.New("a " + string(ref.Kind) + " cannot be restarted")
	}
	return annotations[Annotation], nil
}

// Validate checks a value as Run would, without a cluster.
func (h *Handler) Validate(value json.RawMessage) error {
	opts, err := parseValue(value)
	if err != nil {
		return fmt.Errorf("%w; accepted forms: %s", err, AcceptedForms)
	}
	if opts.Kind != "" {
		_, err = workload.ParseKind(opts.Kind)
	}
	return err
}

package restart

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// restartRollout restarts an Argo Rollout as `kubectl argo rollouts
// restart` does: a merge patch of spec.restartAt to now. The Rollout's
// controller then evicts the pods created before that time, a few at a
// time, within its maxUnavailable. The patch carries the resourceVersion
// of the read its "before" comes from; on a Conflict it is worked out
// again.
func (m mutator) restartRollout(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	stamp := m.now().UTC().Format(time.RFC3339)
	change := pipeline.Change{Reason: "Restarted", After: "restartAt " + stamp, Rollout: true}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restart %s: %w", ref, err)
		}
		u, ro, err := workload.GetRollout(ctx, m.dynamic, ref)
		if err != nil {
			return fmt.Errorf("get %s: %w", ref, err)
		}
		change.Before = "never restarted"
		if ro.Spec.RestartAt != nil {
			change.Before = "last restarted " + ro.Spec.RestartAt.UTC().Format(time.RFC3339)
		}
		if dryRun {
			return nil
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()},
			"spec":     map[string]any{"restartAt": stamp},
		})
		if err != nil {
			return fmt.Errorf("restart %s: %w", ref, err)
		}
		_, err = m.dynamic.Resource(workload.RolloutResource()).Namespace(ref.Namespace).
			Patch(ctx, ref.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("restart %s: %w", ref, err)
		}
		return err
	})
	if err != nil {
		return pipeline.Change{}, err
	}
	if dryRun {
		change.Message = fmt.Sprintf("would restart %s by setting spec.restartAt (%s)", ref, change.Before)
		return change, nil
	}
	change.Changed = true
	change.Message = fmt.Sprintf("restarted %s: spec.restartAt set to %s, its controller replaces the pods (%s)", ref, stamp, change.Before)
	return change, nil
}

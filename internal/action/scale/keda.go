package scale

import (
	"context"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// scaledObject finds the KEDA ScaledObject that scales ref. Without a
// dynamic client, or without the permission to list ScaledObjects, it
// finds none; KEDA's autoscaler is then still recognised by its owner
// (kedaOwner) and left alone.
func (m mutator) scaledObject(ctx context.Context, ref workload.Ref) (*keda.ScaledObject, error) {
	if m.dynamic == nil {
		return nil, nil
	}
	so, err := keda.Find(ctx, m.dynamic, ref)
	if apierrors.IsForbidden(err) {
		return nil, nil
	}
	return so, err
}

// kedaOwner names the ScaledObject that controls hpa, if one does.
func kedaOwner(hpa *autoscalingv2.HorizontalPodAutoscaler) string {
	for _, o := range hpa.OwnerReferences {
		gv, _ := schema.ParseGroupVersion(o.APIVersion)
		if o.Kind == "ScaledObject" && gv.Group == keda.Resource().Group {
			return o.Name
		}
	}
	return ""
}

// refuseKEDA refuses to touch the autoscaler of a ScaledObject the action
// could not read: KEDA would put any change back at once.
func refuseKEDA(ref workload.Ref, hpa *autoscalingv2.HorizontalPodAutoscaler, owner string) error {
	return action.Refuse("KEDA autoscaler",
		"%s is autoscaled by KEDA ScaledObject %s/%s through horizontalpodautoscaler %s, which KEDA puts back when changed; "+
			"the provider pauses the ScaledObject instead (%s), but cannot read ScaledObjects here: allow it to list and patch scaledobjects.keda.sh",
		ref, ref.Namespace, owner, hpa.Name, keda.PausedReplicasAnnotation)
}

// kedaPaused scales ref the way KEDA lets anyone else: it pauses the
// ScaledObject at the count asked for (autoscaling.keda.sh/paused-replicas)
// until the bound, and KEDA scales the target to that count and stops
// autoscaling it. A relative change applies to the target's count now. A
// pause the provider set already is moved to the new count and bound; one
// someone else set is theirs, and the action is refused.
//
// Verification waits for KEDA to set spec.replicas, as it waits for an
// autoscaler whose floor was raised.
func (m mutator) kedaPaused(ctx context.Context, ref workload.Ref, sc scaler, dryRun bool) (pipeline.Change, error) {
	var (
		so       *keda.ScaledObject
		from, to int32
	)
	until := m.now().Add(m.kedaPause).UTC().Truncate(time.Second)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("scale %s: %w", ref, err)
		}
		var err error
		if so, err = keda.Find(ctx, m.dynamic, ref); err != nil {
			return err
		}
		if so == nil {
			return fmt.Errorf("scale %s: its KEDA ScaledObject is gone", ref)
		}
		if so.Foreign != "" {
			return action.Refuse("KEDA pause",
				"%s autoscales %s and was paused by someone else (%s); the provider does not change a pause it did not set",
				so, ref, so.Foreign)
		}
		s, err := sc.GetScale(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the replica count of %s: %w", ref, err)
		}
		from = s.Spec.Replicas
		if to, err = m.desired(from, ref.String()); err != nil {
			return err
		}
		if dryRun {
			return nil
		}
		return keda.SetPause(ctx, m.dynamic, so, to, until)
	})
	if err != nil {
		return pipeline.Change{}, err
	}

	stamp := until.Format(time.RFC3339)
	c := pipeline.Change{Reason: "Scaled", After: fmt.Sprintf("%s paused at %s until %s", so, replicas(to), stamp)}
	if so.Pause != nil {
		c.Before = fmt.Sprintf("%s paused at %s", so, so.Pause)
	} else {
		c.Before = fmt.Sprintf("%s autoscaled by %s (minReplicaCount %d, maxReplicaCount %d)", replicas(from), so, so.MinReplicaCount, so.MaxReplicaCount)
	}
	target := fmt.Sprintf("%s (%s) until %s", replicas(to), keda.PausedReplicasAnnotation, stamp)
	effect := fmt.Sprintf("KEDA scales %s from %d to %s and stops autoscaling it until then", ref, from, replicas(to))
	if from == to {
		effect = fmt.Sprintf("KEDA keeps %s at %s and stops autoscaling it until then", ref, replicas(to))
	}
	switch {
	case so.Pause != nil && dryRun:
		c.Message = fmt.Sprintf("would move the provider's pause of %s from %s to %s; %s", so, so.Pause, target, effect)
	case so.Pause != nil:
		c.Message = fmt.Sprintf("moved the provider's pause of %s from %s to %s; %s", so, so.Pause, target, effect)
	case dryRun:
		c.Message = fmt.Sprintf("would pause %s at %s; %s", so, target, effect)
	default:
		c.Message = fmt.Sprintf("paused %s at %s; %s", so, target, effect)
	}
	if !dryRun {
		c.Changed, c.Rollout, c.Replicas = true, true, &to
	}
	return c, nil
}

// Package catalog wires the actions this provider answers to from the
// configuration: one place that says which names map to which handlers,
// with which bounds and guardrails.
package catalog

import (
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/deletepods"
	"github.com/keptn-action-provider/action-provider/internal/action/restart"
	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/action/scale"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/mutation"
)

// Build makes the catalog of actions this provider answers to, and the
// ledger that keeps their locks, cooldowns and claimed events on the
// cluster.
func Build(cfg config.Config, client kubernetes.Interface, log logrus.FieldLogger) (*action.Registry, *ledger.Ledger, error) {
	identity := cfg.PodName
	if identity == "" {
		identity, _ = os.Hostname()
	}
	policy, err := guard.NewPolicy(cfg.AllowedNamespaces, cfg.PodNamespace)
	if err != nil {
		return nil, nil, err
	}
	book, err := ledger.New(client, ledger.Config{
		Namespace: cfg.PodNamespace, Identity: identity,
		EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout + lockMargin, Cooldown: cfg.Cooldown,
	})
	if err != nil {
		return nil, nil, err
	}
	pipeline := &mutation.Pipeline{
		Client: client, Policy: policy, Ledger: book, Audit: audit.New(client, identity),
		VerifyTimeout: cfg.VerifyTimeout, Log: log,
	}
	scaler, err := scale.New(pipeline, scale.Options{
		MinReplicas: cfg.ScaleMinReplicas, MaxReplicas: cfg.ScaleMaxReplicas, MaxStep: cfg.ScaleMaxStep,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("configure scale: %w", err)
	}
	var reg action.Registry
	for _, a := range []struct {
		name    string
		handler action.Handler
		aliases []string
	}{
		// "scaling" is helm-service's name, so existing remediation.yaml files work.
		{scale.Name, scaler, []string{"scaling"}},
		{restart.Name, restart.New(pipeline), nil},
		{rollback.Name, rollback.New(pipeline), nil},
		{deletepods.Name, deletepods.New(pipeline, deletepods.Options{MaxPods: cfg.DeletePodsMax}), nil},
	} {
		if err := reg.Register(a.name, a.handler, a.aliases...); err != nil {
			return nil, nil, err
		}
	}
	return &reg, book, nil
}

// lockMargin is how much longer than an action a target's lock lasts, so
// that it outlives the action but not, by much, a replica that died
// holding it.
const lockMargin = 30 * time.Second

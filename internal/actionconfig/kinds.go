package actionconfig

import (
	"fmt"
	"sort"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/deletepods"
	"github.com/keptn-action-provider/action-provider/internal/action/job"
	"github.com/keptn-action-provider/action-provider/internal/action/restart"
	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/action/scale"
	"github.com/keptn-action-provider/action-provider/internal/action/togglefeature"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
)

// kind builds the handler of one kind of action from an entry.
type kind struct {
	// workload kinds change a Kubernetes workload through the mutation
	// pipeline, and so have a cooldown.
	workload bool
	build    func(cfg config.Config, e Entry, p *pipeline.Pipeline, d Deps) (action.Handler, error)
}

// kinds is the table of kinds.
func kinds() map[string]kind {
	return map[string]kind{
		"scale":          {workload: true, build: buildScale},
		"restart":        {workload: true, build: buildRestart},
		"rollback":       {workload: true, build: buildRollback},
		"delete-pods":    {workload: true, build: buildDeletePods},
		"toggle-feature": {build: buildToggleFeature},
		"webhook":        {build: buildWebhook},
		"job":            {build: buildJob},
	}
}

func kindNames() []string {
	var names []string
	for n := range kinds() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// scaleSettings override SCALE_MIN_REPLICAS, SCALE_MAX_REPLICAS and
// SCALE_MAX_STEP for one entry.
type scaleSettings struct {
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
	MaxStep     *int32 `json:"maxStep,omitempty"`
}

func buildScale(cfg config.Config, e Entry, p *pipeline.Pipeline, _ Deps) (action.Handler, error) {
	s := scaleSettings{MinReplicas: &cfg.ScaleMinReplicas, MaxReplicas: &cfg.ScaleMaxReplicas, MaxStep: &cfg.ScaleMaxStep}
	if err := decodeSettings(e.Settings, &s); err != nil {
		return nil, err
	}
	return scale.New(p, scale.Options{MinReplicas: *s.MinReplicas, MaxReplicas: *s.MaxReplicas, MaxStep: *s.MaxStep})
}

// noSettings refuses settings for a kind that has none, so that a
// misplaced key is not silently ignored.
type noSettings struct{}

func buildRestart(_ config.Config, e Entry, p *pipeline.Pipeline, _ Deps) (action.Handler, error) {
	if err := decodeSettings(e.Settings, &noSettings{}); err != nil {
		return nil, err
	}
	return restart.New(p), nil
}

func buildRollback(_ config.Config, e Entry, p *pipeline.Pipeline, _ Deps) (action.Handler, error) {
	if err := decodeSettings(e.Settings, &noSettings{}); err != nil {
		return nil, err
	}
	return rollback.New(p), nil
}

type deletePodsSettings struct {
	MaxPods *int `json:"maxPods,omitempty"`
}

func buildDeletePods(cfg config.Config, e Entry, p *pipeline.Pipeline, _ Deps) (action.Handler, error) {
	s := deletePodsSettings{MaxPods: &cfg.DeletePodsMax}
	if err := decodeSettings(e.Settings, &s); err != nil {
		return nil, err
	}
	if *s.MaxPods < 1 {
		return nil, fmt.Errorf("maxPods: %d; it must be at least 1", *s.MaxPods)
	}
	return deletepods.New(p, deletepods.Options{MaxPods: *s.MaxPods}), nil
}

func buildToggleFeature(_ config.Config, e Entry, _ *pipeline.Pipeline, d Deps) (action.Handler, error) {
	var c togglefeature.Config
	if err := decodeSettings(e.Settings, &c); err != nil {
		return nil, err
	}
	return togglefeature.New(c, togglefeature.Options{Source: d.Secrets, Masker: d.Masker, WrapTransport: d.WrapTransport})
}

func buildWebhook(_ config.Config, e Entry, _ *pipeline.Pipeline, d Deps) (action.Handler, error) {
	var c webhook.Config
	if err := decodeSettings(e.Settings, &c); err != nil {
		return nil, err
	}
	return webhook.New(e.Name, c, webhook.Options{
		Masker: d.Masker, Source: d.Secrets, KubernetesServiceHost: d.KubernetesServiceHost,
		WrapTransport: d.WrapTransport,
	})
}

func buildJob(cfg config.Config, e Entry, p *pipeline.Pipeline, d Deps) (action.Handler, error) {
	var c job.Config
	if err := decodeSettings(e.Settings, &c); err != nil {
		return nil, err
	}
	deadline := cfg.ActionTimeout
	if t := time.Duration(e.Guardrails.Timeout); t > 0 && t < deadline {
		deadline = t
	}
	return job.New(e.Name, c, job.Options{
		Client: d.Client, Policy: p.Policy, Audit: d.Audit, Masker: d.Masker,
		Deadline: deadline, Logs: d.JobLogs, Log: d.Log,
	})
}

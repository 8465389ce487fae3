// Package catalog is the action catalog: which action names this provider
// answers to, with which handler, settings and guardrails. It is read once
// at start-up from the YAML file ACTIONS_CONFIG names, or is the built-in
// default when none is given, and validated whole before anything is
// served: a catalog with one bad entry does not load at all.
//
// It is not reloaded on change. A running action must keep the catalog it
// started with, and a half-applied reload is worse than none; the Helm
// chart instead rolls the Deployment when the catalog's ConfigMap changes,
// which drains running actions like any other restart.
package actionconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/job"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// File is the catalog as written in YAML.
type File struct {
	Actions []Entry `json:"actions"`
	// Gates decide, for every entry, when not to act (gates.go).
	Gates
}

// Entry declares one action.
type Entry struct {
	// Name is what remediation.yaml's "action" says.
	Name string `json:"name"`
	// Kind is the handler: scale, restart, rollback, delete-pods,
	// toggle-feature, webhook or job.
	Kind string `json:"kind"`
	// Aliases are further names the entry answers to.
	Aliases []string `json:"aliases,omitempty"`
	// Settings are the handler's own, checked by its kind.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Guardrails apply to every run of the entry.
	Guardrails Guardrails `json:"guardrails,omitempty"`
	// Target says which keys of an event's value may choose the workload,
	// for the workload kinds. Absent: name and kind, within the namespace
	// "<project>-<stage>".
	Target *Target `json:"target,omitempty"`
}

// Target is an entry's rule for the keys of the value that choose the
// workload instead of Keptn's naming.
type Target struct {
	// Override lists the keys events may set: namespace, name, kind.
	// Absent: [name, kind]; [] pins the target to the event's service in
	// "<project>-<stage>".
	Override []string `json:"override"`
	// Namespaces, with namespace in Override, are globs the value's
	// namespace must match, besides ALLOWED_NAMESPACES.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Guardrails of one entry. Zero values keep the provider-wide settings.
type Guardrails struct {
	// Timeout is the entry's deadline, at most ACTION_TIMEOUT.
	Timeout Duration `json:"timeout,omitempty"`
	// DryRun makes every run of the entry decide and report only.
	DryRun bool `json:"dryRun,omitempty"`
	// Cooldown overrides ACTION_COOLDOWN for the workload kinds; "0s"
	// disables it.
	Cooldown *Duration `json:"cooldown,omitempty"`
	// GitOps overrides the catalog's gitops.policy for this entry: refuse,
	// warn or suspend.
	GitOps string `json:"gitops,omitempty"`
	// Approval is "required" to have every run of the entry approved,
	// "never" to exempt it from the approval defaults, or empty for them.
	Approval string `json:"approval,omitempty"`
}

// Duration is a duration written as a string, "90s"; zero is allowed.
type Duration time.Duration

// UnmarshalJSON reads "90s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`a duration is a string such as "90s" or "5m", not %s`, b)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf(`%q is not a duration such as "90s" or "5m"`, s)
	}
	*d = Duration(v)
	return nil
}

// Defaults is the catalog when ACTIONS_CONFIG is not set: today's actions
// under their usual names, with the bounds from the environment.
var defaults = File{Actions: []Entry{
	// "scaling" is helm-service's name, so existing remediation.yaml files work.
	{Name: "scale", Kind: "scale", Aliases: []string{"scaling"}},
	{Name: "restart", Kind: "restart"},
	{Name: "rollback", Kind: "rollback"},
	{Name: "delete-pods", Kind: "delete-pods"},
}}

// Catalog is the loaded catalog, its handlers built.
type Catalog struct {
	Registry *action.Registry
	// Maintainers are the gates with work of their own between actions;
	// every replica runs Maintain periodically.
	Maintainers []gate.Maintainer
	// Source says where the catalog came from, for the start-up log.
	Source string
}

// Deps are what the handlers are built with.
type Deps struct {
	Client kube.Interface
	// Ledger keeps the locks and cooldowns; Audit records each change as a
	// Kubernetes Event. Both are required.
	Ledger *ledger.Ledger
	Audit  *audit.Recorder
	Log    logrus.FieldLogger
	// Masker learns every secret the catalog resolves.
	Masker *secret.Masker
	// Secrets is where secrets are read from; the zero value is the
	// process environment and the file system.
	Secrets secret.Source
	// JobLogs reads the log of a job action's container; nil reads it
	// through the API server. The sandbox has no kubelet to ask.
	JobLogs job.LogReader
	// Dynamic reads and changes the objects of other tools (Argo CD, Flux,
	// KEDA, Argo Rollouts) that the gates look at; nil when there is none
	// (lint), which the gates that need it refuse to be configured without.
	Dynamic dynamic.Interface
	// Metrics is where the gates register their metrics; nil, nowhere.
	Metrics prometheus.Registerer
	// Identity names this replica in the records gates keep.
	Identity string
	// WrapTransport, if set, wraps the HTTP transports of webhook and
	// toggle-feature: tracing makes their requests spans of the event's
	// trace.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// KubernetesServiceHost is the API server's service address
	// (KUBERNETES_SERVICE_HOST in a pod), which webhooks may not call
	// unless allowed.
	KubernetesServiceHost string
}

// Load reads the catalog cfg names (or the built-in one) and builds every
// handler. The error names the file, the entry and the field.
func Load(cfg config.Config, d Deps) (*Catalog, error) {
	f, source, err := read(cfg.ActionsConfig)
	if err != nil {
		return nil, err
	}
	c, err := build(cfg, f, source, d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	c.Source = source
	return c, nil
}

// builtIn is the source of the built-in catalog.
const builtIn = "built-in catalog"

// read parses the catalog file strictly: an unknown field is a typo.
func read(path string) (File, string, error) {
	if path == "" {
		return defaults, builtIn, nil
	}
	source := "ACTIONS_CONFIG " + path
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, source, fmt.Errorf("read %s: %w", source, err)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return File{}, source, fmt.Errorf("%s: not valid YAML: %w", source, err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, source, fmt.Errorf("%s: %w", source, fieldError(err))
	}
	if len(f.Actions) == 0 {
		return File{}, source, fmt.Errorf("%s: no actions: the catalog must declare at least one under \"actions\"", source)
	}
	return f, source, nil
}

// build makes every entry's handler, or fails on the first bad entry.
func build(cfg config.Config, f File, source string, d Deps) (*Catalog, error) {
	if d.Masker == nil {
		d.Masker = &secret.Masker{}
	}
	if d.Ledger == nil || d.Audit == nil {
		return nil, errors.New("the action catalog needs the ledger and the audit recorder")
	}
	policy, err := guard.NewPolicy(cfg.AllowedNamespaces, cfg.PodNamespace)
	if err != nil {
		return nil, err
	}
	if policy, err = policy.WithOptIn(cfg.NamespaceOptIn, d.Client); err != nil {
		return nil, err
	}
	base := pipeline.Pipeline{
		Client: d.Client, Dynamic: d.Dynamic, Policy: policy, Ledger: d.Ledger, Audit: d.Audit,
		VerifyTimeout: cfg.VerifyTimeout, Log: d.Log,
		Cooldown: ledger.Cooldown{Period: cfg.Cooldown, Setting: "ACTION_COOLDOWN"},
	}
	if base.Gates, err = buildGates(cfg, f.Gates, d); err != nil {
		return nil, err
	}
	var reg action.Registry
	for i, e := range f.Actions {
		where := fmt.Sprintf("actions[%d]", i)
		if e.Name != "" {
			where += fmt.Sprintf(" %q", e.Name)
		}
		h, err := entryHandler(cfg, e, base, d, entryWhere(e.Name, where, source))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if err := reg.Register(e.Name, h, e.Aliases...); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	c := &Catalog{Registry: &reg}
	for _, g := range base.Gates {
		if m, ok := g.(gate.Maintainer); ok {
			c.Maintainers = append(c.Maintainers, m)
		}
	}
	if d.Dynamic != nil {
		// scale pauses a KEDA-autoscaled target for a bounded time; its
		// end is any replica's to carry out.
		c.Maintainers = append(c.Maintainers, &keda.Unpauser{Dynamic: d.Dynamic, Namespaces: literal(cfg.AllowedNamespaces), Log: d.Log})
	}
	return c, nil
}

// literal are the namespaces of an allowlist, or none (every namespace)
// when a glob makes them unknown.
func literal(globs []string) []string {
	var names []string
	for _, g := range globs {
		g = strings.TrimSpace(g)
		if strings.ContainsAny(g, "*?[") {
			return nil
		}
		if g != "" {
			names = append(names, g)
		}
	}
	return names
}

// maintainTimeout bounds one gate's pass of its own work, so that a slow
// API server delays the other gates' by no more.
const maintainTimeout = 10 * time.Second

// Maintain runs every gate's own work once, in turn.
func (c *Catalog) Maintain(ctx context.Context) {
	for _, m := range c.Maintainers {
		mctx, cancel := context.WithTimeout(ctx, maintainTimeout)
		m.Maintain(mctx)
		cancel()
	}
}

// entryWhere says where an entry is changed, for refusals.
func entryWhere(name, where, source string) string {
	if source == builtIn {
		return "the built-in catalog; declare the action in an ACTIONS_CONFIG file to change it"
	}
	return fmt.Sprintf("%s in %s", strings.TrimSuffix(where, fmt.Sprintf(" %q", name)), source)
}

// entryHandler checks an entry and builds its handler, guardrails applied.
// where names the entry in refusals.
func entryHandler(cfg config.Config, e Entry, base pipeline.Pipeline, d Deps, where string) (action.Handler, error) {
	if e.Name == "" {
		return nil, errors.New(`"name" is missing: it is what remediation.yaml's "action" says`)
	}
	k, ok := kinds()[e.Kind]
	if !ok {
		return nil, fmt.Errorf("kind: %q is not a kind of action; known: %s", e.Kind, strings.Join(kindNames(), ", "))
	}
	g := e.Guardrails
	if time.Duration(g.Timeout) > cfg.ActionTimeout {
		return nil, fmt.Errorf("guardrails.timeout: %s is above ACTION_TIMEOUT (%s), which bounds every action", time.Duration(g.Timeout), cfg.ActionTimeout)
	}
	if !k.workload {
		// Changing no workload, such an entry has no cooldown unless it
		// sets one: ACTION_COOLDOWN is about workloads.
		base.Cooldown = ledger.Cooldown{}
	}
	if g.Cooldown != nil {
		base.Cooldown = ledger.Cooldown{Period: time.Duration(*g.Cooldown), Setting: fmt.Sprintf("guardrails.cooldown of %q", e.Name)}
	}
	if err := checkGateSettings(g); err != nil {
		return nil, fmt.Errorf("guardrails.%w", err)
	}
	base.Entry, base.GateSettings = e.Name, map[string]string{GateGitOps: g.GitOps, GateApproval: g.Approval}
	if e.Target != nil && !k.workload {
		return nil, fmt.Errorf("target: a %s action changes no workload; target applies to workload actions only", e.Kind)
	}
	h, err := k.build(cfg, e, &base, d)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if k.workload {
		var override, namespaces []string
		if e.Target != nil {
			override, namespaces = e.Target.Override, e.Target.Namespaces
			if override == nil {
				override = []string{} // written as "override:" or left out of a given target: nothing
			}
		}
		t, err := guard.NewTarget(override, namespaces, fmt.Sprintf("catalog entry %q", e.Name), where)
		if err != nil {
			return nil, err
		}
		h = targeted{handler: h, target: t}
	} else {
		log := d.Log
		if log == nil {
			l := logrus.New()
			l.SetOutput(io.Discard)
			log = l
		}
		h = serialized{handler: h, name: e.Name, kind: e.Kind, ledger: base.Ledger, cooldown: base.Cooldown,
			gates: base.Gates, settings: base.GateSettings, log: log}
	}
	if g.Timeout > 0 || g.DryRun {
		h = guarded{handler: h, name: e.Name, timeout: time.Duration(g.Timeout), dryRun: g.DryRun}
	}
	return h, nil
}

// guarded applies an entry's timeout and dry run around its handler.
type guarded struct {
	handler action.Handler
	name    string
	timeout time.Duration
	dryRun  bool
}

func (g guarded) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	req.DryRun = req.DryRun || g.dryRun
	if g.timeout <= 0 {
		return g.handler.Run(ctx, req)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	out, err := g.handler.Run(ctx, req)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return out, fmt.Errorf("timed out after %s (guardrails.timeout of %q): %w", g.timeout, g.name, err)
	}
	return out, err
}

// targeted refuses a value that chooses the target in a way the entry's
// target rule does not allow, before the handler reads anything.
type targeted struct {
	handler action.Handler
	target  guard.Target
}

func (t targeted) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	if err := t.target.Check(req, selector(req.Value)); err != nil {
		return action.Outcome{}, err
	}
	return t.handler.Run(ctx, req)
}

// Validate is the handler's check, then the target rule's, so that lint
// flags a value that uses an override the entry does not allow.
func (t targeted) Validate(value json.RawMessage) error {
	if v, ok := t.handler.(action.Validator); ok {
		if err := v.Validate(value); err != nil {
			return err
		}
	}
	return t.target.Check(action.Request{}, selector(value))
}

// selector reads the keys of a value that choose the target, as the
// handlers read them (encoding/json, keys matched regardless of case). A
// value that is not an object (scale's "-1") chooses nothing; one whose
// keys have the wrong types is the handler's to refuse.
func selector(value json.RawMessage) workload.Selector {
	var o pipeline.Options
	_ = json.Unmarshal(value, &o)
	return o.Selector
}

// Validate lets lint see through the guardrails.
func (g guarded) Validate(value json.RawMessage) error {
	if v, ok := g.handler.(action.Validator); ok {
		return v.Validate(value)
	}
	return nil
}

// fieldError rephrases encoding/json's errors with the field's path.
func fieldError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("%s: a %s where %s is expected", typeErr.Field, typeErr.Value, typeErr.Type)
	}
	if after, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s", after)
	}
	return err
}

// decodeSettings reads an entry's settings into v strictly; no settings
// leaves v as it is.
func decodeSettings(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fieldError(err)
	}
	return nil
}

package gitops

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Policy says what the gate does with a target Argo CD or Flux manages.
type Policy string

// The policies, as the catalog spells them.
const (
	// Refuse refuses the action, naming the tool that owns the target.
	Refuse Policy = "refuse"
	// Warn acts, and reports a warning that a sync will revert the change.
	Warn Policy = "warn"
	// Suspend pauses the owner's reconciliation for a bounded time (Flux:
	// spec.suspend; Argo CD: self-heal off), then acts.
	Suspend Policy = "suspend"
)

// ParsePolicy reads a policy as the catalog writes it.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Refuse, Warn, Suspend:
		return p, nil
	}
	return "", fmt.Errorf("%q is not refuse, warn or suspend", s)
}

// Defaults of a gitops section that leaves a field out. Refuse is the
// default: acting on what another tool will put back is at best wasted,
// and a person should choose to do it.
const (
	DefaultPolicy     = Refuse
	DefaultSuspendFor = 30 * time.Minute
	// MaxSuspendFor bounds a suspension: GitOps stays the source of truth,
	// and a forgotten suspension must end by itself within a day.
	MaxSuspendFor = 24 * time.Hour
	// MinSuspendFor keeps a suspension longer than a heartbeat or two, so
	// that the action it is for has happened before it ends. Tests may go
	// below it through Settings directly.
	MinSuspendFor = time.Second
)

// DefaultArgoCDNamespaces is where Argo CD keeps its Applications by
// default (its control-plane namespace).
var DefaultArgoCDNamespaces = []string{"argocd"}

// Section is the catalog's top-level "gitops" section, as written.
type Section struct {
	// Policy is refuse, warn or suspend; an entry's guardrails.gitops
	// overrides it.
	Policy string `json:"policy,omitempty"`
	// SuspendFor bounds a suspension, "30m".
	SuspendFor string `json:"suspendFor,omitempty"`
	// ArgoCDNamespaces are the namespaces where the gate looks for Argo CD
	// Applications.
	ArgoCDNamespaces []string `json:"argocdNamespaces,omitempty"`
}

// Settings are a section's resolved values.
type Settings struct {
	Policy Policy
	// PolicySet says the policy was written in the section, not defaulted.
	PolicySet        bool
	SuspendFor       time.Duration
	ArgoCDNamespaces []string
}

// Resolve checks the section and fills in the defaults. Errors name the
// field as the catalog spells it.
func (s Section) Resolve() (Settings, error) {
	out := Settings{Policy: DefaultPolicy, SuspendFor: DefaultSuspendFor, ArgoCDNamespaces: DefaultArgoCDNamespaces}
	if s.Policy != "" {
		p, err := ParsePolicy(s.Policy)
		if err != nil {
			return Settings{}, fmt.Errorf("policy: %w", err)
		}
		out.Policy, out.PolicySet = p, true
	}
	if s.SuspendFor != "" {
		d, err := time.ParseDuration(s.SuspendFor)
		if err != nil {
			return Settings{}, fmt.Errorf(`suspendFor: %q is not a duration such as "30m" or "2h"`, s.SuspendFor)
		}
		if d < MinSuspendFor || d > MaxSuspendFor {
			return Settings{}, fmt.Errorf("suspendFor: %s is not between %s and %s", d, MinSuspendFor, MaxSuspendFor)
		}
		out.SuspendFor = d
	}
	if s.ArgoCDNamespaces != nil {
		if len(s.ArgoCDNamespaces) == 0 {
			return Settings{}, fmt.Errorf("argocdNamespaces: empty; leave it out for [%s]", strings.Join(DefaultArgoCDNamespaces, ", "))
		}
		seen := map[string]bool{}
		for i, ns := range s.ArgoCDNamespaces {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return Settings{}, fmt.Errorf("argocdNamespaces[%d]: %q is not a namespace: %s", i, ns, strings.Join(errs, "; "))
			}
			if seen[ns] {
				return Settings{}, fmt.Errorf("argocdNamespaces[%d]: %s is listed twice", i, ns)
			}
			seen[ns] = true
		}
		out.ArgoCDNamespaces = s.ArgoCDNamespaces
	}
	return out, nil
}

// Package gitops is the gate for targets that Argo CD or Flux manages:
// what the provider changes there, the tool puts back at its next sync.
// The gate finds the owner from the marks the tools leave on what they
// apply (owner.go) and, by policy, refuses, warns, or suspends the owner's
// reconciliation for a bounded time (suspend.go), a suspension every
// replica ends when it is due (Maintain), since the record of it lives on
// the owner.
package gitops

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Rule names the gate in refusals.
const Rule = "gitops"

// SettingKey is the gate's key in an entry's settings (gate.Subject's
// Settings): its guardrails.gitops.
const SettingKey = "gitops"

// FieldManager is the provider's name in the owners' managedFields.
// Neither Argo CD nor Flux takes over this manager's fields (Flux takes
// over "kubectl*", "before-first-apply" and its own), so a parent
// Kustomization that applies the owner leaves the suspension alone.
const FieldManager = "keptn-action-provider"

// lasting are the actions whose effect no sync undoes: pods are not in
// Git, and a restart's pod-template annotation is written by a field
// manager neither tool takes over (package restart). Warn and suspend let
// them act as they are; refuse still refuses them.
var lasting = map[string]bool{"restart": true, "delete-pods": true}

// Config is what a Gate is made of.
type Config struct {
	Settings
	// Dynamic reads (and, to suspend, changes) Applications,
	// Kustomizations and HelmReleases. Nil: only Flux's labels and Argo
	// CD's tracking id tell, and nothing can be suspended.
	Dynamic dynamic.Interface
	// Identity names this replica in the record of a suspension.
	Identity string
	// Log receives the resumptions, and what Maintain could not do.
	Log logrus.FieldLogger
	// Now is the clock; nil, time.Now.
	Now func() time.Time
}

// Gate is the GitOps gate. It is a gate.Maintainer: Maintain resumes the
// suspensions that are due, whichever replica made them.
type Gate struct {
	settings Settings
	dyn      dynamic.Interface
	identity string
	log      logrus.FieldLogger
	now      func() time.Time
}

var (
	_ gate.Gate       = (*Gate)(nil)
	_ gate.Maintainer = (*Gate)(nil)
)

// New makes the gate; zero settings take the defaults.
func New(c Config) *Gate {
	g := &Gate{settings: c.Settings, dyn: c.Dynamic, identity: c.Identity, log: c.Log, now: c.Now}
	if g.settings.Policy == "" {
		g.settings.Policy = DefaultPolicy
	}
	if g.settings.SuspendFor <= 0 {
		g.settings.SuspendFor = DefaultSuspendFor
	}
	if len(g.settings.ArgoCDNamespaces) == 0 {
		g.settings.ArgoCDNamespaces = DefaultArgoCDNamespaces
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		g.log = l
	}
	return g
}

// Admit passes what no GitOps tool manages, and the kinds without a
// target; for a managed target it applies the entry's policy, else the
// catalog's.
func (g *Gate) Admit(ctx context.Context, s gate.Subject) (gate.Admission, error) {
	if s.Target == (workload.Ref{}) || s.Object == nil {
		return gate.Admission{}, nil
	}
	policy, from, err := g.policy(s)
	if err != nil {
		return gate.Admission{}, err
	}
	o, err := g.find(ctx, s.Target, s.Object)
	if err != nil {
		return gate.Admission{}, fmt.Errorf("tell whether Argo CD or Flux manages %s: %w", s.Target, err)
	}
	switch {
	case o == nil:
		return gate.Admission{}, nil
	case policy == Refuse:
		return gate.Admission{}, action.Refuse(Rule,
			"%s is managed by %s (%s), which puts back what the provider changes at its next sync; the gitops policy is refuse (%s): set guardrails.gitops of entry %q, or the catalog's gitops.policy, to warn or suspend to act on it anyway",
			s.Target, o, o.evidence, from, s.Entry)
	case lasting[s.Kind]:
		return gate.Admission{}, nil
	case policy == Warn:
		return gate.Admission{Warning: fmt.Sprintf("%s manages %s (%s) and will revert this at its next sync (gitops policy warn, %s)",
			o, s.Target, o.evidence, from)}, nil
	}
	return g.suspend(ctx, s, o, from)
}

// policy is the entry's policy, else the catalog's, and where it is set.
func (g *Gate) policy(s gate.Subject) (Policy, string, error) {
	if v := s.Settings[SettingKey]; v != "" {
		p, err := ParsePolicy(v)
		if err != nil {
			return "", "", fmt.Errorf("guardrails.gitops of entry %q: %w", s.Entry, err)
		}
		return p, fmt.Sprintf("guardrails.gitops of entry %q", s.Entry), nil
	}
	if g.settings.PolicySet {
		return g.settings.Policy, "the catalog's gitops.policy", nil
	}
	return g.settings.Policy, "the default: the catalog sets no gitops.policy", nil
}

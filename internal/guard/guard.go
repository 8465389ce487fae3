// Package guard holds the rules checked before any workload is changed,
// which need nothing but the target: the namespace allowlist and the
// target's own opt-out annotation. Rules that need the cluster's memory,
// the lock and the cooldown, are in package ledger.
package guard

import (
	"fmt"
	"path"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// AnnotationPrefix is the prefix of every annotation and label this
// project reads or writes.
const AnnotationPrefix = "keptn-action-provider.io/"

// OptOutAnnotation, set to "true" on a workload, refuses every action on
// it: the owner of a workload can take it out of automatic remediation
// without touching the provider's configuration.
const OptOutAnnotation = AnnotationPrefix + "opt-out"

// EnvNamespaces is the variable that sets the allowlist, named in refusals.
const EnvNamespaces = "ALLOWED_NAMESPACES"

// Rules, as named in refusals.
const (
	RuleNamespace = "namespace allowlist"
	RuleOptOut    = "opt-out annotation"
)

// protected namespaces hold the cluster's own machinery. A glob such as "*"
// never lets an action in; only the exact name does.
var protected = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Policy is the namespace allowlist. The zero value allows nothing.
type Policy struct {
	// Namespaces are globs as path.Match reads them: "*", "sockshop-*".
	Namespaces []string
	// Own is the provider's namespace, protected like kube-system: an
	// action must not scale down or restart the provider itself, or the
	// Keptn control plane beside it, because a glob happened to match.
	Own string
}

// NewPolicy checks the globs and returns the Policy.
func NewPolicy(globs []string, own string) (Policy, error) {
	p := Policy{Own: own}
	for _, g := range globs {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			return Policy{}, fmt.Errorf("%s: %q is not a valid glob: %w", EnvNamespaces, g, err)
		}
		p.Namespaces = append(p.Namespaces, g)
	}
	return p, nil
}

// Namespace refuses a namespace the allowlist does not name.
func (p Policy) Namespace(ns string) error {
	exact := protected[ns] || (p.Own != "" && ns == p.Own)
	for _, g := range p.Namespaces {
		if g == ns {
			return nil
		}
		if ok, _ := path.Match(g, ns); ok && !exact {
			return nil
		}
	}
	if exact {
		return action.Refuse(RuleNamespace, "namespace %s is protected and is not named explicitly in %s (%s)",
			ns, EnvNamespaces, strings.Join(p.Namespaces, ","))
	}
	return action.Refuse(RuleNamespace, "namespace %s matches none of %s (%s)",
		ns, EnvNamespaces, strings.Join(p.Namespaces, ","))
}

// OptOut refuses a target that carries the opt-out annotation. Any value
// but "false" opts out: a typo must err on the side of leaving it alone.
func OptOut(ref workload.Ref, obj metav1.Object) error {
	v, ok := obj.GetAnnotations()[OptOutAnnotation]
	if !ok || strings.EqualFold(strings.TrimSpace(v), "false") {
		return nil
	}
	return action.Refuse(RuleOptOut, "%s is annotated %s=%q; remove the annotation to allow remediation",
		ref, OptOutAnnotation, v)
}

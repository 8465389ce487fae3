// Package guard holds the rules checked before any workload is changed,
// which need nothing but the target: the namespace allowlist (and its
// opt-in label), which keys of a value may choose the target, and the
// target's own opt-out annotation. Rules that need the cluster's memory,
// the lock and the cooldown, are in package ledger.
package guard

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// OptOutAnnotation, set to "true" on a workload, refuses every action on
// it: the owner of a workload can take it out of automatic remediation
// without touching the provider's configuration.
const OptOutAnnotation = action.AnnotationPrefix + "opt-out"

// EnvNamespaces is the variable that sets the allowlist, named in refusals.
const EnvNamespaces = "ALLOWED_NAMESPACES"

// EnvOptInLabel is the variable that turns on the namespace label opt-in,
// named in refusals.
const EnvOptInLabel = "NAMESPACE_OPT_IN_LABEL"

// SuggestedOptInLabel is the label the documentation and refusals suggest
// for NAMESPACE_OPT_IN_LABEL.
const SuggestedOptInLabel = action.AnnotationPrefix + "remediation=enabled"

// Rules, as named in refusals.
const (
	RuleNamespace = "namespace allowlist"
	RuleOptOut    = "opt-out annotation"
	RuleTarget    = "target override"
)

// protected namespaces hold the cluster's own machinery. A glob such as "*"
// never lets an action in, nor does a label; only the exact name does.
var protected = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Policy says in which namespaces actions may change anything. It denies
// by default: the zero value allows nothing. A namespace is allowed when
// a glob of the allowlist matches it, or, with the opt-in label turned
// on, when its Namespace object carries that label. Protected namespaces
// are allowed only when the allowlist names them exactly.
type Policy struct {
	// Namespaces are globs as path.Match reads them: "*", "sockshop-*".
	Namespaces []string
	// Own is the provider's namespace, protected like kube-system: an
	// action must not scale down or restart the provider itself, or the
	// Keptn control plane beside it, because a glob happened to match.
	Own string
	// OptIn, when its Key is set, is the label that lets a namespace in:
	// its owner, or whoever may label it, opts it in.
	OptIn Label
	// Client reads Namespace objects for the opt-in label; required with
	// OptIn.
	Client kube.Interface
}

// Label is a label key and value.
type Label struct{ Key, Value string }

func (l Label) String() string { return l.Key + "=" + l.Value }

// ParseLabel reads "key=value", checked as Kubernetes checks labels.
func ParseLabel(s string) (Label, error) {
	k, v, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Label{}, fmt.Errorf("%s: %q is not a label key=value, such as %s", EnvOptInLabel, s, SuggestedOptInLabel)
	}
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return Label{}, fmt.Errorf("%s: %q is not a label key: %s", EnvOptInLabel, k, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 || v == "" {
		return Label{}, fmt.Errorf("%s: %q is not a non-empty label value: %s", EnvOptInLabel, v, strings.Join(errs, "; "))
	}
	return Label{Key: k, Value: v}, nil
}

// NewPolicy checks the globs and returns the Policy, without the opt-in
// label.
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

// WithOptIn returns p that also allows a namespace labelled label
// ("key=value"), read through c. An empty label leaves p as it is.
func (p Policy) WithOptIn(label string, c kube.Interface) (Policy, error) {
	if strings.TrimSpace(label) == "" {
		return p, nil
	}
	l, err := ParseLabel(label)
	if err != nil {
		return Policy{}, err
	}
	if c == nil {
		return Policy{}, fmt.Errorf("%s: no Kubernetes client to read namespaces' labels with", EnvOptInLabel)
	}
	p.OptIn, p.Client = l, c
	return p, nil
}

// Namespace refuses a namespace the allowlist does not name and, with the
// opt-in label on, that does not carry the label. The refusal says which
// setting or label would allow it. Reading the Namespace object needs get
// on namespaces; RBAC that forbids it is a refusal that says so. Any other
// failure to read it is an error: the provider could not do its job.
func (p Policy) Namespace(ctx context.Context, ns string) error {
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
		return action.Refuse(RuleNamespace, "namespace %s is protected: only its exact name in %s (now %s) lets an action in, never a glob or a label",
			ns, EnvNamespaces, p.allowlist())
	}
	if p.OptIn.Key == "" {
		return action.Refuse(RuleNamespace, "namespace %s is not allowed: it matches none of %s (now %s); add it there, "+
			"or set %s=%s and label it: kubectl label namespace %s %s",
			ns, EnvNamespaces, p.allowlist(), EnvOptInLabel, SuggestedOptInLabel, ns, SuggestedOptInLabel)
	}
	n, err := p.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return action.Refuse(RuleNamespace, "namespace %s is not allowed: it matches none of %s (now %s), and its label %s cannot be read: "+
			"the provider may not get namespaces (%v); add it to %s, or grant get on namespaces (the chart's namespaceOptInLabel does)",
			ns, EnvNamespaces, p.allowlist(), p.OptIn, err, EnvNamespaces)
	case apierrors.IsNotFound(err):
		return action.Refuse(RuleNamespace, "namespace %s is not allowed: it matches none of %s (now %s), and it does not exist, so it has no label %s",
			ns, EnvNamespaces, p.allowlist(), p.OptIn)
	case err != nil:
		return fmt.Errorf("read namespace %s for its opt-in label %s: %w", ns, p.OptIn, err)
	}
	if v, ok := n.Labels[p.OptIn.Key]; ok && v == p.OptIn.Value {
		return nil
	}
	return action.Refuse(RuleNamespace, "namespace %s is not allowed: add it to %s (now %s) or label it: kubectl label namespace %s %s",
		ns, EnvNamespaces, p.allowlist(), ns, p.OptIn)
}

// allowlist is the allowlist as a refusal shows it.
func (p Policy) allowlist() string {
	if len(p.Namespaces) == 0 {
		return "empty"
	}
	return strconv.Quote(strings.Join(p.Namespaces, ","))
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

// The keys of an action's value that may choose its target.
const (
	KeyNamespace = "namespace"
	KeyName      = "name"
	KeyKind      = "kind"
)

// DefaultOverride is what events may choose when a catalog entry does not
// say: the workload's name and kind, within the namespace Keptn's naming
// gives, "<project>-<stage>". An event never chooses the namespace unless
// the entry allows it.
var DefaultOverride = []string{KeyName, KeyKind}

// Target is the rule of one catalog entry: which keys of the value may
// choose the target instead of Keptn's naming, and within what.
type Target struct {
	namespace, name, kind bool
	// namespaces, with namespace, are globs the value's namespace must
	// match; empty, any the Policy allows.
	namespaces []string
	// entry names the entry in refusals, `catalog entry "scale"`, and where
	// says where to change it: `actions[0] in ACTIONS_CONFIG
	// /etc/action-provider/actions.yaml`.
	entry, where string
}

// NewTarget checks an entry's target rule. override lists the keys, nil
// meaning DefaultOverride; namespaces are globs, only with "namespace" in
// override. entry and where name the entry, and where to change it, in
// refusals. Errors name the field.
func NewTarget(override, namespaces []string, entry, where string) (Target, error) {
	t := Target{entry: entry, where: where}
	if override == nil {
		override = DefaultOverride
	}
	for _, k := range override {
		switch k {
		case KeyNamespace:
			t.namespace = true
		case KeyName:
			t.name = true
		case KeyKind:
			t.kind = true
		default:
			return Target{}, fmt.Errorf("target.override: %q is not a key that chooses the target; known: %s, %s, %s", k, KeyNamespace, KeyName, KeyKind)
		}
	}
	if len(namespaces) > 0 && !t.namespace {
		return Target{}, fmt.Errorf("target.namespaces: only with %q in target.override; without it the namespace is always <project>-<stage>", KeyNamespace)
	}
	for _, g := range namespaces {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return Target{}, fmt.Errorf("target.namespaces: %q is not a valid glob", g)
		}
	}
	t.namespaces = namespaces
	return t, nil
}

// Check refuses a value's selector that sets a key the rule does not
// allow. A namespace equal to "<project>-<stage>" chooses nothing and is
// allowed. The refusal names the catalog field that would allow it.
func (t Target) Check(req action.Request, sel workload.Selector) error {
	if sel.Namespace != "" {
		pinned := ""
		if req.Project != "" && req.Stage != "" {
			pinned = req.Project + "-" + req.Stage
		}
		switch {
		case sel.Namespace == pinned:
		case !t.namespace:
			return action.Refuse(RuleTarget, "the value sets %q: %q, but %s does not let events choose the namespace, which is always <project>-<stage>%s; "+
				"to allow it, add %s to target.override of %s (%s); the namespace stays within %s",
				KeyNamespace, sel.Namespace, t.entry, orBlank(" ("+pinned+")", pinned), KeyNamespace, t.entry, t.where, EnvNamespaces)
		case len(t.namespaces) > 0 && !matchAny(t.namespaces, sel.Namespace):
			return action.Refuse(RuleTarget, "the value sets %q: %q, which matches none of target.namespaces of %s (%s): %s; add it there to allow it",
				KeyNamespace, sel.Namespace, t.entry, t.where, strings.Join(t.namespaces, ","))
		}
	}
	if sel.Name != "" && !t.name {
		return action.Refuse(RuleTarget, "the value sets %q: %q, but %s does not let events choose the workload, which is the event's service (or <service>-primary); "+
			"to allow it, add %s to target.override of %s (%s)", KeyName, sel.Name, t.entry, KeyName, t.entry, t.where)
	}
	if sel.Kind != "" && !t.kind {
		return action.Refuse(RuleTarget, "the value sets %q: %q, but %s does not let events choose the kind, which is a Deployment; "+
			"to allow it, add %s to target.override of %s (%s)", KeyKind, sel.Kind, t.entry, KeyKind, t.entry, t.where)
	}
	return nil
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// orBlank is s, or "" when cond is empty.
func orBlank(s, cond string) string {
	if cond == "" {
		return ""
	}
	return s
}

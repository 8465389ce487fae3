// Package deletepods is the mutation of the "delete-pods" remediation
// action: evict a workload's unhealthy pods so that its controller replaces
// them. It goes through the eviction API rather than deleting, so that
// PodDisruptionBudgets are respected, and evicts no more than a bound, so
// that a remediation cannot take a whole service down.
package deletepods

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// DefaultMaxPods is the cap NewMutator applies when Options leaves MaxPods
// at 0, so that no value can evict a large workload's pods all at once.
const DefaultMaxPods = 10

// EnvMaxPods is the environment variable that sets Options.MaxPods, named
// in messages so that whoever reads one knows which setting to change.
const EnvMaxPods = "DELETE_PODS_MAX"

// defaultPercent is the bound when the value sets none: at most half of the
// replicas, so that the other half keeps serving.
const defaultPercent = 50

// Options are the configured limits of the action.
type Options struct {
	// MaxPods is the most pods one action ever evicts, whatever the value
	// asks. 0 means DefaultMaxPods.
	MaxPods int
}

// Mutator evicts the unhealthy pods of a workload, within a bound.
type Mutator struct {
	client kube.Interface
	opts   Options
	value  Value
}

var _ pipeline.Mutator = (*Mutator)(nil)

// NewMutator returns a Mutator that evicts through c as v asks, within
// opts. A negative opts.MaxPods makes every Mutate fail: it is a
// configuration error that must not pass for "no limit".
func NewMutator(c kube.Interface, opts Options, v Value) *Mutator {
	if opts.MaxPods == 0 {
		opts.MaxPods = DefaultMaxPods
	}
	return &Mutator{client: c, opts: opts, value: v}
}

// tier ranks how much evicting a pod is likely to help; higher goes first.
type tier int

const (
	healthy       tier = iota
	unschedulable      // pending for want of a node: a new pod would wait too
	unhealthy          // failed, unknown or not ready
	stuck              // a container crash-loops or cannot get its image
)

// pod is what the action needs to know of one pod.
type pod struct {
	name     string
	uid      types.UID
	labels   map[string]string
	ready    bool
	tier     tier
	why      string // for a person: "CrashLoopBackOff", "not ready"
	restarts int32
}

// String names the pod with its state: "carts-a (CrashLoopBackOff)".
func (p pod) String() string { return p.name + " (" + p.why + ")" }

// census counts the pods of a workload, for messages.
type census struct {
	live, ready, terminating, unschedulable int
}

// String reads "3 pods, all ready" or "3 pods, 1 ready, 2 terminating".
func (c census) String() string {
	s := plural(c.live, "pod")
	switch {
	case c.live == 0:
	case c.ready == c.live:
		s += ", all ready"
	default:
		s += fmt.Sprintf(", %d ready", c.ready)
	}
	if c.terminating > 0 {
		s += fmt.Sprintf(", %d terminating", c.terminating)
	}
	return s
}

// before is the state the audit record starts from: "2/3 pods ready".
func (c census) before() string { return fmt.Sprintf("%d/%d pods ready", c.ready, c.live) }

// Mutate evicts the unhealthy pods of ref (every pod with Value.All), the
// worst first, at most as many as the bound allows; with dryRun it only
// says which. Each pod gets one eviction attempt: a PodDisruptionBudget
// that forbids it now is reported, not waited out, so that the action
// stays bounded in time. When budgets forbid every eviction, the error is
// an *action.Refusal.
func (m *Mutator) Mutate(ctx context.Context, ref workload.Ref, dryRun bool) (pipeline.Change, error) {
	if m.opts.MaxPods < 0 {
		return pipeline.Change{}, fmt.Errorf("delete-pods: %s is %d; it must be positive", EnvMaxPods, m.opts.MaxPods)
	}
	if err := ctx.Err(); err != nil {
		return pipeline.Change{}, fmt.Errorf("evict the pods of %s: %w", ref, err)
	}
	all, err := workload.Pods(ctx, m.client, ref)
	if err != nil {
		return pipeline.Change{}, fmt.Errorf("find the pods to evict: %w", err)
	}

	var (
		n      census
		chosen []pod
	)
	for i := range all {
		if all[i].DeletionTimestamp != nil {
			n.terminating++ // already going; evicting it again helps nothing
			continue
		}
		p := diagnose(&all[i])
		n.live++
		if p.ready {
			n.ready++
		}
		if p.tier == unschedulable {
			n.unschedulable++
		}
		if m.value.All || p.tier >= unhealthy {
			chosen = append(chosen, p)
		}
	}
	if len(chosen) == 0 {
		return pipeline.Change{Message: nothingToDo(ref, n)}, nil
	}

	b, err := m.bound(ctx, ref, n.live)
	if err != nil {
		return pipeline.Change{}, err
	}
	slices.SortFunc(chosen, func(x, y pod) int {
		return cmp.Or(cmp.Compare(y.tier, x.tier), cmp.Compare(y.restarts, x.restarts), strings.Compare(x.name, y.name))
	})
	var left []pod
	if len(chosen) > b.n {
		chosen, left = chosen[:b.n], chosen[b.n:]
	}

	if dryRun {
		return pipeline.Change{
			Message: fmt.Sprintf("would evict %s of %s: %s", plural(len(chosen), "pod"), ref, list(chosen)) + b.tail(left),
			Before:  n.before(),
		}, nil
	}
	return outcome(ref, n, m.evict(ctx, ref.Namespace, chosen), left, b)
}

// diagnose works out whether p is worth evicting, and why.
func diagnose(p *corev1.Pod) pod {
	d := pod{
		name:   p.Name,
		uid:    p.UID,
		labels: p.Labels,
		ready:  condition(p, corev1.PodReady) == corev1.ConditionTrue,
	}
	statuses := slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
	for _, cs := range statuses {
		d.restarts += cs.RestartCount
	}
	// A container stuck like this stays stuck even when the pod reports
	// Ready (a sidecar crash-looping beside a serving container), so it is
	// looked for before readiness.
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && stuckReason(w.Reason) {
			d.tier, d.why = stuck, w.Reason
			return d
		}
	}
	switch {
	case p.Status.Phase == corev1.PodFailed && p.Status.Reason != "":
		d.tier, d.why = unhealthy, "failed: "+p.Status.Reason
	case p.Status.Phase == corev1.PodFailed:
		d.tier, d.why = unhealthy, "failed"
	case p.Status.Phase == corev1.PodUnknown:
		d.tier, d.why = unhealthy, "phase Unknown"
	case p.Status.Phase == corev1.PodPending && condition(p, corev1.PodScheduled) == corev1.ConditionFalse:
		d.tier, d.why = unschedulable, "unschedulable"
	case !d.ready:
		d.tier, d.why = unhealthy, "not ready"
	default:
		d.tier, d.why = healthy, "ready"
	}
	return d
}

// stuckReason reports whether a container waiting for reason needs a new
// pod, or at least a fresh attempt, rather than more time.
func stuckReason(reason string) bool {
	switch reason {
	case "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerError", "CreateContainerConfigError":
		return true
	}
	return false
}

// condition returns the status of p's condition t, "" when p has none.
func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// nothingToDo says why no pod of ref is worth evicting.
func nothingToDo(ref workload.Ref, n census) string {
	switch {
	case n.live == 0 && n.terminating == 0:
		return fmt.Sprintf("%s has no pods; nothing to do", ref)
	case n.live == 0:
		return fmt.Sprintf("%s has no pods that are not already terminating (%s); nothing to do", ref, n)
	case n.unschedulable > 0:
		return fmt.Sprintf("%s has no unhealthy pods worth evicting: %s cannot be scheduled, "+
			"and a replacement could not be either (%s); nothing to do", ref, plural(n.unschedulable, "pod"), n)
	}
	return fmt.Sprintf("%s has no unhealthy pods (%s); nothing to do", ref, n)
}

// bound is how many pods one action may evict, and how that came about.
type bound struct {
	n int
	// how explains n: "maxPods 25% of 8 replicas = 2".
	how string
	// overruled is set when the value asked for more than the cap allows,
	// which is worth saying even when it did not matter this time.
	overruled bool
}

// bound works out how many pods the action may evict from ref, which has
// live pods; a percentage is of the desired replicas, or for a DaemonSet,
// which has none, of its pods.
func (m *Mutator) bound(ctx context.Context, ref workload.Ref, live int) (bound, error) {
	desired, err := workload.Desired(ctx, m.client, ref)
	if err != nil {
		return bound{}, fmt.Errorf("read the desired replicas of %s: %w", ref, err)
	}
	of, base := plural(int(desired), "replica"), int(desired)
	if desired < 0 {
		of, base = plural(live, "pod"), live
	}
	var b bound
	switch v := m.value.MaxPods; {
	case v.IsZero():
		d := Bound{N: defaultPercent, Percent: true}
		b.n = d.Of(base)
		b.how = fmt.Sprintf("%s of %s = %d", d, of, b.n)
	case v.Percent:
		b.n = v.Of(base)
		b.how = fmt.Sprintf("maxPods %s of %s = %d", v, of, b.n)
	default:
		b.n = v.Of(base)
		b.how = fmt.Sprintf("maxPods %d", b.n)
	}
	if b.n > m.opts.MaxPods {
		b.n = m.opts.MaxPods
		b.how += fmt.Sprintf(", capped by %s=%d", EnvMaxPods, m.opts.MaxPods)
		b.overruled = !m.value.MaxPods.IsZero()
	}
	return b, nil
}

// tail ends a message with the pods the bound left alone, or the cap that
// overruled the value.
func (b bound) tail(left []pod) string {
	switch {
	case len(left) > 0:
		return fmt.Sprintf("; left alone (bound: %s): %s", b.how, list(left))
	case b.overruled:
		return "; bound: " + b.how
	}
	return ""
}

// fate is what became of one eviction.
type fate int

const (
	evicted fate = iota
	gone         // not found, or replaced by a new pod of the same name
	blocked      // a PodDisruptionBudget forbids it now
	failed
)

// attempt is one pod's eviction.
type attempt struct {
	pod
	fate fate
	// by names the budgets that blocked it: "PodDisruptionBudget carts-pdb
	// (minAvailable 2: ...)".
	by  string
	err error
}

// String tells the pod's fate: "carts-a (not ready) evicted".
func (a attempt) String() string {
	switch a.fate {
	case evicted:
		return a.pod.String() + " evicted"
	case gone:
		return a.pod.String() + " already gone"
	case blocked:
		return a.pod.String() + " refused by " + a.by
	}
	return a.pod.String() + " failed: " + a.err.Error()
}

// evict makes one eviction attempt for each pod, in order.
func (m *Mutator) evict(ctx context.Context, ns string, pods []pod) []attempt {
	budgets := &budgets{client: m.client, ns: ns}
	out := make([]attempt, 0, len(pods))
	for _, p := range pods {
		a := attempt{pod: p}
		if err := ctx.Err(); err != nil {
			a.fate, a.err = failed, fmt.Errorf("not attempted: %w", err)
			out = append(out, a)
			continue
		}
		uid := p.uid
		err := m.client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns},
			// A StatefulSet replaces a pod under the same name: only the
			// pod that was judged may go.
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
		})
		switch {
		case err == nil:
			a.fate = evicted
		case apierrors.IsNotFound(err):
			a.fate = gone
		case apierrors.IsConflict(err) && m.replaced(ctx, ns, p):
			a.fate = gone
		case apierrors.IsTooManyRequests(err):
			if by, ok := budgets.blame(ctx, p, err); ok {
				a.fate, a.by = blocked, by
				break
			}
			a.fate, a.err = failed, err // throttled by the API server, not a budget
		default:
			a.fate, a.err = failed, err
		}
		out = append(out, a)
	}
	return out
}

// replaced reports whether p is gone or has been replaced by a new pod of
// the same name, which is what a failed UID precondition means; the
// eviction answers 409 Conflict for other reasons too.
func (m *Mutator) replaced(ctx context.Context, ns string, p pod) bool {
	cur, err := m.client.CoreV1().Pods(ns).Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true
	}
	return err == nil && cur.UID != p.uid
}

// budgets finds the PodDisruptionBudgets of a namespace, listing them once
// and only if an eviction is refused.
type budgets struct {
	client kube.Interface
	ns     string
	listed bool
	items  []policyv1.PodDisruptionBudget
}

// blame says which budgets forbid evicting p, given the API's 429 answer,
// and whether a budget is what forbids it at all: the API server also
// answers 429 when it throttles requests.
func (b *budgets) blame(ctx context.Context, p pod, err error) (string, bool) {
	var causes []string
	var s apierrors.APIStatus
	if errors.As(err, &s) && s.Status().Details != nil {
		for _, c := range s.Status().Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause && c.Message != "" {
				causes = append(causes, c.Message)
			}
		}
	}
	if !b.listed {
		b.listed = true
		// Without the right to list budgets the refusal is still reported,
		// only with the API server's words instead of the budget's name.
		if list, lerr := b.client.PolicyV1().PodDisruptionBudgets(b.ns).List(ctx, metav1.ListOptions{}); lerr == nil {
			b.items = list.Items
		}
	}
	var named []string
	for i := range b.items {
		pdb := &b.items[i]
		// policy/v1: a nil selector matches no pod, an empty one all.
		sel, serr := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if serr == nil && sel.Matches(labels.Set(p.labels)) {
			named = append(named, pdb.Name+" ("+describe(pdb)+")")
		}
	}
	switch {
	case len(named) == 1:
		return "PodDisruptionBudget " + named[0], true
	case len(named) > 1:
		return "PodDisruptionBudgets " + strings.Join(named, ", "), true
	case len(causes) > 0:
		return "a PodDisruptionBudget (" + strings.Join(causes, "; ") + ")", true
	case strings.Contains(strings.ToLower(err.Error()), "disruption budget"):
		return "a PodDisruptionBudget (" + err.Error() + ")", true
	}
	return "", false
}

// describe sums up a budget: "minAvailable 2: 2 pods healthy, 2 needed,
// 0 disruptions allowed".
func describe(pdb *policyv1.PodDisruptionBudget) string {
	var spec string
	switch {
	case pdb.Spec.MinAvailable != nil:
		spec = "minAvailable " + pdb.Spec.MinAvailable.String() + ": "
	case pdb.Spec.MaxUnavailable != nil:
		spec = "maxUnavailable " + pdb.Spec.MaxUnavailable.String() + ": "
	}
	s := pdb.Status
	return fmt.Sprintf("%s%s healthy, %d needed, %s allowed",
		spec, plural(int(s.CurrentHealthy), "pod"), s.DesiredHealthy, plural(int(s.DisruptionsAllowed), "disruption"))
}

// outcome turns the attempts into the Change, a Refusal or an error.
func outcome(ref workload.Ref, n census, attempts []attempt, left []pod, b bound) (pipeline.Change, error) {
	var done, away, refused, broken []attempt
	for _, a := range attempts {
		switch a.fate {
		case evicted:
			done = append(done, a)
		case gone:
			away = append(away, a)
		case blocked:
			refused = append(refused, a)
		default:
			broken = append(broken, a)
		}
	}
	tail := b.tail(left)

	switch {
	case len(done) == 0 && len(broken) > 0:
		first := broken[0]
		var others string
		if len(attempts) > 1 {
			var rest []string
			for _, a := range attempts {
				if a.name != first.name {
					rest = append(rest, a.String())
				}
			}
			others = fmt.Sprintf("; none of the %d chosen pods was evicted: %s", len(attempts), strings.Join(rest, ", "))
		}
		return pipeline.Change{}, fmt.Errorf("evict pod %s of %s: %w%s", first.pod, ref, first.err, others)

	case len(done) == 0 && len(refused) > 0:
		reason := refusal(ref, refused)
		if len(away) > 0 {
			reason += "; already gone: " + list(pods(away))
		}
		return pipeline.Change{}, action.Refuse("PodDisruptionBudget", "%s", reason+tail)

	case len(done) == 0:
		return pipeline.Change{
			Message: fmt.Sprintf("the %s of %s chosen for eviction %s already gone: %s; nothing to do",
				plural(len(away), "pod"), ref, were(len(away)), list(pods(away))) + tail,
			Before: n.before(),
		}, nil
	}

	c := pipeline.Change{
		Reason:  "PodsEvicted",
		Before:  n.before(),
		After:   plural(len(done), "pod") + " evicted",
		Changed: true,
		Rollout: true,
		Pods:    true,
	}
	if len(refused) == 0 && len(broken) == 0 {
		c.Message = fmt.Sprintf("evicted %s of %s: %s", plural(len(done), "pod"), ref, list(pods(done)))
		if len(away) > 0 {
			c.Message += "; already gone: " + list(pods(away))
		}
		c.Message += tail
		return c, nil
	}
	fates := make([]string, len(attempts))
	for i, a := range attempts {
		fates[i] = a.String()
	}
	c.Result = keptnv2.ResultWarning
	c.Message = fmt.Sprintf("evicted %d of %d chosen pods of %s: %s",
		len(done), len(attempts), ref, strings.Join(fates, ", ")) + tail
	if len(refused) > 0 {
		c.After += fmt.Sprintf(", %d refused by a PodDisruptionBudget", len(refused))
	}
	if len(broken) > 0 {
		c.After += fmt.Sprintf(", %d failed", len(broken))
	}
	return c, nil
}

// refusal says which budgets forbade which evictions: "evicting pod
// carts-a of deployment ns/carts would violate PodDisruptionBudget
// carts-pdb (...)", grouping the pods one budget refused.
func refusal(ref workload.Ref, refused []attempt) string {
	var (
		order []string
		by    = map[string][]string{}
	)
	for _, a := range refused {
		if _, ok := by[a.by]; !ok {
			order = append(order, a.by)
		}
		by[a.by] = append(by[a.by], a.name)
	}
	parts := make([]string, len(order))
	for i, budget := range order {
		names := by[budget]
		noun := "pod"
		if len(names) > 1 {
			noun = "pods"
		}
		parts[i] = fmt.Sprintf("evicting %s %s of %s would violate %s", noun, strings.Join(names, ", "), ref, budget)
	}
	return strings.Join(parts, "; ")
}

// pods returns the pods of attempts.
func pods(attempts []attempt) []pod {
	out := make([]pod, len(attempts))
	for i, a := range attempts {
		out[i] = a.pod
	}
	return out
}

// list names pods with their states: "carts-a (CrashLoopBackOff), carts-b
// (not ready)".
func list(pods []pod) string {
	s := make([]string, len(pods))
	for i, p := range pods {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// plural counts things in English: "1 pod", "2 pods".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// were agrees with n.
func were(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

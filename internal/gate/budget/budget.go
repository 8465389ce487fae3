// Package budget is the cluster's remediation budget, a circuit breaker:
// at most Max mutating actions in a sliding window across the whole
// cluster, and at most PerNamespace of them in one namespace. When a
// budget is spent, every further action is refused until the window frees
// a slot, an operator resets it, or the operator pauses everything.
//
// The budget is kept on the cluster, in one Lease (LeaseName) in the
// provider's namespace, so that every replica spends the same budget:
// every write carries the resourceVersion it read, and a replica that
// loses a race reads again, so that two replicas never both take the last
// slot. Admit reserves a slot; Done gives it back when the action changed
// nothing. A dry run decides as usual and writes nothing.
//
// Operators act on the Lease with kubectl:
//
//	kubectl annotate lease -n NS action-provider-budget keptn-action-provider.io/paused="reason"   # pause
//	kubectl annotate lease -n NS action-provider-budget keptn-action-provider.io/paused-           # resume
//	kubectl annotate --overwrite lease -n NS action-provider-budget keptn-action-provider.io/reset=now
package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	backoff "github.com/keptn-action-provider/action-provider/internal/retry"
)

// LeaseName is the Lease that holds the budget, in the provider's namespace.
const LeaseName = "action-provider-budget"

// Annotations of the Lease. The operator writes the first two; the gate
// the others.
const (
	// PausedAnnotation, present, refuses every action; its value is the
	// reason, quoted in refusals.
	PausedAnnotation = action.AnnotationPrefix + "paused"
	// ResetAnnotation asks for a reset: the slots spent up to its value
	// (an RFC 3339 time), or up to now for anything else, stop counting.
	// The next write applies it and removes it.
	ResetAnnotation     = action.AnnotationPrefix + "reset"
	lastResetAnnotation = action.AnnotationPrefix + "last-reset"
	slotsAnnotation     = action.AnnotationPrefix + "budget-slots"
	openedAnnotation    = action.AnnotationPrefix + "budget-opened"
	recordLabel         = action.AnnotationPrefix + "record"
)

// Rule is the rule refusals name: the catalog's section.
const Rule = "budget"

// ReasonSpent is the reason of the Event recorded when the breaker opens.
const ReasonSpent = "BudgetSpent"

// DefaultWriteBound is how long one decision retries a contended or
// failing API server.
const DefaultWriteBound = 10 * time.Second

// releaseTimeout bounds giving a slot back, which runs after the action's
// own deadline may have passed.
const releaseTimeout = 10 * time.Second

// Config of a Gate.
type Config struct {
	// Namespace holds the Lease: the provider's own.
	Namespace string
	Limits
	// MaxSetting and PerNamespaceSetting name, in refusals, where Max and
	// PerNamespace are changed: "budget.max in ACTIONS_CONFIG /etc/catalog.yaml".
	MaxSetting, PerNamespaceSetting string
	// Identity names this replica in the record and in Events.
	Identity string
	// Metrics is where the gate registers its metrics; nil, nowhere.
	Metrics prometheus.Registerer
	Log     logrus.FieldLogger
	// WriteBound: 0 means DefaultWriteBound.
	WriteBound time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Gate is the budget. It is safe for concurrent use.
type Gate struct {
	client  kube.Interface
	cfg     Config
	metrics *metrics
}

var (
	_ gate.Gate       = (*Gate)(nil)
	_ gate.Maintainer = (*Gate)(nil)
)

// New returns the budget kept in c's Lease of cfg.Namespace.
func New(c kube.Interface, cfg Config) (*Gate, error) {
	if c == nil {
		return nil, errors.New("budget: nil Kubernetes client")
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("budget: invalid namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	l := cfg.Limits
	if l.Max < 1 || l.Max > MaxSlots || l.PerNamespace < 1 || l.PerNamespace > l.Max || l.Window < MinWindow || l.Window > MaxWindow {
		return nil, fmt.Errorf("budget: limits %+v out of bounds", l)
	}
	if cfg.Log == nil {
		log := logrus.New()
		log.SetOutput(io.Discard)
		cfg.Log = log
	}
	if cfg.WriteBound <= 0 {
		cfg.WriteBound = DefaultWriteBound
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Gate{client: c, cfg: cfg, metrics: m}, nil
}

// spend is one decision, as the Lease stood when it was made.
type spend struct {
	refusal *action.Refusal
	scope   string // of the refusal
	// namespace is the namespace whose budget is spent, "" for the cluster's.
	namespace string
	// opened is the Lease as written by the write that recorded a new
	// opening of the breaker, and the opening's reason.
	opened *coordinationv1.Lease
	// id is the slot taken, if any.
	id string
}

// Admit reserves a slot of the budget, or refuses when the cluster's or
// the namespace's is spent or the operator paused everything. A dry run
// decides as usual and writes nothing.
func (g *Gate) Admit(ctx context.Context, s gate.Subject) (gate.Admission, error) {
	var sp spend
	err := g.write(ctx, func(ctx context.Context) error {
		var err error
		sp, err = g.decide(ctx, s)
		return err
	})
	if err != nil {
		return gate.Admission{}, fmt.Errorf("remediation budget: %w", err)
	}
	if sp.opened != nil {
		g.metrics.openings.WithLabelValues(sp.scope).Inc()
		g.event(ctx, sp.opened, sp)
	}
	if sp.refusal != nil {
		if !s.DryRun {
			g.metrics.refusals.WithLabelValues(sp.scope).Inc()
		}
		return gate.Admission{}, sp.refusal
	}
	if sp.id == "" {
		return gate.Admission{}, nil // a dry run: nothing to give back
	}
	return gate.Admission{Done: func(ctx context.Context, changed bool) {
		if !changed {
			g.giveBack(ctx, sp.id)
		}
	}}, nil
}

// decide is one attempt at Admit, on the Lease as read now.
func (g *Gate) decide(ctx context.Context, s gate.Subject) (spend, error) {
	lease, exists, err := g.get(ctx)
	if err != nil {
		return spend{}, err
	}
	now := g.cfg.Now()
	st, err := read(lease, now, g.cfg.Window)
	if err != nil {
		return spend{}, g.unreadable(err)
	}
	g.metrics.observe(st, g.cfg.Limits)
	if st.paused {
		return spend{scope: scopePaused, refusal: action.Refuse(Rule,
			"remediation budget paused: %q (annotation %s on Lease %s/%s); to resume: kubectl annotate lease -n %s %s %s-",
			st.reason, PausedAnnotation, g.cfg.Namespace, LeaseName, g.cfg.Namespace, LeaseName, PausedAnnotation)}, nil
	}
	if r, ns := g.spent(st, s.Namespace); r != nil {
		sp := spend{refusal: r, scope: scopeCluster, namespace: ns}
		if ns != "" {
			sp.scope = scopeNamespace
		}
		key := scopeKey(ns)
		if _, open := st.opened[key]; open || s.DryRun {
			return sp, nil
		}
		// The first refusal of this opening: record it, so that the
		// replica whose write wins, and only it, reports the opening.
		limit := g.cfg.Max
		if ns != "" {
			limit = g.cfg.PerNamespace
		}
		st.opened[key] = opening{Since: now, Until: st.frees(ns, limit, g.cfg.Window)}
		st.tidy(g.cfg.Limits)
		written, err := g.put(ctx, lease, exists, st, now)
		if err != nil {
			return spend{}, err
		}
		sp.opened = written
		return sp, nil
	}
	if s.DryRun {
		return spend{}, nil
	}
	id := newID()
	st.slots = append(st.slots, slot{
		At: now, Namespace: s.Namespace, ID: id,
		Entry: clip(s.Entry, 63), Event: clip(s.Request.TriggeredID, 64), By: clip(g.cfg.Identity, 63),
	})
	st.tidy(g.cfg.Limits)
	if _, err := g.put(ctx, lease, exists, st, now); err != nil {
		return spend{}, err
	}
	g.metrics.observe(st, g.cfg.Limits)
	return spend{id: id}, nil
}

// spent refuses when the cluster's budget, or namespace's, is spent; ns is
// the namespace whose is, "" for the cluster's.
func (g *Gate) spent(st state, namespace string) (*action.Refusal, string) {
	if n := st.count(""); n >= g.cfg.Max {
		return action.Refuse(Rule, "remediation budget spent: %d of %d actions in the last %s across the cluster (%s); resets at %s, as the oldest leaves the window; %s",
			n, g.cfg.Max, human(g.cfg.Window), g.cfg.MaxSetting,
			st.frees("", g.cfg.Max, g.cfg.Window).UTC().Format(time.RFC3339), g.resetHint()), ""
	}
	// An action without a namespace (none today) counts for the cluster only.
	if n := st.count(namespace); namespace != "" && n >= g.cfg.PerNamespace {
		return action.Refuse(Rule, "remediation budget spent: %d of %d actions in namespace %s in the last %s (%s); resets at %s, as the oldest leaves the window; %s",
			n, g.cfg.PerNamespace, namespace, human(g.cfg.Window), g.cfg.PerNamespaceSetting,
			st.frees(namespace, g.cfg.PerNamespace, g.cfg.Window).UTC().Format(time.RFC3339), g.resetHint()), namespace
	}
	return nil, ""
}

func (g *Gate) resetHint() string {
	return fmt.Sprintf("to reset it now: kubectl annotate --overwrite lease -n %s %s %s=now", g.cfg.Namespace, LeaseName, ResetAnnotation)
}

// unreadable says how to recover from a record nobody can read.
func (g *Gate) unreadable(err error) error {
	return fmt.Errorf("the record on Lease %s/%s: %w; reset it: kubectl annotate --overwrite lease -n %s %s %s=now",
		g.cfg.Namespace, LeaseName, err, g.cfg.Namespace, LeaseName, ResetAnnotation)
}

// giveBack returns a slot an action did not use. It runs under its own
// deadline: the action's may be what ended it. A slot that cannot be given
// back stays spent until it leaves the window: the safe side.
func (g *Gate) giveBack(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := g.write(ctx, func(ctx context.Context) error {
		lease, exists, err := g.get(ctx)
		if err != nil || !exists {
			return err // gone: reset by deleting it, nothing to give back
		}
		now := g.cfg.Now()
		st, err := read(lease, now, g.cfg.Window)
		if err != nil {
			return g.unreadable(err)
		}
		kept := st.slots[:0]
		for _, s := range st.slots {
			if s.ID != id {
				kept = append(kept, s)
			}
		}
		if len(kept) == len(st.slots) {
			return nil // left the window, or reset: nothing to give back
		}
		st.slots = kept
		st.tidy(g.cfg.Limits)
		if _, err := g.put(ctx, lease, true, st, now); err != nil {
			return err
		}
		g.metrics.observe(st, g.cfg.Limits)
		return nil
	})
	if err != nil {
		g.cfg.Log.WithError(err).WithField("slot", id).Warn("could not give back an unused slot of the remediation budget; it counts until it leaves the window")
	}
}

// Maintain creates the Lease when it is missing, so that an operator can
// pause the budget before the first action, and refreshes the metrics
// from it.
func (g *Gate) Maintain(ctx context.Context) {
	lease, exists, err := g.get(ctx)
	if err == nil && !exists {
		_, err = g.client.CoordinationV1().Leases(g.cfg.Namespace).Create(ctx, lease, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		g.cfg.Log.WithError(err).Warn("could not read the remediation budget")
		return
	}
	if st, err := read(lease, g.cfg.Now(), g.cfg.Window); err == nil {
		g.metrics.observe(st, g.cfg.Limits)
	}
}

// get reads the Lease, or makes an empty one when there is none.
func (g *Gate) get(ctx context.Context) (*coordinationv1.Lease, bool, error) {
	lease, err := g.client.CoordinationV1().Leases(g.cfg.Namespace).Get(ctx, LeaseName, metav1.GetOptions{})
	switch {
	case err == nil:
		return lease, true, nil
	case apierrors.IsNotFound(err):
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
			Name: LeaseName, Namespace: g.cfg.Namespace,
			// Listed with the ledger's records; its Sweep leaves this kind alone.
			Labels: map[string]string{recordLabel: "budget", "app.kubernetes.io/managed-by": "action-provider"},
		}}, false, nil
	default:
		return nil, false, fmt.Errorf("read Lease %s/%s: %w", g.cfg.Namespace, LeaseName, err)
	}
}

// put writes st on the Lease read, with its resourceVersion: a conflict
// means another replica wrote since, and the decision is made again.
func (g *Gate) put(ctx context.Context, lease *coordinationv1.Lease, exists bool, st state, now time.Time) (*coordinationv1.Lease, error) {
	if err := st.store(lease, now, g.cfg.Identity); err != nil {
		return nil, err
	}
	leases := g.client.CoordinationV1().Leases(g.cfg.Namespace)
	var written *coordinationv1.Lease
	var err error
	if exists {
		written, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	} else {
		written, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Created by another replica since our read: read again.
			err = apierrors.NewConflict(coordinationv1.Resource("leases"), LeaseName, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("write Lease %s/%s: %w", g.cfg.Namespace, LeaseName, err)
	}
	return written, nil
}

// write calls fn until it succeeds, fails for good, or the write bound
// passes: a conflict (another replica wrote first) or a transient error of
// the API server is tried again.
func (g *Gate) write(ctx context.Context, fn func(context.Context) error) error {
	return backoff.Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Bound: g.cfg.WriteBound}.Do(ctx,
		func(ctx context.Context) (bool, error) {
			err := fn(ctx)
			return err != nil && again(err), err
		}, nil)
}

// again says whether an attempt that failed with err may pass when made
// again: another replica wrote first, the API server was busy or briefly
// unreachable.
func again(err error) bool {
	if apierrors.IsConflict(err) {
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
			apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
	}
	var lost *url.Error // client-go's error for a request that got no answer
	return errors.As(err, &lost) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// event records, once per opening of the breaker, a Warning Event on the
// Lease: kubectl get events -n NS shows it. A failure is logged: the
// refusals say the same.
func (g *Gate) event(ctx context.Context, lease *coordinationv1.Lease, sp spend) {
	now := metav1.NewTime(g.cfg.Now())
	what := "every action is refused"
	if sp.namespace != "" {
		what = "every action in namespace " + sp.namespace + " is refused"
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", LeaseName, now.UnixNano()), Namespace: g.cfg.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: g.cfg.Namespace, Name: LeaseName,
			UID: lease.UID, ResourceVersion: lease.ResourceVersion,
		},
		Reason:              ReasonSpent,
		Message:             "circuit breaker open: " + what + "; " + sp.refusal.Reason,
		Source:              corev1.EventSource{Component: audit.Component},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		Type:                corev1.EventTypeWarning,
		Action:              "Refuse",
		ReportingController: audit.Component,
		ReportingInstance:   g.cfg.Identity,
	}
	if _, err := g.client.CoreV1().Events(g.cfg.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		g.cfg.Log.WithError(err).Warn("could not record the BudgetSpent event; the breaker is open all the same")
	}
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// Package approval is the gate that makes a person approve a risky action
// before it runs, the Kubernetes way: the provider marks the target with a
// pending approval that names the run's triggered id, records a Kubernetes
// Event with the kubectl command that approves it and the one that rejects
// it, and waits, bounded, until one of them names this triggered id.
//
// The authority is RBAC: whoever may annotate the target may approve. Keptn's
// own approval task is not evidence: what it leaves in the action.triggered
// event is a "result: pass" any sender of events can write, and the event
// itself can be forged by anyone who can publish to Keptn's NATS or holds an
// API token (docs/guardrails.md, "Trust boundary").
package approval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// Rule names the gate in refusals and in the catalog.
const Rule = "approval"

// The annotations of an approval. Approve and reject hold the triggered id
// they decide, optionally followed by a space and a note ("<id> alice: the
// dashboards agree"); a value naming another triggered id is ignored.
const (
	PendingKey = action.AnnotationPrefix + "approval-pending"
	RequestKey = action.AnnotationPrefix + "approval-request"
	ApproveKey = action.AnnotationPrefix + "approve"
	RejectKey  = action.AnnotationPrefix + "reject"
)

// The Events' reasons.
const (
	ReasonPending  = "ApprovalPending"
	ReasonGranted  = "ApprovalGranted"
	ReasonRejected = "ApprovalRejected"
	ReasonTimedOut = "ApprovalTimedOut"
)

const (
	// DefaultTimeout is how long a run waits for a person by default.
	DefaultTimeout = 4 * time.Minute
	// Room is what the wait leaves of the action's deadline to act, or
	// half of it when that is shorter: an approval at the last second must
	// not leave the action no time to change the target.
	Room = 30 * time.Second
	// cleanupTimeout bounds the removal of the annotations, which runs
	// even when the action's context has ended.
	cleanupTimeout = 10 * time.Second
)

// safeID is a triggered id that can be pasted into a shell as it is; Keptn's
// are UUIDs.
var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// DefaultProductionStages are the stages where a rollback needs approval.
var DefaultProductionStages = []string{"production", "prod"}

// Config is the gate's configuration.
type Config struct {
	// Timeout is the longest wait for a decision.
	Timeout time.Duration
	// Defaults: scale to 0, delete-pods with "all": true and rollback in a
	// production stage need approval unless the entry says never.
	Defaults bool
	// ProductionStages are matched case-insensitively.
	ProductionStages []string
	// ScaleToZero says a scale may land on 0 at all (SCALE_MIN_REPLICAS is
	// 0); otherwise the scale's bound refuses it, and asking a person first
	// would be for nothing.
	ScaleToZero bool
	// Namespace is the provider's own: the kinds without a target wait on
	// a Lease there.
	Namespace string
	// Identity names this replica in the Events.
	Identity string
}

// Gate waits for approvals. Use New.
type Gate struct {
	client  kube.Interface
	dynamic dynamic.Interface
	cfg     Config
	log     logrus.FieldLogger
	now     func() time.Time
}

// New returns the gate. dyn reaches Argo Rollouts (nil: none); log may be
// nil.
func New(c kube.Interface, dyn dynamic.Interface, cfg Config, log logrus.FieldLogger) *Gate {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Gate{client: c, dynamic: dyn, cfg: cfg, log: log, now: time.Now}
}

// Config is the configuration the gate runs with.
func (g *Gate) Config() Config { return g.cfg }

// Admit admits at once what needs no approval. Otherwise, in a dry run, it
// admits with a note of the approval the run would wait for; in a real
// run it asks, waits and admits only an approval of this triggered id.
func (g *Gate) Admit(ctx context.Context, s gate.Subject) (gate.Admission, error) {
	n, ok := g.needs(s)
	if !ok {
		return gate.Admission{}, nil
	}
	if g.client == nil {
		return gate.Admission{}, errors.New("approval: no Kubernetes client to ask for approval with")
	}
	id := s.Request.TriggeredID
	if !safeID.MatchString(id) {
		// The id goes into a command a person may paste into a shell: a
		// forged event must not choose what that command does.
		return gate.Admission{}, action.Refuse(Rule, "%s needs approval, but the triggered id %q cannot be written safely in a kubectl command (letters, digits, '.', '_', ':', '-', at most 128)", n.why, id)
	}
	target, err := g.target(s)
	if err != nil {
		return gate.Admission{}, err
	}
	approve, reject := target.command(ApproveKey, id), target.command(RejectKey, id)
	wait, err := g.bound(ctx, n)
	if err != nil {
		return gate.Admission{}, err
	}
	if s.DryRun {
		// A note, not a refusal: the dry run goes on to report what the
		// action would change, which is what the person who will approve
		// wants to know.
		return gate.Admission{Warning: fmt.Sprintf("approval needed (%s): a real run would wait up to %s for `%s`", n.why, wait, approve)}, nil
	}

	obj, err := target.open(ctx, id, fmt.Sprintf("%s, entry %q, shkeptncontext %s; until %s; approve: %s; reject: %s",
		n.why, s.Entry, s.Request.KeptnContext, g.now().Add(wait).UTC().Format(time.RFC3339), approve, reject))
	if err != nil {
		return gate.Admission{}, err
	}
	last := obj
	defer func() { target.close(ctx, id, last, g.log) }()

	g.event(ctx, target, obj, s, ReasonPending, corev1.EventTypeWarning,
		fmt.Sprintf("waits up to %s for approval: %s; approve: %s; reject: %s", wait, n.why, approve, reject))

	start := g.now()
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	d, err := target.await(waitCtx, id, obj)
	if d.obj != nil {
		last = d.obj
	}
	switch {
	case err == nil && d.verdict == approved:
		who := approver(d.obj, ApproveKey, d.note)
		audit.NoteFrom(ctx).Approver(who)
		g.event(ctx, target, d.obj, s, ReasonGranted, corev1.EventTypeNormal,
			fmt.Sprintf("approved %s after %s: %s", who, g.now().Sub(start).Round(time.Second), n.why))
		g.log.WithFields(logrus.Fields{"triggeredid": id, "target": target.String(), "by": who}).Info("approval granted")
		return gate.Admission{}, nil
	case err == nil && d.verdict == rejected:
		who := approver(d.obj, RejectKey, d.note)
		g.event(ctx, target, d.obj, s, ReasonRejected, corev1.EventTypeWarning, fmt.Sprintf("rejected %s: %s", who, n.why))
		return gate.Admission{}, action.Refuse(Rule, "approval rejected %s on %s: %s", who, target, n.why)
	case errors.Is(err, errGone):
		return gate.Admission{}, action.Refuse(Rule, "%s was deleted while %s waited for approval", target, n.why)
	case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		// The wait's own bound, not the action's.
		g.event(ctx, target, last, s, ReasonTimedOut, corev1.EventTypeWarning, fmt.Sprintf("not approved within %s: %s", wait, n.why))
		return gate.Admission{}, action.Refuse(Rule, "not approved within %s: %s; approve with `%s` (approval.timeout sets the wait; %s)",
			wait, n.why, approve, n.exempt)
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return gate.Admission{}, action.Refuse(Rule, "not approved within %s, the action's deadline: %s", g.now().Sub(start).Round(time.Second), n.why)
	default:
		return gate.Admission{}, fmt.Errorf("wait for approval on %s: %w", target, err)
	}
}

// Longest is the longest wait a deadline of d allows: d less Room, or
// half of d when d is under twice Room.
func Longest(d time.Duration) time.Duration { return d - min(Room, d/2) }

// bound is the wait of one run: the configured timeout, cut so that the
// action has time left to act after it (Longest).
func (g *Gate) bound(ctx context.Context, n need) (time.Duration, error) {
	wait := g.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left := Longest(dl.Sub(g.now()))
		if left <= 0 {
			return 0, action.Refuse(Rule, "%s needs approval, but the action's deadline has passed; raise the entry's guardrails.timeout or ACTION_TIMEOUT", n.why)
		}
		if left >= time.Second {
			left = left.Truncate(time.Second) // for the messages: "not approved within 1m29s"
		}
		wait = min(wait, left)
	}
	return wait, nil
}

// event records what happened to an approval on its object. A failure is
// logged: the annotations say the same to whoever looks.
func (g *Gate) event(ctx context.Context, t *target, obj metav1.Object, s gate.Subject, reason, typ, change string) {
	now := metav1.NewTime(g.now())
	msg := audit.Entry{Action: s.Entry, Change: change, Context: s.Request.KeptnContext, Trigger: s.Request.TriggeredID,
		Problem: s.Request.Problem.ProblemTitle}.Message()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", t.name, now.UnixNano()), Namespace: t.namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: t.apiVersion, Kind: t.kind, Namespace: t.namespace, Name: t.name,
			UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
		},
		Reason: reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: audit.Component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Action: "Approve", ReportingController: audit.Component, ReportingInstance: g.cfg.Identity,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := g.client.CoreV1().Events(t.namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		g.log.WithError(err).WithFields(logrus.Fields{"triggeredid": s.Request.TriggeredID, "reason": reason}).
			Warn("approval event not recorded on " + t.String())
	}
}

// approver says who decided, as far as the object tells: the field manager
// that wrote the annotation (kubectl annotate is "kubectl-annotate"; the user
// is in the API server's audit log, not on the object) and the note after
// the triggered id.
func approver(obj metav1.Object, key, note string) string {
	var who []string
	for _, mf := range obj.GetManagedFields() {
		if mf.FieldsV1 != nil && strings.Contains(mf.FieldsV1.GetRawString(), `"f:`+key+`"`) {
			who = append(who, "by "+mf.Manager)
			break
		}
	}
	if note != "" {
		who = append(who, fmt.Sprintf("(%q)", note))
	}
	if len(who) == 0 {
		return "through " + key
	}
	return strings.Join(who, " ")
}

// Package ledger keeps, on the cluster, what must hold across replicas and
// restarts of the provider, as coordination.k8s.io Leases in the
// provider's own namespace:
//
//   - which triggered events were taken, so that an event delivered twice,
//     even to two replicas, runs and is reported once (Claim);
//   - which target is being acted on, so that two actions never act on one
//     workload at the same time (Lock);
//   - when each action last changed each target, so that a remediation
//     loop cannot restart or scale the same workload over and over
//     (the cooldown, checked by Lock and recorded by Hold.Release).
//
// The API server is the arbiter: every write carries the resourceVersion it
// read, and a replica that loses a race reads again.
package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	backoff "github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Labels and annotations on the Leases. kubectl get leases -l
// keptn-action-provider.io/record lists them all.
const (
	recordLabel    = action.AnnotationPrefix + "record"
	recordEvent    = "event"
	recordTarget   = "target"
	managedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "action-provider"
	triggeredIDKey = action.AnnotationPrefix + "triggeredid"
	holderKey      = action.AnnotationPrefix + "holder"
	targetKey      = action.AnnotationPrefix + "target"
	lastRunPrefix  = action.AnnotationPrefix + "last-"
	releaseTimeout = 10 * time.Second
)

// Rules, as named in refusals.
const (
	RuleLock     = "one action at a time per target"
	RuleCooldown = "cooldown"
)

// Cooldown is the least time between two changes of one target by one
// action, and the setting that chose it, named in refusals so that whoever
// reads one knows what to change.
type Cooldown struct {
	Period  time.Duration
	Setting string // "ACTION_COOLDOWN", or a catalog entry's field
}

// DefaultHeartbeat is how often a replica says it is alive.
const DefaultHeartbeat = 10 * time.Second

// Config tunes a Ledger.
type Config struct {
	// Namespace holds the Leases: the provider's own.
	Namespace string
	// Identity names this replica in the records: its pod name. Each
	// process adds a nonce of its own, so that a pod restarted under the
	// same name never takes its predecessor's records for its own, nor its
	// own for its predecessor's.
	Identity string
	// EventTTL is how long a claimed event is remembered (DEDUP_TTL).
	EventTTL time.Duration
	// LockTTL is how long a lock outlives a replica that died holding it:
	// the action timeout plus a margin.
	LockTTL time.Duration
	// HeartbeatPeriod is how often this replica says it is alive; after
	// three missed ones, the actions it started count as orphaned.
	HeartbeatPeriod time.Duration
	// IdleTTL is how long a target's Lease (its lock and cooldowns) and a
	// dead process's heartbeat are kept after their last use; 0 means
	// DefaultIdleTTL. It must outlast the longest cooldown.
	IdleTTL time.Duration
	// WriteBound is how long one write is retried on transient errors
	// (timeouts, 429, 5xx, a lost connection); 0 means DefaultWriteBound.
	WriteBound time.Duration
	// HeartbeatClient, when set, is the client the heartbeats go through:
	// one with a rate limit of its own, so that a storm of actions queued
	// behind the shared client-side limit never delays the renewal that
	// keeps their claims this replica's (make bench-storm saw renewals land
	// 2.7 s late). nil: the ledger's client.
	HeartbeatClient kube.Interface
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultIdleTTL    = 24 * time.Hour
	DefaultWriteBound = 30 * time.Second
)

// Ledger is the cluster-side record. It is safe for concurrent use.
type Ledger struct {
	client kube.Interface
	cfg    Config
	// holder is this process in the records: Identity and a nonce.
	holder string

	mu sync.Mutex
	// beatingSince is when this process's heartbeats last began to go
	// through without a failure; zero after a failed one.
	beatingSince time.Time
}

// New returns a Ledger writing Leases through c.
func New(c kube.Interface, cfg Config) (*Ledger, error) {
	if c == nil {
		return nil, errors.New("ledger: nil Kubernetes client")
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("ledger: invalid namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	if cfg.EventTTL <= 0 || cfg.LockTTL <= 0 {
		return nil, fmt.Errorf("ledger: event TTL (%s) and lock TTL (%s) must be positive", cfg.EventTTL, cfg.LockTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HeartbeatPeriod <= 0 {
		cfg.HeartbeatPeriod = DefaultHeartbeat
	}
	if cfg.IdleTTL <= 0 {
		cfg.IdleTTL = DefaultIdleTTL
	}
	if cfg.WriteBound <= 0 {
		cfg.WriteBound = DefaultWriteBound
	}
	nonce := make([]byte, 3)
	_, _ = rand.Read(nonce) // never fails
	return &Ledger{client: c, cfg: cfg, holder: cfg.Identity + "." + hex.EncodeToString(nonce)}, nil
}

// Holder is this process's name in the records: the pod name and a nonce.
func (l *Ledger) Holder() string { return l.holder }

// write calls fn until it succeeds, fails for good, or the write bound
// passes. The API server may time out, throttle, restart or be briefly
// unreachable; a record that is not written costs a second finished event
// or a lost one, so only errors that cannot pass are final.
func (l *Ledger) write(ctx context.Context, fn func(context.Context) error) error {
	return backoff.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Bound: l.cfg.WriteBound}.Do(ctx,
		func(ctx context.Context) (bool, error) {
			err := fn(ctx)
			return err != nil && transient(err), err
		}, nil)
}

// transient says whether an error from the API server may pass if the call
// is made again.
func transient(err error) bool {
	switch {
	case errors.Is(err, lifecycle.ErrTakenOver),
		errors.Is(err, context.Canceled),
		apierrors.IsForbidden(err), apierrors.IsUnauthorized(err),
		apierrors.IsInvalid(err), apierrors.IsBadRequest(err),
		apierrors.IsNotFound(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsRequestEntityTooLargeError(err):
		return false
	}
	return true
}

func (l *Ledger) leases() leaseClient { return l.client.CoordinationV1().Leases(l.cfg.Namespace) }

// heartbeatLeases is leases() through the heartbeat's own client, if any.
func (l *Ledger) heartbeatLeases() leaseClient {
	if l.cfg.HeartbeatClient == nil {
		return l.leases()
	}
	return l.cfg.HeartbeatClient.CoordinationV1().Leases(l.cfg.Namespace)
}

type leaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error)
}

// Claim records that this process takes the event with triggeredID. It
// returns false when the event was already taken, by this process or
// another, within the event TTL: the caller must then send nothing,
// because a second started event for one triggered event would leave Keptn
// waiting for a second finished one.
func (l *Ledger) Claim(ctx context.Context, triggeredID string) (first bool, err error) {
	err = l.write(ctx, func(ctx context.Context) error {
		first, err = l.claim(ctx, triggeredID)
		return err
	})
	return first, err
}

func (l *Ledger) claim(ctx context.Context, triggeredID string) (bool, error) {
	now := l.cfg.Now()
	name := eventLeaseName(triggeredID)
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{recordLabel: recordEvent, managedByLabel: managedBy},
			Annotations: map[string]string{triggeredIDKey: triggeredID},
		},
		Spec: l.spec(l.holder, now, l.cfg.EventTTL),
	}
	_, err := l.leases().Create(ctx, lease, metav1.CreateOptions{})
	switch {
	case err == nil:
		return true, nil
	case !apierrors.IsAlreadyExists(err):
		return false, fmt.Errorf("claim event %s: %w", triggeredID, err)
	}
	old, err := l.leases().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("read the claim of event %s: %w", triggeredID, err)
	}
	// Our own create, whose answer was lost on the way back and was
	// retried: still ours, as long as nothing was recorded on it since.
	if deref(old.Spec.HolderIdentity) == l.holder && old.Labels[stateLabel] == "" {
		return true, nil
	}
	// Taken before; it counts only while its record is fresh. An expired
	// one is taken over, with the resourceVersion read, so that of two
	// processes racing for it one wins.
	if !expired(old.Spec, now) {
		return false, nil
	}
	old.Spec = l.spec(l.holder, now, l.cfg.EventTTL)
	delete(old.Labels, stateLabel)
	delete(old.Annotations, recordKey)
	delete(old.Annotations, finishedKey)
	if _, err := l.leases().Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return false, nil // another process took it over first
		}
		return false, fmt.Errorf("claim event %s: %w", triggeredID, err)
	}
	return true, nil
}

// maxSweepDeletes bounds the deletes of one Sweep, so that a pass after a
// burst of events stays short; the next pass goes on.
const maxSweepDeletes = 500

// Sweep deletes the records nobody needs any more, a page at a time and at
// most maxSweepDeletes per call: expired event claims, heartbeats of
// processes dead for IdleTTL, and targets' Leases unheld and untouched for
// IdleTTL. The provider calls it on its own schedule, never inside a
// claim, so that clean-up can never delay an event. It returns how many
// Leases it deleted.
func (l *Ledger) Sweep(ctx context.Context) (int, error) {
	now := l.cfg.Now()
	deleted := 0
	opts := metav1.ListOptions{LabelSelector: recordLabel, Limit: pageSize}
	for {
		list, err := l.leases().List(ctx, opts)
		if err != nil {
			return deleted, fmt.Errorf("list the provider's records: %w", err)
		}
		for _, lease := range list.Items {
			if !l.stale(&lease, now) {
				continue
			}
			rv := lease.ResourceVersion
			err := l.leases().Delete(ctx, lease.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
			switch {
			case err == nil:
				deleted++
			case apierrors.IsConflict(err), apierrors.IsNotFound(err):
				// Renewed or removed since the list: not stale.
			default:
				return deleted, fmt.Errorf("delete record %s: %w", lease.Name, err)
			}
			if deleted >= maxSweepDeletes {
				return deleted, nil
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return deleted, nil
		}
	}
}

// stale says whether a record is no longer needed.
func (l *Ledger) stale(lease *coordinationv1.Lease, now time.Time) bool {
	switch lease.Labels[recordLabel] {
	case recordEvent:
		// A started event whose process died is reported by Orphans
		// first, however old.
		switch lease.Labels[stateLabel] {
		case stateStarted, stateFinishing, stateRecover:
			return false
		}
		return expired(lease.Spec, now)
	case recordHeart, recordTarget:
		return expired(lease.Spec, now) && idleFor(lease.Spec, now) > l.cfg.IdleTTL
	}
	return false
}

// idleFor is how long ago a Lease was last renewed.
func idleFor(s coordinationv1.LeaseSpec, now time.Time) time.Duration {
	if s.RenewTime == nil {
		return 1<<63 - 1
	}
	return now.Sub(s.RenewTime.Time)
}

// Lock takes the target's lock for action, on behalf of the event
// triggeredID. It refuses, with an *action.Refusal, while another action
// holds the target or while action is cooling down on it (a zero cooldown
// never refuses). With dryRun it only checks: nothing is written, and the
// Hold releases nothing.
func (l *Ledger) Lock(ctx context.Context, ref workload.Ref, actionName, triggeredID string, cooldown Cooldown, dryRun bool) (*Hold, error) {
	name := targetLeaseName(ref)
	h := &Hold{ledger: l, name: name, action: actionName, triggeredID: triggeredID, dryRun: dryRun}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		now := l.cfg.Now()
		lease, err := l.leases().Get(ctx, name, metav1.GetOptions{})
		exists := err == nil
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      map[string]string{recordLabel: recordTarget, managedByLabel: managedBy},
				Annotations: map[string]string{targetKey: ref.String()},
			}}
		case err != nil:
			return fmt.Errorf("read the lock of %s: %w", ref, err)
		}
		if err := refuse(ref, lease, actionName, triggeredID, cooldown, now); err != nil {
			return err
		}
		if dryRun {
			return nil
		}
		holder, _ := json.Marshal(record{Action: actionName, TriggeredID: triggeredID, Replica: l.holder, Time: now.UTC()})
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[holderKey] = string(holder)
		lease.Spec = l.spec(triggeredID, now, l.cfg.LockTTL)
		if exists {
			_, err = l.leases().Update(ctx, lease, metav1.UpdateOptions{})
		} else {
			_, err = l.leases().Create(ctx, lease, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Created by another replica since our read: read again.
				err = apierrors.NewConflict(coordinationv1.Resource("leases"), name, err)
			}
		}
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("lock %s: %w", ref, err)
		}
		return err
	})
	if err != nil {
		var refusal *action.Refusal
		if !errors.As(err, &refusal) && apierrors.IsConflict(err) {
			return nil, fmt.Errorf("lock %s: still contended after retries: %w", ref, err)
		}
		return nil, err
	}
	return h, nil
}

// refuse applies the lock and the cooldown to what the Lease says.
func refuse(ref workload.Ref, lease *coordinationv1.Lease, actionName, triggeredID string, cooldown Cooldown, now time.Time) error {
	if holder := deref(lease.Spec.HolderIdentity); holder != "" && !expired(lease.Spec, now) {
		var r record
		_ = json.Unmarshal([]byte(lease.Annotations[holderKey]), &r)
		if holder == triggeredID {
			return action.Refuse(RuleLock, "this event is already being handled on %s by replica %s since %s",
				ref, r.Replica, r.Time.Format(time.RFC3339))
		}
		return action.Refuse(RuleLock, "%s is busy: action %s (triggeredid %s) has been running on it since %s",
			ref, r.Action, holder, r.Time.Format(time.RFC3339))
	}
	if cooldown.Period <= 0 {
		return nil
	}
	var last record
	if err := json.Unmarshal([]byte(lease.Annotations[lastRunKey(actionName)]), &last); err != nil {
		return nil // never ran, or a record we cannot read: no cooldown
	}
	if since := now.Sub(last.Time); since < cooldown.Period {
		return action.Refuse(RuleCooldown, "%s changed %s %s ago (triggeredid %s); it may run again in %s (%s is %s)",
			actionName, ref, since.Round(time.Second), last.TriggeredID,
			(cooldown.Period - since).Round(time.Second), cooldown.Setting, cooldown.Period)
	}
	return nil
}

// Hold is a taken lock. Release it when the action is over.
type Hold struct {
	ledger      *Ledger
	name        string
	action      string
	triggeredID string
	dryRun      bool
}

// Release gives the lock up and, when the action changed the target,
// starts its cooldown. It runs under its own short deadline, because the
// action's context may be the very thing that ended: a lock left behind
// would block the target until it expires.
func (h *Hold) Release(ctx context.Context, changed bool) error {
	if h == nil || h.dryRun {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	return h.ledger.write(ctx, func(ctx context.Context) error { return h.release(ctx, changed) })
}

func (h *Hold) release(ctx context.Context, changed bool) error {
	l := h.ledger
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := l.leases().Get(ctx, h.name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("release lock %s: %w", h.name, err)
		}
		now := metav1.NewMicroTime(l.cfg.Now())
		if deref(lease.Spec.HolderIdentity) == h.triggeredID {
			lease.Spec.HolderIdentity = nil
			delete(lease.Annotations, holderKey)
		}
		// The last use, from which Sweep counts IdleTTL.
		lease.Spec.RenewTime = &now
		if changed {
			last, _ := json.Marshal(record{Action: h.action, TriggeredID: h.triggeredID, Replica: l.holder, Time: now.UTC()})
			if lease.Annotations == nil {
				lease.Annotations = map[string]string{}
			}
			lease.Annotations[lastRunKey(h.action)] = string(last)
		}
		if _, err := l.leases().Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("release lock %s: %w", h.name, err)
		}
		return nil
	})
}

// record is the JSON kept in the holder and last-run annotations.
type record struct {
	Action      string    `json:"action"`
	TriggeredID string    `json:"triggeredid"`
	Replica     string    `json:"replica,omitempty"`
	Time        time.Time `json:"time"`
}

func (l *Ledger) spec(holder string, now time.Time, ttl time.Duration) coordinationv1.LeaseSpec {
	t := metav1.NewMicroTime(now)
	secs := int32(ttl.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &t, RenewTime: &t}
}

// expired says whether a lease's holder has lapsed.
func expired(s coordinationv1.LeaseSpec, now time.Time) bool {
	if s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second))
}

// targetLeaseName is readable when it fits ("target.deployment.ns.carts"),
// hashed when it does not.
func targetLeaseName(ref workload.Ref) string {
	name := "target." + strings.ToLower(string(ref.Kind)) + "." + ref.Namespace + "." + ref.Name
	if len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	return "target-" + digest(ref.String())
}

// lastRunKey is the annotation holding action's last run. An annotation
// name is at most 63 characters of [a-z0-9A-Z._-].
func lastRunKey(actionName string) string {
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '-'
	}, actionName)
	if len("last-"+n) > validation.LabelValueMaxLength {
		n = digest(actionName)[:16]
	}
	return lastRunPrefix + n
}

func eventLeaseName(triggeredID string) string { return "event-" + digest(triggeredID) }

func heartbeatLeaseName(holder string) string { return "replica-" + digest(holder) }

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

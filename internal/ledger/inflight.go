package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// What a claimed event's Lease says of its action, so that when the process
// running it dies, another one can still send its finished event: Keptn
// waits for one after every started, forever.
//
//	(claimed) → started → finishing → finished
//	                 ↘        ↘
//	                  recovering → finished     (taken over by another process)
//
// "finishing" carries the finished event itself, written before it is sent:
// a process that takes it over sends that same event, with the action's real
// result, instead of guessing.
const (
	stateLabel     = action.AnnotationPrefix + "state"
	stateStarted   = "started"
	stateFinishing = "finishing"
	stateFinished  = "finished"
	stateRecover   = "recovering"
	recordKey      = action.AnnotationPrefix + "event"
	finishedKey    = action.AnnotationPrefix + "finished"
	recordHeart    = "replica"
	heartbeatScale = 3 // a process is dead after this many missed heartbeats
	pageSize       = 100
)

// Started records that the event's started is about to be sent and its
// action runs here, with record, what a finished event needs of it.
func (l *Ledger) Started(ctx context.Context, triggeredID string, record []byte) error {
	return l.updateEvent(ctx, triggeredID, func(lease *coordinationv1.Lease) error {
		lease.Labels[stateLabel] = stateStarted
		lease.Annotations[recordKey] = string(record)
		return nil
	})
}

// Finishing records, before it is sent, the finished event of an action
// this process ran. The write carries the resourceVersion it read, so it
// fails with lifecycle.ErrTakenOver if another process took the event over since:
// of the two, exactly one sends a finished event.
func (l *Ledger) Finishing(ctx context.Context, triggeredID string, finished []byte) error {
	return l.updateEvent(ctx, triggeredID, func(lease *coordinationv1.Lease) error {
		if deref(lease.Spec.HolderIdentity) != l.holder {
			return lifecycle.ErrTakenOver
		}
		lease.Labels[stateLabel] = stateFinishing
		lease.Annotations[finishedKey] = string(finished)
		return nil
	})
}

// Finished records that the event's finished was delivered. The claim
// stays until its TTL, so that a redelivery is still recognised.
func (l *Ledger) Finished(ctx context.Context, triggeredID string) error {
	return l.updateEvent(ctx, triggeredID, func(lease *coordinationv1.Lease) error {
		lease.Labels[stateLabel] = stateFinished
		// A refusal or an error leaves no Event on a target: this short
		// summary is what `action-provider history` can say of it.
		if s := audit.Summarize([]byte(lease.Annotations[recordKey]), []byte(lease.Annotations[finishedKey])); s != "" {
			lease.Annotations[audit.OutcomeAnnotation] = s
		}
		delete(lease.Annotations, recordKey)
		delete(lease.Annotations, finishedKey)
		return nil
	})
}

// updateEvent reads the event's Lease, changes it and writes it back,
// reading again on a conflict and retrying transient errors within the
// write bound. change may refuse with an error, which is returned as is.
func (l *Ledger) updateEvent(ctx context.Context, triggeredID string, change func(*coordinationv1.Lease) error) error {
	name := eventLeaseName(triggeredID)
	return l.write(ctx, func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			lease, err := l.leases().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read the claim of event %s: %w", triggeredID, err)
			}
			if lease.Labels == nil {
				lease.Labels = map[string]string{}
			}
			if lease.Annotations == nil {
				lease.Annotations = map[string]string{}
			}
			if err := change(lease); err != nil {
				return err
			}
			if _, err := l.leases().Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
				if apierrors.IsConflict(err) {
					return err
				}
				return fmt.Errorf("record event %s: %w", triggeredID, err)
			}
			return nil
		})
	})
}

// Heartbeat says this process is alive, for three heartbeat periods.
func (l *Ledger) Heartbeat(ctx context.Context) error {
	name := heartbeatLeaseName(l.holder)
	err := l.write(ctx, func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			now := l.cfg.Now()
			lease, err := l.heartbeatLeases().Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
					Name:   name,
					Labels: map[string]string{recordLabel: recordHeart, managedByLabel: managedBy},
				}}
				lease.Spec = l.spec(l.holder, now, l.heartbeatTTL())
				_, err = l.heartbeatLeases().Create(ctx, lease, metav1.CreateOptions{})
				if apierrors.IsAlreadyExists(err) {
					return apierrors.NewConflict(coordinationv1.Resource("leases"), name, err)
				}
			case err == nil:
				renew := metav1.NewMicroTime(now)
				lease.Spec.RenewTime = &renew
				_, err = l.heartbeatLeases().Update(ctx, lease, metav1.UpdateOptions{})
			}
			if err != nil && !apierrors.IsConflict(err) {
				return fmt.Errorf("heartbeat of %s: %w", l.holder, err)
			}
			return err
		})
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.beatingSince = time.Time{}
	case l.beatingSince.IsZero():
		l.beatingSince = l.cfg.Now()
	}
	return err
}

func (l *Ledger) heartbeatTTL() time.Duration {
	return heartbeatScale * l.cfg.HeartbeatPeriod
}

// judging reports whether this process may judge others dead: only after
// its own heartbeats have gone through for a whole heartbeat TTL. A process
// that could not reach the API server, or has just started, cannot tell a
// dead process from one whose heartbeats failed for the same reason its
// own did, and would report live actions as interrupted.
func (l *Ledger) judging(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.beatingSince.IsZero() && now.Sub(l.beatingSince) >= l.heartbeatTTL()
}

// alive reports whether the process holder's heartbeat is fresh.
func (l *Ledger) alive(ctx context.Context, holder string, now time.Time) (bool, error) {
	lease, err := l.leases().Get(ctx, heartbeatLeaseName(holder), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return !expired(lease.Spec, now), nil
}

// Orphans finds the actions that were started, and are not finished, by a
// process whose heartbeat has lapsed (it was killed, or its node went away),
// and takes them over, so that exactly one process reports each. Records
// this process holds are never orphans: it is alive, and finishes them
// itself. Records being recovered by a process that died are taken over
// again, so that a recovery is retried until it is delivered.
func (l *Ledger) Orphans(ctx context.Context) ([]lifecycle.Orphan, error) {
	now := l.cfg.Now()
	if !l.judging(now) {
		return nil, nil
	}
	heartbeats := map[string]bool{}
	var orphans []lifecycle.Orphan
	opts := metav1.ListOptions{
		LabelSelector: fmt.Sprintf("%s=%s,%s in (%s,%s,%s)", recordLabel, recordEvent, stateLabel, stateStarted, stateFinishing, stateRecover),
		Limit:         pageSize,
	}
	for {
		list, err := l.leases().List(ctx, opts)
		if err != nil {
			return orphans, fmt.Errorf("list the started events: %w", err)
		}
		for i := range list.Items {
			o, ok, err := l.takeOver(ctx, &list.Items[i], now, heartbeats)
			if err != nil {
				return orphans, err
			}
			if ok {
				orphans = append(orphans, o)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return orphans, nil
		}
	}
}

// takeOver takes one event's record over if its process is dead.
func (l *Ledger) takeOver(ctx context.Context, lease *coordinationv1.Lease, now time.Time, heartbeats map[string]bool) (lifecycle.Orphan, bool, error) {
	id, holder := lease.Annotations[triggeredIDKey], deref(lease.Spec.HolderIdentity)
	if holder == l.holder {
		return lifecycle.Orphan{}, false, nil
	}
	// Too young to judge: a process that has just started may take an
	// event before its first heartbeat is on record.
	if lease.Spec.AcquireTime != nil && now.Sub(lease.Spec.AcquireTime.Time) < l.heartbeatTTL() {
		return lifecycle.Orphan{}, false, nil
	}
	alive, known := heartbeats[holder]
	if !known {
		var err error
		if alive, err = l.alive(ctx, holder, now); err != nil {
			return lifecycle.Orphan{}, false, fmt.Errorf("read the heartbeat of %s: %w", holder, err)
		}
		heartbeats[holder] = alive
	}
	if alive {
		return lifecycle.Orphan{}, false, nil
	}
	o := lifecycle.Orphan{ID: id, Record: []byte(lease.Annotations[recordKey]),
		Finished: []byte(lease.Annotations[finishedKey]), Replica: holder}
	if lease.Spec.AcquireTime != nil {
		o.Since = lease.Spec.AcquireTime.Time
	}
	// Take it over with the resourceVersion read: of two processes that
	// found it, one wins and reports it.
	lease.Spec.HolderIdentity = &l.holder
	lease.Labels[stateLabel] = stateRecover
	if _, err := l.leases().Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return lifecycle.Orphan{}, false, nil
		}
		return lifecycle.Orphan{}, false, fmt.Errorf("take over event %s: %w", id, err)
	}
	return o, true, nil
}

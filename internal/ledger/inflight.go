package ledger

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/guard"
)

// What a claimed event's Lease says of its action, so that when the replica
// running it dies, another one can still send its finished event: Keptn
// waits for one after every started, forever.
const (
	stateLabel     = guard.AnnotationPrefix + "state"
	stateStarted   = "started"
	stateFinished  = "finished"
	recordKey      = guard.AnnotationPrefix + "event"
	recordHeart    = "replica"
	heartbeatScale = 3 // a replica is dead after this many missed heartbeats
)

// Orphan is an action a replica started and will never finish.
type Orphan struct {
	ID string
	// Record is what Started was given: what a finished event needs.
	Record []byte
	// Replica is the one that started it; Since, when.
	Replica string
	Since   time.Time
}

// Started records that the event's started was sent and its action runs
// here, with record, what a finished event needs of it.
func (l *Ledger) Started(ctx context.Context, triggeredID string, record []byte) error {
	return l.updateEvent(ctx, triggeredID, func(lease *coordinationv1.Lease) {
		lease.Labels[stateLabel] = stateStarted
		lease.Annotations[recordKey] = string(record)
	})
}

// Finished records that the event's finished was sent. The claim stays
// until its TTL, so that a redelivery is still recognised.
func (l *Ledger) Finished(ctx context.Context, triggeredID string) error {
	return l.updateEvent(ctx, triggeredID, func(lease *coordinationv1.Lease) {
		lease.Labels[stateLabel] = stateFinished
		delete(lease.Annotations, recordKey)
	})
}

func (l *Ledger) updateEvent(ctx context.Context, triggeredID string, change func(*coordinationv1.Lease)) error {
	name := "event-" + digest(triggeredID)
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
		change(lease)
		if _, err := l.leases().Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("record event %s: %w", triggeredID, err)
		}
		return nil
	})
}

// Holds reports whether this replica still holds the event: false once
// another replica took it over as an orphan (this one's heartbeat lapsed,
// say, under load) and reported it, so that this one must not report it
// again.
func (l *Ledger) Holds(ctx context.Context, triggeredID string) (bool, error) {
	lease, err := l.leases().Get(ctx, "event-"+digest(triggeredID), metav1.GetOptions{})
	if err != nil {
		return false, fmt.Errorf("read the claim of event %s: %w", triggeredID, err)
	}
	return deref(lease.Spec.HolderIdentity) == l.cfg.Identity, nil
}

// Heartbeat says this replica is alive, for HeartbeatTTL.
func (l *Ledger) Heartbeat(ctx context.Context) error {
	name := "replica-" + digest(l.cfg.Identity)
	now := l.cfg.Now()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := l.leases().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
				Name:   name,
				Labels: map[string]string{recordLabel: recordHeart, managedByLabel: managedBy},
			}}
			lease.Spec = l.spec(l.cfg.Identity, now, l.heartbeatTTL())
			_, err = l.leases().Create(ctx, lease, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(coordinationv1.Resource("leases"), name, err)
			}
		case err == nil:
			renew := metav1.NewMicroTime(now)
			lease.Spec.RenewTime = &renew
			_, err = l.leases().Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("heartbeat of replica %s: %w", l.cfg.Identity, err)
		}
		return err
	})
}

func (l *Ledger) heartbeatTTL() time.Duration {
	return heartbeatScale * l.cfg.HeartbeatPeriod
}

// alive reports whether replica's heartbeat is fresh.
func (l *Ledger) alive(ctx context.Context, replica string, now time.Time) (bool, error) {
	lease, err := l.leases().Get(ctx, "replica-"+digest(replica), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return !expired(lease.Spec, now), nil
}

// Orphans finds the actions that were started and will never be finished,
// and takes them over, so that exactly one replica reports each:
//   - held by a replica whose heartbeat has lapsed (it was killed, or its
//     node went away);
//   - held by this replica under its own name but not running here, which
//     happens when it restarts with the same name (a StatefulSet's pod).
//
// running says whether this replica is running an event now.
func (l *Ledger) Orphans(ctx context.Context, running func(triggeredID string) bool) ([]Orphan, error) {
	now := l.cfg.Now()
	list, err := l.leases().List(ctx, metav1.ListOptions{
		LabelSelector: recordLabel + "=" + recordEvent + "," + stateLabel + "=" + stateStarted,
	})
	if err != nil {
		return nil, fmt.Errorf("list the started events: %w", err)
	}
	heartbeats := map[string]bool{}
	var orphans []Orphan
	for i := range list.Items {
		lease := &list.Items[i]
		id, holder := lease.Annotations[triggeredIDKey], deref(lease.Spec.HolderIdentity)
		// Too young to judge: a replica that has just started may take an
		// event before its first heartbeat is on record.
		if lease.Spec.AcquireTime != nil && now.Sub(lease.Spec.AcquireTime.Time) < l.heartbeatTTL() {
			continue
		}
		if holder == l.cfg.Identity {
			if running(id) {
				continue
			}
		} else {
			alive, known := heartbeats[holder]
			if !known {
				if alive, err = l.alive(ctx, holder, now); err != nil {
					return orphans, fmt.Errorf("read the heartbeat of replica %s: %w", holder, err)
				}
				heartbeats[holder] = alive
			}
			if alive {
				continue
			}
		}
		o := Orphan{ID: id, Record: []byte(lease.Annotations[recordKey]), Replica: holder}
		if lease.Spec.AcquireTime != nil {
			o.Since = lease.Spec.AcquireTime.Time
		}
		// Take it over with the resourceVersion read: of two replicas that
		// found it, one wins and reports it.
		lease.Spec.HolderIdentity = &l.cfg.Identity
		lease.Labels[stateLabel] = "recovering"
		if _, err := l.leases().Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return orphans, fmt.Errorf("take over event %s: %w", id, err)
		}
		orphans = append(orphans, o)
	}
	return orphans, nil
}

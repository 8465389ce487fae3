// Package intake is the contract between what takes events in (the HTTP
// receiver the distributor POSTs to, the NATS queue subscription) and the
// lifecycle that handles them: the one call an intake makes, and what it
// hears back, which decides what it answers the sender.
package intake

import (
	"context"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// Submitter takes decoded events; *lifecycle.Lifecycle is one. Submit may
// wait for room until ctx is done.
type Submitter interface {
	Submit(context.Context, keptnevent.Triggered) Disposition
}

// Disposition is what Submit decided about an event.
type Disposition int

const (
	// Accepted: queued; it will get a started and a finished event.
	Accepted Disposition = iota
	// Unknown: no handler for the action. Another provider may own it, so
	// it gets no event at all.
	Unknown
	// Duplicate: the same triggered id was accepted recently.
	Duplicate
	// Busy: the queue stayed full for as long as the sender allowed; the
	// sender should retry later.
	Busy
	// Draining: the provider is shutting down and accepts nothing new.
	Draining
	// Unanswerable: not even the smallest finished event for it would fit
	// the event size limit, so it gets no started event either: Keptn
	// would wait for ever for a finished one that cannot be sent.
	Unanswerable
)

package main

import (
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

func TestConstantsAgreeWithTheProvider(t *testing.T) {
	for _, c := range []struct{ ours, theirs string }{
		{triggeredType, keptnevent.TriggeredType},
		{startedType, keptnevent.StartedType},
		{finishedType, keptnevent.FinishedType},
	} {
		if c.ours != c.theirs {
			t.Errorf("event type %q, the provider's is %q", c.ours, c.theirs)
		}
	}
	if distributorMaxBytes != eventsink.DistributorMaxBytes {
		t.Errorf("distributorMaxBytes %d, eventsink's is %d", distributorMaxBytes, eventsink.DistributorMaxBytes)
	}
}

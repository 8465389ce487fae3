package scale

import "time"

// SetClock sets the clock a KEDA pause is counted from.
func SetClock(h *Handler, now func() time.Time) { h.now = now }

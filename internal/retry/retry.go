// Package retry runs an operation again, with exponential back-off and
// jitter, until it succeeds, fails for good, or its time runs out.
package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff is a retry policy. The zero value retries for a minute, starting
// at 100ms between attempts and never waiting more than 10s.
type Backoff struct {
	Initial time.Duration // first wait; default 100ms
	Max     time.Duration // longest wait; default 10s
	Bound   time.Duration // give up this long after the first attempt; default 1m
}

// Attempt is one try. retry false means err is final (or nil).
type Attempt func(ctx context.Context) (retry bool, err error)

// Do calls attempt until it returns retry false, ctx is done, or the bound
// has passed. onRetry, if not nil, is told about each failed attempt that
// will be tried again. The error of the last attempt is returned, wrapped
// with how many attempts were made.
func (b Backoff) Do(ctx context.Context, attempt Attempt, onRetry func(n int, err error)) error {
	initial, maxWait, bound := b.Initial, b.Max, b.Bound
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 10 * time.Second
	}
	if bound <= 0 {
		bound = time.Minute
	}
	deadline := time.Now().Add(bound)
	wait := initial
	var timer *time.Timer
	for n := 1; ; n++ {
		again, err := attempt(ctx)
		if err == nil {
			return nil
		}
		if !again {
			return err
		}
		// Equal jitter: half the wait is fixed, half random, so that
		// retries of many events spread out but never hammer at once.
		sleep := wait/2 + rand.N(wait/2+1)
		if time.Now().Add(sleep).After(deadline) {
			return fmt.Errorf("gave up after %d attempts in %s: %w", n, bound, err)
		}
		if onRetry != nil {
			onRetry(n, err)
		}
		if timer == nil {
			timer = time.NewTimer(sleep)
			defer timer.Stop()
		} else {
			timer.Reset(sleep)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %d attempts (%w): %w", n, context.Cause(ctx), err)
		case <-timer.C:
		}
		wait = min(wait*2, maxWait)
	}
}

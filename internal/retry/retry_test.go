package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	errTransient := errors.New("connection refused")
	errFinal := errors.New("400 bad request")
	for _, tc := range []struct {
		name        string
		results     []error // what attempt n returns; past the end, errTransient
		final       bool    // errFinal is not retryable
		bound       time.Duration
		wantErr     error
		wantAttempt int
	}{
		{"first attempt succeeds", []error{nil}, false, time.Second, nil, 1},
		{"succeeds after transient failures", []error{errTransient, errTransient, nil}, false, time.Second, nil, 3},
		{"a final error is not retried", []error{errFinal}, true, time.Second, errFinal, 1},
		{"gives up at the bound", nil, false, 50 * time.Millisecond, errTransient, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			retried := 0
			err := Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Bound: tc.bound}.Do(context.Background(),
				func(context.Context) (bool, error) {
					n++
					err := errTransient
					if n <= len(tc.results) {
						err = tc.results[n-1]
					}
					return !errors.Is(err, errFinal), err
				}, func(int, error) { retried++ })
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantAttempt > 0 && n != tc.wantAttempt {
				t.Errorf("%d attempts, want %d", n, tc.wantAttempt)
			}
			if tc.wantAttempt < 0 && (n < 3 || !strings.Contains(err.Error(), "gave up after")) {
				t.Errorf("%d attempts, err %v: want several attempts and a gave-up error", n, err)
			}
			if err == nil && retried != n-1 {
				t.Errorf("onRetry called %d times for %d attempts", retried, n)
			}
		})
	}
}

func TestDoStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Backoff{Initial: time.Hour, Bound: 2 * time.Hour}.Do(ctx, func(context.Context) (bool, error) {
		n++
		cancel()
		return true, errors.New("refused")
	}, nil)
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("err = %v after %d attempts; want context.Canceled after 1", err, n)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	var gaps []time.Duration
	last := time.Now()
	_ = Backoff{Initial: 4 * time.Millisecond, Max: 16 * time.Millisecond, Bound: 300 * time.Millisecond}.Do(context.Background(),
		func(context.Context) (bool, error) {
			now := time.Now()
			gaps = append(gaps, now.Sub(last))
			last = now
			return len(gaps) < 6, errors.New("refused")
		}, nil)
	// Waits are 2-4, 4-8, 8-16, then 8-16ms (capped); timers only ever run late.
	if len(gaps) != 6 || gaps[1] < 2*time.Millisecond || gaps[3] < 8*time.Millisecond || gaps[5] < 8*time.Millisecond {
		t.Errorf("gaps = %v", gaps)
	}
}

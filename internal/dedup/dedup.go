// Package dedup remembers recently seen triggered-event ids, so that an event
// delivered twice (the distributor re-POSTs any non-2xx answer, never a slow
// one; a sender may publish it again) runs once.
package dedup

import (
	"sync"
	"time"
)

// Window remembers ids for a fixed time, up to a fixed number of ids. Ids
// expire in the order they were added, so a FIFO queue is all the index the
// expiry needs. It is safe for concurrent use.
type Window struct {
	ttl      time.Duration
	capacity int
	now      func() time.Time

	mu     sync.Mutex
	expiry map[string]time.Time
	queue  []queued // FIFO by expiry; queue[head:] is live
	head   int
}

type queued struct {
	id     string
	expiry time.Time
}

// New returns a Window that remembers an id for ttl, and at most capacity ids
// (the oldest are forgotten first). now is the clock; nil means time.Now.
func New(ttl time.Duration, capacity int, now func() time.Time) *Window {
	if now == nil {
		now = time.Now
	}
	if capacity < 1 {
		capacity = 1
	}
	return &Window{ttl: ttl, capacity: capacity, now: now, expiry: make(map[string]time.Time)}
}

// Add records id and reports whether it is new. false means id was added
// before and has not expired: the caller must not act on it again.
func (w *Window) Add(id string) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now)
	if exp, ok := w.expiry[id]; ok && now.Before(exp) {
		return false
	}
	for len(w.expiry) >= w.capacity {
		w.pop()
	}
	exp := now.Add(w.ttl)
	w.expiry[id] = exp
	w.queue = append(w.queue, queued{id: id, expiry: exp})
	return true
}

// Forget removes id, so that a later delivery of it counts as new. It undoes
// an Add whose event could not be accepted after all.
func (w *Window) Forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.expiry, id)
}

// Len is the number of ids remembered.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.expiry)
}

func (w *Window) expire(now time.Time) {
	for w.head < len(w.queue) && !now.Before(w.queue[w.head].expiry) {
		w.pop()
	}
}

// pop drops the oldest queue entry, and its id unless the id was forgotten
// or added again since.
func (w *Window) pop() {
	if w.head >= len(w.queue) {
		// Only forgotten ids were queued; the map is what counts.
		clear(w.expiry)
		return
	}
	q := w.queue[w.head]
	w.queue[w.head] = queued{}
	w.head++
	if exp, ok := w.expiry[q.id]; ok && exp.Equal(q.expiry) {
		delete(w.expiry, q.id)
	}
	// Reclaim the consumed front once it is half the slice.
	if w.head > 1024 && w.head*2 >= len(w.queue) {
		w.queue = append(w.queue[:0], w.queue[w.head:]...)
		w.head = 0
	}
}

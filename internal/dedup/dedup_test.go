package dedup

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestWindow(t *testing.T) {
	type step struct {
		advance time.Duration
		op      string // add, forget
		id      string
		want    bool // for add: is it new?
	}
	for _, tc := range []struct {
		name     string
		capacity int
		steps    []step
	}{
		{"a redelivery within the TTL is a duplicate", 10, []step{
			{0, "add", "a", true}, {5 * time.Second, "add", "a", false}, {0, "add", "b", true},
		}},
		{"an id is new again after the TTL", 10, []step{
			{0, "add", "a", true}, {time.Minute, "add", "a", true}, {59 * time.Second, "add", "a", false},
		}},
		{"forget makes an id new again", 10, []step{
			{0, "add", "a", true}, {0, "forget", "a", false}, {0, "add", "a", true}, {0, "add", "a", false},
		}},
		{"capacity forgets the oldest first", 2, []step{
			{0, "add", "a", true}, {0, "add", "b", true}, {0, "add", "c", true},
			{0, "add", "b", false}, {0, "add", "c", false}, {0, "add", "a", true},
		}},
		{"a forgotten id does not hold capacity", 2, []step{
			{0, "add", "a", true}, {0, "forget", "a", false}, {0, "add", "b", true}, {0, "add", "c", true},
			{0, "add", "b", false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			w := New(time.Minute, tc.capacity, c.now)
			for i, s := range tc.steps {
				c.t = c.t.Add(s.advance)
				switch s.op {
				case "add":
					if got := w.Add(s.id); got != s.want {
						t.Fatalf("step %d: Add(%q) = %v, want %v", i, s.id, got, s.want)
					}
				case "forget":
					w.Forget(s.id)
				}
				if w.Len() > tc.capacity {
					t.Fatalf("step %d: %d ids remembered, capacity %d", i, w.Len(), tc.capacity)
				}
			}
		})
	}
}

func TestWindowMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	w := New(time.Hour, 1000, c.now)
	for i := range 200_000 {
		w.Add(fmt.Sprint(i))
	}
	if w.Len() != 1000 {
		t.Errorf("Len = %d, want the capacity 1000", w.Len())
	}
	if len(w.queue)-w.head > 1000 || cap(w.queue) > 4096 {
		t.Errorf("queue holds %d live of cap %d: the consumed front is not reclaimed", len(w.queue)-w.head, cap(w.queue))
	}
}

func TestWindowConcurrentAddsAdmitOnce(t *testing.T) {
	w := New(time.Minute, 100, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w.Add("same") {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if admitted != 1 {
		t.Errorf("%d of 32 concurrent deliveries admitted, want 1", admitted)
	}
}

func BenchmarkWindowAdd(b *testing.B) {
	w := New(10*time.Minute, 100_000, nil)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("6de83495-4f83-481c-8dbe-%012d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Add(ids[i&(len(ids)-1)])
	}
}

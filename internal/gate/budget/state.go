package budget

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// slot is one mutating action that spent the budget, from the moment it
// was admitted.
type slot struct {
	At time.Time `json:"at"`
	// Namespace is where the action acts.
	Namespace string `json:"ns"`
	// ID tells this slot from others, so that Done gives back its own.
	ID string `json:"id"`
	// Entry, Event and By say who spent it, for whoever reads the Lease.
	Entry string `json:"entry,omitempty"`
	Event string `json:"event,omitempty"`
	By    string `json:"by,omitempty"`
}

// opening is one opening of the breaker: when the scope's budget was first
// found spent, and until when it is at the latest (its oldest slot leaves
// the window then).
type opening struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// Scopes of a budget: the cluster's, and one per namespace.
const (
	scopeCluster   = "cluster"
	scopeNamespace = "namespace"
	scopePaused    = "paused"
)

// scopeKey names a scope in the record of openings.
func scopeKey(namespace string) string {
	if namespace == "" {
		return scopeCluster
	}
	return scopeNamespace + "/" + namespace
}

// state is what the Lease says, as of now: only the slots still in the
// window count.
type state struct {
	slots  []slot // oldest first
	opened map[string]opening
	paused bool
	reason string // the paused annotation's value
	// reset is set when an operator asked for a reset that no write has
	// applied yet: its value as written.
	reset      string
	resetAsked bool
}

// read makes the state of lease at now. An unreadable record of slots is
// an error, unless a reset clears it anyway: a safety net that forgets
// what was spent would admit more than its budget.
func read(lease *coordinationv1.Lease, now time.Time, window time.Duration) (state, error) {
	ann := lease.Annotations
	st := state{opened: map[string]opening{}}
	st.reason, st.paused = ann[PausedAnnotation]
	var resetAt time.Time
	if v, ok := ann[ResetAnnotation]; ok {
		st.reset, st.resetAsked = v, true
		// Anything but a past time ("now", a typo, a clock ahead) resets
		// as of now: the operator asked for a reset, not for a budget
		// that ignores actions until some future date.
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
		if err != nil || t.After(now) {
			t = now
		}
		resetAt = t
	}
	if raw := ann[slotsAnnotation]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &st.slots); err != nil && !st.resetAsked {
			return state{}, fmt.Errorf("annotation %s is unreadable (%w)", slotsAnnotation, err)
		}
	}
	from := now.Add(-window)
	kept := st.slots[:0]
	for _, s := range st.slots {
		if s.At.After(from) && (!st.resetAsked || s.At.After(resetAt)) {
			kept = append(kept, s)
		}
	}
	st.slots = kept
	sort.SliceStable(st.slots, func(i, j int) bool { return st.slots[i].At.Before(st.slots[j].At) })
	if raw := ann[openedAnnotation]; raw != "" {
		// Unreadable, it is forgotten: the worst is one more event.
		_ = json.Unmarshal([]byte(raw), &st.opened)
	}
	for k, o := range st.opened {
		if !now.Before(o.Until) || st.resetAsked && !o.Since.After(resetAt) {
			delete(st.opened, k)
		}
	}
	return st, nil
}

// count is how many slots namespace spent; "" counts all of them.
func (st state) count(namespace string) int {
	if namespace == "" {
		return len(st.slots)
	}
	n := 0
	for _, s := range st.slots {
		if s.Namespace == namespace {
			n++
		}
	}
	return n
}

// frees is when the scope of namespace ("" for the cluster), holding n
// slots of a budget of limit, has one free again: when its (n-limit+1)th
// oldest slot leaves the window.
func (st state) frees(namespace string, limit int, window time.Duration) time.Time {
	n := st.count(namespace) - limit
	for _, s := range st.slots {
		if namespace != "" && s.Namespace != namespace {
			continue
		}
		if n <= 0 {
			return s.At.Add(window)
		}
		n--
	}
	return time.Time{}
}

// tidy forgets the openings whose budget is no longer spent.
func (st *state) tidy(limits Limits) {
	for k := range st.opened {
		spent := len(st.slots) >= limits.Max
		if ns, ok := strings.CutPrefix(k, scopeNamespace+"/"); ok {
			spent = st.count(ns) >= limits.PerNamespace
		}
		if !spent {
			delete(st.opened, k)
		}
	}
}

// anyNamespaceSpent says whether some namespace spent its budget.
func (st state) anyNamespaceSpent(perNamespace int) bool {
	counts := map[string]int{}
	for _, s := range st.slots {
		counts[s.Namespace]++
		if counts[s.Namespace] >= perNamespace {
			return true
		}
	}
	return false
}

// store writes st into lease's annotations, applying the reset it read:
// the reset annotation is removed, and what it did is kept in another.
func (st state) store(lease *coordinationv1.Lease, now time.Time, by string) error {
	if lease.Annotations == nil {
		lease.Annotations = map[string]string{}
	}
	ann := lease.Annotations
	if len(st.slots) == 0 {
		delete(ann, slotsAnnotation)
	} else {
		b, err := json.Marshal(st.slots)
		if err != nil {
			return fmt.Errorf("encode the budget's slots: %w", err)
		}
		ann[slotsAnnotation] = string(b)
	}
	if len(st.opened) == 0 {
		delete(ann, openedAnnotation)
	} else {
		b, err := json.Marshal(st.opened)
		if err != nil {
			return fmt.Errorf("encode the budget's openings: %w", err)
		}
		ann[openedAnnotation] = string(b)
	}
	if st.resetAsked {
		delete(ann, ResetAnnotation)
		ann[lastResetAnnotation] = fmt.Sprintf("%s=%q applied at %s by %s",
			ResetAnnotation, st.reset, now.UTC().Format(time.RFC3339), by)
	}
	return nil
}

// clip cuts s to n bytes, for the fields of a slot that only inform.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Package freeze is the gate that refuses every action while a freeze
// window holds its namespace: a recurring window (a cron expression for
// its start, and a duration), or an absolute range (a release freeze).
package freeze

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	// The release image is built FROM scratch, without /usr/share/zoneinfo:
	// embed the time zone database so that any timezone loads.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// Rule names the gate in refusals.
const Rule = "freeze window"

// Window is one window as configured: either Cron and Duration, or From
// and To.
type Window struct {
	Name string
	// Cron is a 5-field cron expression (or a descriptor such as @daily)
	// for each start of the window, read in the gate's time zone; the
	// window lasts Duration of elapsed time from each start.
	Cron     string
	Duration time.Duration
	// From and To bound an absolute window, [From, To).
	From, To time.Time
	// Namespaces are globs (path.Match) on the action's namespace; none
	// means every namespace.
	Namespaces []string
}

// Gate refuses an action while a window holds its namespace.
type Gate struct {
	windows []window
	loc     *time.Location
	now     func() time.Time
}

type window struct {
	Window
	schedule cron.Schedule // nil for an absolute window
}

// Hold is a window that holds a namespace at some instant.
type Hold struct {
	Window Window
	// Start and End bound the occurrence that holds: [Start, End).
	Start, End time.Time
	// Resume is when no window holds the namespace any more: End, unless
	// another window holds it then; ResumeKnown is false when windows
	// follow each other further than the gate looks.
	Resume      time.Time
	ResumeKnown bool
	// Next names the windows that hold the namespace after End, each once,
	// in order.
	Next []string
}

// maxHops bounds the windows followed to find when actions resume.
const maxHops = 32

// New checks the windows and makes the gate. loc is the time zone of the
// cron expressions (nil: UTC); now is the clock (nil: time.Now). The
// errors name the window and its field.
func New(loc *time.Location, windows []Window, now func() time.Time) (*Gate, error) {
	if loc == nil {
		loc = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	if len(windows) == 0 {
		return nil, errors.New("windows: none; list at least one, or remove the freeze section")
	}
	g := &Gate{loc: loc, now: now}
	seen := map[string]bool{}
	for i, w := range windows {
		where := fmt.Sprintf("windows[%d]", i)
		if w.Name != "" {
			where += fmt.Sprintf(" %q", w.Name)
		}
		cw, err := check(w, loc, now())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if seen[w.Name] {
			return nil, fmt.Errorf("%s: name: another window is named %q; names must be unique", where, w.Name)
		}
		seen[w.Name] = true
		g.windows = append(g.windows, cw)
	}
	return g, nil
}

func check(w Window, loc *time.Location, now time.Time) (window, error) {
	if w.Name == "" {
		return window{}, errors.New(`name: missing; refusals name the window`)
	}
	for _, ns := range w.Namespaces {
		if _, err := path.Match(ns, ""); err != nil || ns == "" {
			return window{}, fmt.Errorf("namespaces: %q is not a valid glob", ns)
		}
	}
	recurring := w.Cron != "" || w.Duration != 0
	absolute := !w.From.IsZero() || !w.To.IsZero()
	switch {
	case recurring && absolute:
		return window{}, errors.New("set either cron and duration (a recurring window) or from and to (an absolute one), not both")
	case absolute:
		if w.From.IsZero() || w.To.IsZero() {
			return window{}, errors.New("an absolute window needs both from and to")
		}
		if !w.From.Before(w.To) {
			return window{}, fmt.Errorf("to: %s is not after from (%s)", stamp(w.To), stamp(w.From))
		}
		return window{Window: w}, nil
	case recurring:
		if w.Cron == "" {
			return window{}, errors.New(`cron: missing; a window with a duration starts at each time its cron expression gives, such as "0 18 * * FRI"`)
		}
		if w.Duration <= 0 {
			return window{}, errors.New(`duration: missing; a cron window lasts its duration from each start, such as "63h"`)
		}
		s, err := parseCron(w.Cron, loc)
		if err != nil {
			return window{}, fmt.Errorf("cron: %w", err)
		}
		if s.Next(now).IsZero() {
			return window{}, fmt.Errorf("cron: %q never starts a window", w.Cron)
		}
		return window{Window: w, schedule: s}, nil
	default:
		return window{}, errors.New("set cron and duration (a recurring window) or from and to (an absolute one)")
	}
}

// parseCron reads a standard 5-field expression in loc.
func parseCron(expr string, loc *time.Location) (cron.Schedule, error) {
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("%q: set the time zone in freeze.timezone, which applies to every window", expr)
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a 5-field cron expression such as \"0 18 * * FRI\": %w", expr, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		// @every has no fixed starts to count a duration from.
		return nil, fmt.Errorf("%q: @every has no fixed starts; write the starts as a 5-field expression", expr)
	}
	spec.Location = loc
	return spec, nil
}

// Admit refuses while a window holds the subject's namespace; a dry run
// is refused alike, the refusal being its report.
func (g *Gate) Admit(_ context.Context, s gate.Subject) (gate.Admission, error) {
	h, ok := g.Holding(s.Namespace, g.now())
	if !ok {
		return gate.Admission{}, nil
	}
	then, windows := "", "the window"
	if len(h.Next) > 0 {
		until := stamp(h.Resume)
		if !h.ResumeKnown {
			until = "at least " + until
		}
		then, windows = fmt.Sprintf(", then %s until %s", quoteAll(h.Next), until), "the windows"
	}
	return gate.Admission{}, action.Refuse(Rule, "%q (%s) holds namespace %s until %s%s; actions resume then, or remove %s from the catalog's freeze section",
		h.Window.Name, g.describe(h.Window), s.Namespace, stamp(h.End), then, windows)
}

// Holding reports the window that holds namespace ns at now, if any: of
// several, the one whose occurrence ends last, the first in configuration
// order on a tie. Its Resume follows the windows that hold ns from its
// end on, up to maxHops.
func (g *Gate) Holding(ns string, now time.Time) (Hold, bool) {
	h, ok := g.latest(ns, now)
	if !ok {
		return Hold{}, false
	}
	h.Resume, h.ResumeKnown = h.End, true
	for range maxHops {
		next, ok := g.latest(ns, h.Resume)
		if !ok {
			return h, true
		}
		if !slices.Contains(h.Next, next.Window.Name) {
			h.Next = append(h.Next, next.Window.Name)
		}
		h.Resume = next.End
	}
	h.ResumeKnown = false
	return h, true
}

// latest is the open occurrence at now that ends last.
func (g *Gate) latest(ns string, now time.Time) (Hold, bool) {
	var best Hold
	found := false
	for _, w := range g.windows {
		if len(w.Namespaces) > 0 && !matchAny(w.Namespaces, ns) {
			continue
		}
		start, end, ok := w.open(now)
		if ok && (!found || end.After(best.End)) {
			best, found = Hold{Window: w.Window, Start: start, End: end}, true
		}
	}
	return best, found
}

// open reports the occurrence of w that holds at now: [start, end).
func (w window) open(now time.Time) (start, end time.Time, ok bool) {
	if w.schedule == nil {
		return w.From, w.To, !now.Before(w.From) && now.Before(w.To)
	}
	start, ok = lastStart(w.schedule, now, w.Duration)
	return start, start.Add(w.Duration), ok
}

// lastStart is the latest start of s in (now-within, now]: the one whose
// occurrence, of length within, holds at now. Cron gives only Next, so it
// probes back from now over doubling spans, then walks forward from the
// first start found; the walk crosses at most the starts of the last
// span's older half, which held none of the newer half's. Starting at
// now-within instead, and walking, would cost one step per start: 3780
// for a window of 63h that starts every minute.
func lastStart(s cron.Schedule, now time.Time, within time.Duration) (time.Time, bool) {
	floor := now.Add(-within)
	for span := time.Minute; ; span *= 2 {
		from := now.Add(-span)
		if !from.After(floor) {
			from = floor
		}
		start := s.Next(from)
		if !start.IsZero() && !start.After(now) {
			for {
				next := s.Next(start)
				if next.IsZero() || next.After(now) {
					return start, true
				}
				start = next
			}
		}
		if from.Equal(floor) {
			return time.Time{}, false
		}
	}
}

func (g *Gate) describe(w Window) string {
	if w.Cron == "" {
		return fmt.Sprintf("from %s to %s", stamp(w.From), stamp(w.To))
	}
	zone := ""
	if g.loc != time.UTC {
		zone = " " + g.loc.String()
	}
	return fmt.Sprintf("cron %q%s, %s", w.Cron, zone, ShortDuration(w.Duration))
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// stamp writes an instant as refusals do: UTC, RFC 3339.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// ShortDuration writes d as it is configured: "63h", not "63h0m0s".
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

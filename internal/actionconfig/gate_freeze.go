package actionconfig

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/gate/freeze"
)

// freezeSection is the catalog's freeze section.
type freezeSection struct {
	// Timezone reads the cron expressions, and the from and to written
	// without an offset; default UTC.
	Timezone string            `json:"timezone,omitempty"`
	Windows  []json.RawMessage `json:"windows"`
}

// freezeWindow is one window: cron and duration, or from and to.
type freezeWindow struct {
	Name       string          `json:"name"`
	Cron       string          `json:"cron,omitempty"`
	Duration   json.RawMessage `json:"duration,omitempty"`
	From       string          `json:"from,omitempty"`
	To         string          `json:"to,omitempty"`
	Namespaces []string        `json:"namespaces,omitempty"`
}

// buildFreeze makes the freeze gate; no section (or a null one) is off.
func buildFreeze(_ config.Config, raw json.RawMessage, _ Deps) (gate.Gate, error) {
	var s freezeSection
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if err := decodeSettings(raw, &s); err != nil {
		return nil, err
	}
	loc := time.UTC
	if s.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(s.Timezone); err != nil {
			return nil, fmt.Errorf("timezone: %q is not a time zone such as Europe/Berlin or UTC: %w", s.Timezone, err)
		}
	}
	windows := make([]freeze.Window, len(s.Windows))
	for i, r := range s.Windows {
		w, err := freezeWindowOf(r, loc)
		if err != nil {
			where := fmt.Sprintf("windows[%d]", i)
			if w.Name != "" {
				where += fmt.Sprintf(" %q", w.Name)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		windows[i] = w
	}
	g, err := freeze.New(loc, windows, nil)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// freezeWindowOf reads one window; on error, the window's name if known.
func freezeWindowOf(raw json.RawMessage, loc *time.Location) (freeze.Window, error) {
	var fw freezeWindow
	if err := decodeSettings(raw, &fw); err != nil {
		return freeze.Window{}, err
	}
	w := freeze.Window{Name: fw.Name, Cron: fw.Cron, Namespaces: fw.Namespaces}
	if len(fw.Duration) > 0 {
		var d Duration
		if err := json.Unmarshal(fw.Duration, &d); err != nil {
			return w, fmt.Errorf("duration: %w", err)
		}
		w.Duration = time.Duration(d)
	}
	var err error
	if w.From, err = freezeTime("from", fw.From, loc); err != nil {
		return w, err
	}
	if w.To, err = freezeTime("to", fw.To, loc); err != nil {
		return w, err
	}
	return w, nil
}

// freezeTime reads an RFC 3339 time; without an offset, or a date alone
// (midnight), it is in loc.
func freezeTime(field, s string, loc *time.Location) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`%s: %q is not a time such as 2026-12-20T00:00:00Z, 2026-12-20T00:00:00 or 2026-12-20 (the last two in freeze.timezone)`, field, s)
}

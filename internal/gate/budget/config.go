package budget

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of a budget section that leaves a field out.
const (
	DefaultMax          = 10
	DefaultWindow       = 10 * time.Minute
	DefaultPerNamespace = 3
)

// Bounds of the configuration. MaxSlots keeps the Lease's record (one
// entry of at most ~300 bytes per slot) well under the API server's 256 KiB
// for all annotations of an object.
const (
	MaxSlots  = 200
	MinWindow = time.Minute
	MaxWindow = 24 * time.Hour
)

// Section is the catalog's top-level "budget" section, as written.
type Section struct {
	// Enabled false turns the budget off; a present section is on.
	Enabled *bool `json:"enabled,omitempty"`
	// Max is how many mutating actions the whole cluster may run in the
	// window.
	Max *int `json:"max,omitempty"`
	// Window is the sliding window, "10m".
	Window string `json:"window,omitempty"`
	// PerNamespace is how many of them one namespace may run.
	PerNamespace *int `json:"perNamespace,omitempty"`
}

// Limits are a section's resolved numbers.
type Limits struct {
	Max, PerNamespace int
	Window            time.Duration
}

// Resolve checks the section and fills in the defaults; on false, the
// budget is off. Errors name the field, as the catalog spells it.
func (s Section) Resolve() (Limits, bool, error) {
	if s.Enabled != nil && !*s.Enabled {
		if s.Max != nil || s.Window != "" || s.PerNamespace != nil {
			return Limits{}, false, fmt.Errorf("enabled: false turns the budget off; remove max, window and perNamespace, or enabled")
		}
		return Limits{}, false, nil
	}
	l := Limits{Max: DefaultMax, Window: DefaultWindow, PerNamespace: DefaultPerNamespace}
	if s.Max != nil {
		if *s.Max < 1 || *s.Max > MaxSlots {
			return Limits{}, false, fmt.Errorf("max: %d is not between 1 and %d; to turn the budget off, write enabled: false", *s.Max, MaxSlots)
		}
		l.Max = *s.Max
		l.PerNamespace = min(l.PerNamespace, l.Max)
	}
	if s.Window != "" {
		w, err := time.ParseDuration(s.Window)
		if err != nil {
			return Limits{}, false, fmt.Errorf(`window: %q is not a duration such as "10m" or "1h"`, s.Window)
		}
		if w < MinWindow || w > MaxWindow {
			return Limits{}, false, fmt.Errorf("window: %s is not between %s and %s", w, human(MinWindow), human(MaxWindow))
		}
		l.Window = w
	}
	if s.PerNamespace != nil {
		if *s.PerNamespace < 1 || *s.PerNamespace > l.Max {
			return Limits{}, false, fmt.Errorf("perNamespace: %d is not between 1 and max (%d); perNamespace equal to max bounds only the cluster", *s.PerNamespace, l.Max)
		}
		l.PerNamespace = *s.PerNamespace
	}
	return l, true, nil
}

// human writes a duration without its zero units: "10m", "1h30m", "45s".
func human(d time.Duration) string {
	s := d.String()
	if rest, ok := strings.CutSuffix(s, "m0s"); ok {
		s = rest + "m"
	}
	if rest, ok := strings.CutSuffix(s, "h0m"); ok {
		s = rest + "h"
	}
	return s
}

package budget

import (
	"strings"
	"testing"
	"time"
)

func TestSectionResolve(t *testing.T) {
	yes, no := true, false
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name    string
		s       Section
		want    Limits
		off     bool
		wantErr string
	}{
		{name: "empty: the defaults", want: Limits{Max: 10, PerNamespace: 3, Window: 10 * time.Minute}},
		{name: "enabled: true", s: Section{Enabled: &yes}, want: Limits{Max: 10, PerNamespace: 3, Window: 10 * time.Minute}},
		{name: "all set", s: Section{Max: n(20), Window: "1h", PerNamespace: n(5)}, want: Limits{Max: 20, PerNamespace: 5, Window: time.Hour}},
		{name: "a max below the default per namespace lowers it", s: Section{Max: n(2)}, want: Limits{Max: 2, PerNamespace: 2, Window: 10 * time.Minute}},
		{name: "off", s: Section{Enabled: &no}, off: true},
		{name: "off with limits", s: Section{Enabled: &no, Max: n(3)}, wantErr: "enabled: false turns the budget off"},
		{name: "max 0", s: Section{Max: n(0)}, wantErr: "max: 0 is not between 1 and 200; to turn the budget off, write enabled: false"},
		{name: "max too high", s: Section{Max: n(201)}, wantErr: "max: 201 is not between 1 and 200"},
		{name: "window not a duration", s: Section{Window: "ten minutes"}, wantErr: `window: "ten minutes" is not a duration`},
		{name: "window too short", s: Section{Window: "30s"}, wantErr: "window: 30s is not between 1m and 24h"},
		{name: "window too long", s: Section{Window: "48h"}, wantErr: "window: 48h0m0s is not between 1m and 24h"},
		{name: "per namespace above max", s: Section{Max: n(4), PerNamespace: n(5)}, wantErr: "perNamespace: 5 is not between 1 and max (4)"},
		{name: "per namespace 0", s: Section{PerNamespace: n(0)}, wantErr: "perNamespace: 0 is not between 1 and max (10)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, on, err := tc.s.Resolve()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || on == tc.off || got != tc.want {
				t.Errorf("got %+v on=%v %v, want %+v on=%v", got, on, err, tc.want, !tc.off)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 24 * time.Hour: "24h",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
}

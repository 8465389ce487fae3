package freeze

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestHolding(t *testing.T) {
	weekly := Window{Name: "weekly-release", Cron: "0 18 * * FRI", Duration: 63 * time.Hour, Namespaces: []string{"*-production"}}
	yearEnd := Window{Name: "year-end-freeze", From: at(t, "2026-12-20T00:00:00Z"), To: at(t, "2027-01-04T00:00:00Z")}
	for _, tc := range []struct {
		name    string
		loc     *time.Location
		windows []Window
		ns, now string
		// want is the holding window's name and its occurrence's bounds;
		// "" is none.
		want, start, end string
	}{
		// Berlin is UTC+1 in winter: Friday 18:00 is 17:00Z.
		{"inside a cron window that began before now", berlin(t), []Window{weekly}, "sockshop-production", "2026-12-12T12:00:00Z",
			"weekly-release", "2026-12-11T17:00:00Z", "2026-12-14T08:00:00Z"},
		{"at its start", berlin(t), []Window{weekly}, "sockshop-production", "2026-12-11T17:00:00Z",
			"weekly-release", "2026-12-11T17:00:00Z", "2026-12-14T08:00:00Z"},
		{"a minute before its start", berlin(t), []Window{weekly}, "sockshop-production", "2026-12-11T16:59:00Z", "", "", ""},
		{"at its end: the window is [start, end)", berlin(t), []Window{weekly}, "sockshop-production", "2026-12-14T08:00:00Z", "", "", ""},
		{"a second before its end", berlin(t), []Window{weekly}, "sockshop-production", "2026-12-14T07:59:59Z",
			"weekly-release", "2026-12-11T17:00:00Z", "2026-12-14T08:00:00Z"},
		{"the cron read in UTC when no zone", nil, []Window{weekly}, "sockshop-production", "2026-12-11T18:00:00Z",
			"weekly-release", "2026-12-11T18:00:00Z", "2026-12-14T09:00:00Z"},
		// DST begins in Berlin on Sunday 2026-03-29: the window starts at
		// 18:00 CET, and its 63h of elapsed time end at 10:00 CEST.
		{"across the start of DST: the duration is elapsed time", berlin(t), []Window{weekly}, "sockshop-production", "2026-03-30T07:30:00Z",
			"weekly-release", "2026-03-27T17:00:00Z", "2026-03-30T08:00:00Z"},
		{"the next week: 18:00 CEST is 16:00Z", berlin(t), []Window{weekly}, "sockshop-production", "2026-04-03T16:00:00Z",
			"weekly-release", "2026-04-03T16:00:00Z", "2026-04-06T07:00:00Z"},
		{"the next week, an hour before 17:00Z", berlin(t), []Window{weekly}, "sockshop-production", "2026-04-03T15:59:59Z", "", "", ""},
		// 02:30 does not exist on 2026-03-29 in Berlin: no window starts.
		{"a start in the DST gap is skipped", berlin(t), []Window{{Name: "night", Cron: "30 2 * * *", Duration: 2 * time.Hour}}, "a", "2026-03-29T02:00:00Z", "", "", ""},
		{"the day before the gap", berlin(t), []Window{{Name: "night", Cron: "30 2 * * *", Duration: 2 * time.Hour}}, "a", "2026-03-28T02:00:00Z",
			"night", "2026-03-28T01:30:00Z", "2026-03-28T03:30:00Z"},
		// 02:30 happens twice on 2026-10-25: the second start counts.
		{"a start in the repeated hour counts twice", berlin(t), []Window{{Name: "night", Cron: "30 2 * * *", Duration: 30 * time.Minute}}, "a", "2026-10-25T01:45:00Z",
			"night", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"},
		{"every minute for 63h: the latest start", nil, []Window{{Name: "always", Cron: "* * * * *", Duration: 63 * time.Hour}}, "a", "2026-12-12T12:34:56Z",
			"always", "2026-12-12T12:34:00Z", "2026-12-15T03:34:00Z"},
		{"a start long ago, still holding", nil, []Window{{Name: "yearly", Cron: "0 0 1 1 *", Duration: 24 * 300 * time.Hour}}, "a", "2026-10-01T00:00:00Z",
			"yearly", "2026-01-01T00:00:00Z", "2026-10-28T00:00:00Z"},
		{"a start long ago, no longer holding", nil, []Window{{Name: "yearly", Cron: "0 0 1 1 *", Duration: 24 * 300 * time.Hour}}, "a", "2026-12-01T00:00:00Z", "", "", ""},
		{"an absolute range: its from holds", nil, []Window{yearEnd}, "sockshop-staging", "2026-12-20T00:00:00Z",
			"year-end-freeze", "2026-12-20T00:00:00Z", "2027-01-04T00:00:00Z"},
		{"an absolute range: before its from", nil, []Window{yearEnd}, "sockshop-staging", "2026-12-19T23:59:59Z", "", "", ""},
		{"an absolute range: its to does not hold", nil, []Window{yearEnd}, "sockshop-staging", "2027-01-04T00:00:00Z", "", "", ""},
		{"a namespace the globs do not match", berlin(t), []Window{weekly}, "sockshop-staging", "2026-12-12T12:00:00Z", "", "", ""},
		{"one of several globs", nil, []Window{{Name: "w", Cron: "0 0 * * *", Duration: time.Hour, Namespaces: []string{"kube-*", "sockshop-?"}}}, "sockshop-1", "2026-12-12T00:30:00Z",
			"w", "2026-12-12T00:00:00Z", "2026-12-12T01:00:00Z"},
		{"overlapping windows: the one ending last", berlin(t), []Window{weekly, yearEnd}, "sockshop-production", "2026-12-20T12:00:00Z",
			"year-end-freeze", "2026-12-20T00:00:00Z", "2027-01-04T00:00:00Z"},
		{"overlapping windows ending together: the first", nil, []Window{
			{Name: "a", From: at(t, "2026-12-01T00:00:00Z"), To: at(t, "2026-12-02T00:00:00Z")},
			{Name: "b", From: at(t, "2026-12-01T10:00:00Z"), To: at(t, "2026-12-02T00:00:00Z")},
		}, "a", "2026-12-01T12:00:00Z", "a", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.loc, tc.windows, nil)
			if err != nil {
				t.Fatal(err)
			}
			h, ok := g.Holding(tc.ns, at(t, tc.now))
			if tc.want == "" {
				if ok {
					t.Fatalf("held by %q [%s, %s), want none", h.Window.Name, stamp(h.Start), stamp(h.End))
				}
				return
			}
			if !ok || h.Window.Name != tc.want || stamp(h.Start) != tc.start || stamp(h.End) != tc.end {
				t.Fatalf("held %v by %q [%s, %s), want %q [%s, %s)", ok, h.Window.Name, stamp(h.Start), stamp(h.End), tc.want, tc.start, tc.end)
			}
		})
	}
}

// lastStart costs a few calls of Next, not one per start in the window.
func TestLastStartProbesBack(t *testing.T) {
	s, err := parseCron("* * * * *", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{Schedule: s}
	now := at(t, "2026-12-12T12:34:56Z")
	start, ok := lastStart(c, now, 63*time.Hour)
	if !ok || stamp(start) != "2026-12-12T12:34:00Z" || c.calls > 3 {
		t.Errorf("lastStart = %s %v after %d calls of Next", stamp(start), ok, c.calls)
	}
	// No start in the last 63h of a weekly window that ended: a few
	// dozen probes, not 3780.
	w, _ := parseCron("0 18 * * FRI", time.UTC)
	c = &counting{Schedule: w}
	if _, ok := lastStart(c, at(t, "2026-12-17T12:00:00Z"), 63*time.Hour); ok || c.calls > 16 {
		t.Errorf("lastStart found %v after %d calls of Next", ok, c.calls)
	}
}

type counting struct {
	cron.Schedule
	calls int
}

func (c *counting) Next(t time.Time) time.Time {
	c.calls++
	return c.Schedule.Next(t)
}

func TestHoldingFollowsWindowsToWhenActionsResume(t *testing.T) {
	g, err := New(nil, []Window{
		{Name: "a", From: at(t, "2026-12-01T10:00:00Z"), To: at(t, "2026-12-01T12:00:00Z")},
		{Name: "b", From: at(t, "2026-12-01T11:30:00Z"), To: at(t, "2026-12-01T14:00:00Z")},
		{Name: "c", From: at(t, "2026-12-01T14:00:00Z"), To: at(t, "2026-12-01T15:00:00Z")},
		{Name: "d", From: at(t, "2026-12-01T15:00:01Z"), To: at(t, "2026-12-01T16:00:00Z")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := g.Holding("x", at(t, "2026-12-01T10:30:00Z"))
	if !ok || h.Window.Name != "a" || !h.ResumeKnown || stamp(h.Resume) != "2026-12-01T15:00:00Z" || strings.Join(h.Next, ",") != "b,c" {
		t.Errorf("got %+v", h)
	}
	// A window that never lets go: the hops end.
	g, err = New(nil, []Window{{Name: "hourly", Cron: "0 * * * *", Duration: time.Hour}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, ok = g.Holding("x", at(t, "2026-12-01T10:30:00Z"))
	if !ok || h.ResumeKnown || stamp(h.Resume) != "2026-12-02T19:00:00Z" || strings.Join(h.Next, ",") != "hourly" {
		t.Errorf("got %+v", h)
	}
}

func TestAdmit(t *testing.T) {
	now := at(t, "2026-12-12T12:00:00Z")
	clock := func() time.Time { return now }
	weekly := Window{Name: "weekly-release", Cron: "0 18 * * FRI", Duration: 63 * time.Hour, Namespaces: []string{"*-production"}}
	for _, tc := range []struct {
		name    string
		loc     *time.Location
		windows []Window
		subject gate.Subject
		want    string // "" admits
	}{
		{"inside, UTC", nil, []Window{weekly}, gate.Subject{Namespace: "sockshop-production"},
			`refused (freeze window): "weekly-release" (cron "0 18 * * FRI", 63h) holds namespace sockshop-production until 2026-12-14T09:00:00Z; actions resume then, or remove the window from the catalog's freeze section`},
		{"inside, a zone, a dry run", berlin(t), []Window{weekly}, gate.Subject{Namespace: "sockshop-production", DryRun: true, Kind: "webhook"},
			`refused (freeze window): "weekly-release" (cron "0 18 * * FRI" Europe/Berlin, 63h) holds namespace sockshop-production until 2026-12-14T08:00:00Z; actions resume then, or remove the window from the catalog's freeze section`},
		{"another namespace", nil, []Window{weekly}, gate.Subject{Namespace: "sockshop-staging"}, ""},
		{"an absolute window followed by another", nil, []Window{
			{Name: "code-freeze", From: at(t, "2026-12-10T00:00:00Z"), To: at(t, "2026-12-13T00:00:00Z")},
			{Name: "holidays", From: at(t, "2026-12-13T00:00:00Z"), To: at(t, "2026-12-14T00:00:00Z")},
		}, gate.Subject{Namespace: "sockshop-staging"},
			`refused (freeze window): "code-freeze" (from 2026-12-10T00:00:00Z to 2026-12-13T00:00:00Z) holds namespace sockshop-staging until 2026-12-13T00:00:00Z, then "holidays" until 2026-12-14T00:00:00Z; actions resume then, or remove the windows from the catalog's freeze section`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.loc, tc.windows, clock)
			if err != nil {
				t.Fatal(err)
			}
			a, err := g.Admit(context.Background(), tc.subject)
			if tc.want == "" {
				if err != nil || a.Done != nil || a.Warning != "" {
					t.Fatalf("Admit = %+v, %v; want a plain pass", a, err)
				}
				return
			}
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != Rule || err.Error() != tc.want {
				t.Fatalf("Admit = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestNewNamesTheBadField(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	from, to := now(), now().Add(time.Hour)
	for _, tc := range []struct {
		name    string
		windows []Window
		want    string
	}{
		{"none", nil, "windows: none"},
		{"no name", []Window{{Cron: "0 0 * * *", Duration: time.Hour}}, "windows[0]: name: missing"},
		{"a name twice", []Window{{Name: "a", Cron: "0 0 * * *", Duration: time.Hour}, {Name: "a", From: from, To: to}},
			`windows[1] "a": name: another window is named "a"`},
		{"both forms", []Window{{Name: "a", Cron: "0 0 * * *", Duration: time.Hour, From: from, To: to}}, `windows[0] "a": set either cron and duration`},
		{"neither form", []Window{{Name: "a"}}, `windows[0] "a": set cron and duration`},
		{"a cron without duration", []Window{{Name: "a", Cron: "0 0 * * *"}}, `windows[0] "a": duration: missing`},
		{"a duration without cron", []Window{{Name: "a", Duration: time.Hour}}, `windows[0] "a": cron: missing`},
		{"from without to", []Window{{Name: "a", From: from}}, `windows[0] "a": an absolute window needs both from and to`},
		{"to before from", []Window{{Name: "a", From: to, To: from}}, `windows[0] "a": to: 2026-12-01T00:00:00Z is not after from (2026-12-01T01:00:00Z)`},
		{"to equal to from", []Window{{Name: "a", From: from, To: from}}, `windows[0] "a": to: 2026-12-01T00:00:00Z is not after from`},
		{"a bad cron", []Window{{Name: "a", Cron: "0 25 * * *", Duration: time.Hour}}, `windows[0] "a": cron: "0 25 * * *" is not a 5-field cron expression`},
		{"six fields", []Window{{Name: "a", Cron: "0 0 18 * * FRI", Duration: time.Hour}}, `windows[0] "a": cron: "0 0 18 * * FRI" is not a 5-field cron expression`},
		{"@every", []Window{{Name: "a", Cron: "@every 1h", Duration: time.Hour}}, `windows[0] "a": cron: "@every 1h": @every has no fixed starts`},
		{"a zone in the cron", []Window{{Name: "a", Cron: "CRON_TZ=Europe/Berlin 0 18 * * FRI", Duration: time.Hour}}, `windows[0] "a": cron: "CRON_TZ=Europe/Berlin 0 18 * * FRI": set the time zone in freeze.timezone`},
		{"a cron that never starts", []Window{{Name: "a", Cron: "0 0 30 2 *", Duration: time.Hour}}, `windows[0] "a": cron: "0 0 30 2 *" never starts a window`},
		{"a bad glob", []Window{{Name: "a", From: from, To: to, Namespaces: []string{"sockshop-["}}}, `windows[0] "a": namespaces: "sockshop-[" is not a valid glob`},
		{"an empty glob", []Window{{Name: "a", From: from, To: to, Namespaces: []string{""}}}, `windows[0] "a": namespaces: "" is not a valid glob`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nil, tc.windows, now)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New = %v\nwant %s...", err, tc.want)
			}
		})
	}
	// @daily is a fixed start: allowed.
	if _, err := New(nil, []Window{{Name: "a", Cron: "@daily", Duration: time.Hour}}, now); err != nil {
		t.Errorf("@daily: %v", err)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{63 * time.Hour: "63h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 30 * time.Minute: "30m", time.Hour + time.Second: "1h0m1s"} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

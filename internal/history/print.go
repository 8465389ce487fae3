package history

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary counts what a list of entries says.
type Summary struct {
	Actions  int `json:"actions"`   // distinct triggered ids
	Failed   int `json:"failed"`    // refused or failed: a fail result, or a Warning Event
	InFlight int `json:"in_flight"` // ledger records not finished
}

// Summarize counts entries.
func Summarize(entries []Entry) Summary {
	ids, failed, flying := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		id := e.TriggeredID
		if id == "" {
			id = e.Source + "/" + e.Namespace + "/" + e.Target + "/" + e.Time.String()
		}
		ids[id] = true
		if e.Result == "fail" || e.Result == "Warning" {
			failed[id] = true
		}
		if e.InFlight() {
			flying[id] = true
		}
	}
	return Summary{Actions: len(ids), Failed: len(failed), InFlight: len(flying)}
}

// Table prints entries for a person: aligned columns, oldest first, the
// newest last, just above a summary line. Times are in loc (nil: UTC).
func Table(w io.Writer, entries []Entry, loc *time.Location) error {
	if loc == nil {
		loc = time.UTC
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTARGET\tACTION\tWHAT\tRESULT\tTRIGGEREDID\tREPLICA\tDETAIL")
	for _, e := range entries {
		target := e.Target
		switch {
		case target == "" && e.Source == SourceLedger:
			target = "-"
		case e.Namespace != "":
			target = e.Namespace + "/" + target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			e.Time.In(loc).Format("2006-01-02 15:04:05"), target, dash(e.Action), e.What, dash(e.Result),
			dash(e.TriggeredID), dash(e.Replica), short(e.Message, 100))
	}
	s := Summarize(entries)
	fmt.Fprintf(tw, "\n%d %s, %d refused or failed, %d in flight\n", s.Actions, plural(s.Actions, "action", "actions"), s.Failed, s.InFlight)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print the history: %w", err)
	}
	return nil
}

// JSON prints entries as one JSON array: the stable form for scripts.
func JSON(w io.Writer, entries []Entry) error {
	if entries == nil {
		entries = []Entry{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(entries); err != nil {
		return fmt.Errorf("print the history: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short keeps a table cell on one line and within n runes.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

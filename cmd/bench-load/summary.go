package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// summary is a run of rounds over HTTP: each round, and per target and
// measure the median of its rounds.
type summary struct {
	Mode            string   `json:"mode"`
	Concurrency     int      `json:"concurrency"`
	RoundsPerTarget int      `json:"rounds_per_target"`
	Seconds         float64  `json:"max_seconds_per_round"`
	Events          int64    `json:"events_per_round,omitempty"`
	Rounds          []report `json:"rounds"`
	// target → measure (a round's JSON key) → the median of its rounds.
	Median map[string]map[string]float64 `json:"median"`
	// measure → the provider's median ÷ the floor's, with -target both or
	// all; ÷ the template's, with all.
	ProviderOverFloor    map[string]float64 `json:"provider_over_floor,omitempty"`
	ProviderOverTemplate map[string]float64 `json:"provider_over_template,omitempty"`
}

// measureRounds runs -rounds rounds of each target, the floor and the
// provider alternating, so that both see the machine in the same state as
// far as can be.
func measureRounds(ctx context.Context, o options) (summary, error) {
	s := summary{Mode: o.mode, Concurrency: o.concurrency, RoundsPerTarget: o.rounds, Seconds: o.duration.Seconds(), Events: o.events}
	dir, err := os.MkdirTemp("", "bench-load-")
	if err != nil {
		return s, err
	}
	defer os.RemoveAll(dir)
	targets := targetsOf(o)
	for i := range o.rounds {
		for _, t := range targets {
			r, err := measureRound(ctx, o, t, dir)
			if err != nil {
				return s, fmt.Errorf("round %d of the %s: %w", i+1, t, err)
			}
			fmt.Fprintf(os.Stderr, "bench-load: round %d/%d, %-8s %6.0f events/s, p99 %.2f ms (other processes: %.2f cores)\n",
				i+1, o.rounds, t, r.EventsPerSecond, r.P99Millis, r.OtherCPUCores)
			s.Rounds = append(s.Rounds, r)
		}
	}
	s.Median = map[string]map[string]float64{}
	for _, t := range targets {
		s.Median[t] = medians(s.Rounds, t)
	}
	s.ProviderOverFloor = ratios(s.Median, targetFloor)
	s.ProviderOverTemplate = ratios(s.Median, targetTemplate)
	return s, nil
}

// ratios is, for each measure, the provider's median ÷ other's; nil unless
// both were measured.
func ratios(median map[string]map[string]float64, other string) map[string]float64 {
	p, ok1 := median[targetProvider]
	o, ok2 := median[other]
	if !ok1 || !ok2 {
		return nil
	}
	out := map[string]float64{}
	for _, m := range measures() {
		if o[m.key] != 0 {
			out[m.key] = p[m.key] / o[m.key]
		}
	}
	return out
}

func targetsOf(o options) []string {
	switch o.target {
	case targetBoth:
		return []string{targetFloor, targetProvider}
	case targetAll:
		return []string{targetFloor, targetTemplate, targetProvider}
	}
	return []string{o.target}
}

// measure is one row of the summary.
type measure struct {
	key   string // the round's JSON key
	label string
	unit  string
	prec  int // decimals shown
	get   func(report) float64
	// The provider's target, when it has one.
	goal  string
	meets func(v float64, concurrency int) bool
}

func measures() []measure {
	return []measure{
		{key: "events_per_second", label: "finished events/s", prec: 0, get: func(r report) float64 { return r.EventsPerSecond },
			goal: ">= 6000", meets: func(v float64, _ int) bool { return v >= 6000 }},
		{key: "p50_ms", label: "trigger->finished p50", unit: "ms", prec: 2, get: func(r report) float64 { return r.P50Millis }},
		{key: "p99_ms", label: "trigger->finished p99", unit: "ms", prec: 2, get: func(r report) float64 { return r.P99Millis },
			goal: "<= 10 ms", meets: func(v float64, _ int) bool { return v <= 10 }},
		{key: "sink_connections", label: "TCP conns to the sink", prec: 0, get: func(r report) float64 { return float64(r.SinkConnections) },
			goal: "<= 2 x senders", meets: func(v float64, c int) bool { return v <= float64(2*c) }},
		{key: "receiver_connections", label: "TCP conns to the target", prec: 0, get: func(r report) float64 { return float64(r.ReceiverConnections) }},
		{key: "idle_rss_mib", label: "idle RSS, VmRSS", unit: "MiB", prec: 1, get: func(r report) float64 { return r.IdleRSSMiB },
			goal: "<= 25 MB", meets: func(v float64, _ int) bool { return v*1.048576 <= 25 }},
		{key: "idle_rss_anon_mib", label: "  anonymous, RssAnon", unit: "MiB", prec: 1, get: func(r report) float64 { return r.IdleRSSAnonMiB }},
		{key: "idle_rss_file_mib", label: "  file-backed, RssFile", unit: "MiB", prec: 1, get: func(r report) float64 { return r.IdleRSSFileMiB }},
		{key: "peak_rss_mib", label: "peak RSS, VmHWM", unit: "MiB", prec: 1, get: func(r report) float64 { return r.PeakRSSMiB }},
		{key: "ready_ms", label: "exec -> ready", unit: "ms", prec: 1, get: func(r report) float64 { return r.ReadyMillis },
			goal: "<= 200 ms", meets: func(v float64, _ int) bool { return v <= 200 }},
		{key: "provider_cpu_us_per_event", label: "CPU/event, target", unit: "us", prec: 0, get: func(r report) float64 { return r.ProviderCPUMicros }},
		{key: "tool_cpu_us_per_event", label: "CPU/event, load tool", unit: "us", prec: 0, get: func(r report) float64 { return r.ToolCPUMicros }},
		{key: "refused_503", label: "503 answers", prec: 0, get: func(r report) float64 { return float64(r.Refused503) }},
	}
}

// medians is, for each measure, the median of target's rounds.
func medians(rounds []report, target string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range measures() {
		var vs []float64
		for _, r := range rounds {
			if r.Target == target {
				vs = append(vs, m.get(r))
			}
		}
		out[m.key] = median(vs)
	}
	return out
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Sorted(slices.Values(vs))
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

func printSummary(w io.Writer, s summary) {
	lane := "a keep-alive connection per sender"
	if s.Mode == modeDistributor {
		lane = "one forward at a time, each on a new TCP connection"
	}
	length := fmt.Sprintf("%.0fs", s.Seconds)
	if s.Events > 0 {
		length = fmt.Sprintf("%d events (at most %.0fs)", s.Events, s.Seconds)
	}
	fmt.Fprintf(w, "bench-load: %s mode (%s), %d senders each with one event in flight, %d round(s) per target of %s;\n",
		s.Mode, lane, s.Concurrency, s.RoundsPerTarget, length)
	fmt.Fprintf(w, "  the provider runs scale in dry-run against the sandbox; the floor decodes, answers 202, POSTs started and finished\n")
	if _, ok := s.Median[targetTemplate]; ok {
		fmt.Fprintf(w, "  the template (keptn-service-template-go) handles action-xyz: started, then finished, then answers 200\n")
	}
	fmt.Fprintln(w)
	printRounds(w, s.Rounds)
	fmt.Fprintln(w)
	printMedians(w, s)
}

func printRounds(w io.Writer, rounds []report) {
	fmt.Fprintf(w, "  %-9s %9s %8s %8s %12s %10s %16s %16s\n", "target", "events/s", "p50 ms", "p99 ms", "CPU/ev tgt", "tool",
		"started/finished", "others' CPU")
	for _, r := range rounds {
		fmt.Fprintf(w, "  %-9s %9.0f %8.2f %8.2f %9.0f us %7.0f us %16s %10.2f cores\n", r.Target, r.EventsPerSecond, r.P50Millis, r.P99Millis,
			r.ProviderCPUMicros, r.ToolCPUMicros, fmt.Sprintf("%d/%d", r.StartedEvents, r.FinishedEvents), r.OtherCPUCores)
	}
}

func printMedians(w io.Writer, s summary) {
	var targets []string
	for _, t := range []string{targetFloor, targetTemplate, targetProvider} {
		if _, ok := s.Median[t]; ok {
			targets = append(targets, t)
		}
	}
	header := fmt.Sprintf("  %-29s", fmt.Sprintf("median of %d", s.RoundsPerTarget))
	for _, t := range targets {
		header += fmt.Sprintf(" %10s", t)
	}
	if s.ProviderOverFloor != nil {
		header += fmt.Sprintf(" %16s", "provider÷floor")
	}
	if s.ProviderOverTemplate != nil {
		header += fmt.Sprintf(" %16s", "÷template")
	}
	fmt.Fprintln(w, header+"   provider's target")
	for _, m := range measures() {
		label := m.label
		if m.unit != "" {
			label += " (" + m.unit + ")"
		}
		line := fmt.Sprintf("  %-29s", label)
		for _, t := range targets {
			line += fmt.Sprintf(" %10.*f", m.prec, s.Median[t][m.key])
		}
		if s.ProviderOverFloor != nil {
			line += ratioCell(s.ProviderOverFloor, m.key)
		}
		if s.ProviderOverTemplate != nil {
			line += ratioCell(s.ProviderOverTemplate, m.key)
		}
		fmt.Fprintln(w, strings.TrimRight(line+goalCell(s, m), " "))
	}
}

func ratioCell(ratios map[string]float64, key string) string {
	if v, ok := ratios[key]; ok {
		return fmt.Sprintf(" %15.2f ", v)
	}
	return fmt.Sprintf(" %15s ", "-")
}

// goalCell says whether the provider's median meets its target.
func goalCell(s summary, m measure) string {
	p, ok := s.Median[targetProvider]
	if !ok || m.meets == nil {
		return ""
	}
	verdict := "meets"
	if !m.meets(p[m.key], s.Concurrency) {
		verdict = "MISSES"
	}
	return fmt.Sprintf("   %s: %s", m.goal, verdict)
}

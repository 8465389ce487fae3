// Command bench-load measures the built action-provider binary under load.
//
// Over HTTP (the default transport) it starts the process under test
// against an in-process event sink that stands for the distributor's
// /event endpoint, and has -concurrency senders each POST a scale event
// and wait for its finished event before sending the next (a closed
// loop). How the events are POSTed is the -mode:
//
//   - pooled (the default): each sender on a keep-alive connection of its
//     own, N events forwarded at a time.
//   - distributor: as Keptn 1.4.5's distributor forwards, one event at a
//     time, each on a new TCP connection (the senders queue for that one
//     lane, and their wait counts in the latency); with -concurrency 1
//     exactly one event is in flight end to end.
//
// In both modes the process answers started and finished by POSTing to the
// sink's /event, on whatever connections it keeps.
//
// The process under test is the -target: the provider (sandbox, dry-run
// scale), the floor (a bare receiver of this binary, run as a child process
// like the provider so that its CPU and memory are measured the same way:
// it decodes the event, answers 202 and POSTs started and finished on a
// pooled client), or both (the default), alternated for -rounds rounds.
// With -template-binary, -target template or all adds a third: the public
// keptn-service-template-go, built by the user from a checkout (see
// docs/performance.md), which handles action-xyz and POSTs its replies to
// localhost:8081, go-utils' default event endpoint, where the sink then
// listens. Each round starts a fresh process; the report gives each round, then for
// each measure the median of the rounds per target and the provider ÷
// floor ratio: finished events/s, trigger→finished p50 and p99, TCP
// connections to the sink and to the target, idle RSS (VmRSS, RssAnon and
// RssFile, read once the ready process has settled), peak RSS, exec →
// ready, and the CPU per event of the target and of this tool apart.
// Every request goes to 127.0.0.1, and each round is bounded by -duration
// (or ends earlier after -events measured events).
//
// With -transport nats it starts a nats-server of its own (NATS_SERVER_BIN,
// else where test/nats/nats-server.sh installs it) and -replicas providers
// with TRANSPORT=nats in one queue group, each with its own EVENT_SOURCE;
// the senders publish the triggered events on NATS and wait for their
// finished event on NATS, and the report gives, instead of the sink's
// connections, how many events each replica started. Every child process
// is stopped when the tool ends, on an error too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	binary      string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	events      int64
	jsonOut     bool
	transport   string
	replicas    int
	mode        string
	target      string
	rounds      int
	templateBin string
}

// How events are POSTed over HTTP (-mode).
const (
	modePooled      = "pooled"
	modeDistributor = "distributor"
)

// What a round loads (-target); both alternates the floor and the
// provider, all those and the template.
const (
	targetProvider = "provider"
	targetFloor    = "floor"
	targetTemplate = "template"
	targetBoth     = "both"
	targetAll      = "all"
)

func main() {
	// The floor is this binary run again by a round (see floor.go).
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		os.Exit(floorMain())
	}
	o, set := parseFlags()
	if err := o.validate(set); err != nil {
		fmt.Fprintln(os.Stderr, "bench-load:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-load:", err)
		os.Exit(1)
	}
}

// parseFlags returns the options and the names of the flags given.
func parseFlags() (options, map[string]bool) {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/action-provider", "the action-provider binary to measure")
	flag.IntVar(&o.concurrency, "concurrency", 16, "senders, each with one event in flight (waiting for its finished event)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each round sends after warm-up")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "sending before measuring starts")
	flag.Int64Var(&o.events, "events", 0, "end a round once this many finished events are measured (0: after -duration, which bounds it anyway)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.StringVar(&o.transport, "transport", "http", "http: POST to the target's receiver, replies to an in-process sink; "+
		"nats: through a nats-server of its own (NATS_SERVER_BIN, else test/nats/nats-server.sh's) and -replicas providers in one queue group")
	flag.IntVar(&o.replicas, "replicas", 1, "with -transport nats: provider processes sharing the queue group")
	flag.StringVar(&o.mode, "mode", modePooled, "with -transport http: pooled: a keep-alive connection per sender; "+
		"distributor: one forward at a time, each on a new TCP connection, as Keptn 1.4.5's distributor")
	flag.StringVar(&o.target, "target", targetBoth, "with -transport http: provider, floor (a bare receiver), template (needs -template-binary), "+
		"both (floor and provider, alternated) or all (floor, template and provider)")
	flag.StringVar(&o.templateBin, "template-binary", "", "keptn-service-template-go built from a checkout, for -target template or all")
	flag.IntVar(&o.rounds, "rounds", 3, "with -transport http: rounds per target; the report gives their median")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return o, set
}

func (o options) validate(set map[string]bool) error {
	switch {
	case o.transport != "http" && o.transport != "nats":
		return fmt.Errorf("-transport %q: must be http or nats", o.transport)
	case o.replicas < 1:
		return fmt.Errorf("-replicas %d: must be at least 1", o.replicas)
	case o.replicas != 1 && o.transport != "nats":
		return errors.New("-replicas is for -transport nats only")
	case o.transport == "nats" && (set["mode"] || set["target"] || set["rounds"] || set["events"]):
		return errors.New("-mode, -target, -rounds and -events are for -transport http only")
	case o.mode != modePooled && o.mode != modeDistributor:
		return fmt.Errorf("-mode %q: must be %s or %s", o.mode, modePooled, modeDistributor)
	case o.target != targetProvider && o.target != targetFloor && o.target != targetTemplate && o.target != targetBoth && o.target != targetAll:
		return fmt.Errorf("-target %q: must be %s, %s, %s, %s or %s", o.target, targetProvider, targetFloor, targetTemplate, targetBoth, targetAll)
	case (o.target == targetTemplate || o.target == targetAll) && o.templateBin == "":
		return fmt.Errorf("-target %s needs -template-binary", o.target)
	case o.templateBin != "" && o.target != targetTemplate && o.target != targetAll:
		return fmt.Errorf("-template-binary is for -target %s or %s (with -transport http)", targetTemplate, targetAll)
	case o.rounds < 1:
		return fmt.Errorf("-rounds %d: must be at least 1", o.rounds)
	case o.concurrency < 1:
		return fmt.Errorf("-concurrency %d: must be at least 1", o.concurrency)
	case o.duration <= 0 || o.warmup < 0 || o.events < 0:
		return errors.New("-duration must be positive, -warmup and -events not negative")
	}
	return nil
}

func run(ctx context.Context, o options) error {
	if o.transport == "nats" {
		r, err := measureNATS(ctx, o)
		if err != nil {
			return err
		}
		emit(o, r, func(w io.Writer) { printNATSReport(w, r) })
		return nil
	}
	r, err := measureRounds(ctx, o)
	if err != nil {
		return err
	}
	emit(o, r, func(w io.Writer) { printSummary(w, r) })
	return nil
}

// emit prints a report as text, or as JSON with -json.
func emit(o options, r any, text func(io.Writer)) {
	if o.jsonOut {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	text(os.Stdout)
}

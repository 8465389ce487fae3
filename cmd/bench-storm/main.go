// Command bench-storm sends a remediation storm to the built action-provider
// binary acting on a real Kubernetes control plane, and reports what it
// cost and whether the provider kept its contract.
//
// It needs a running control plane of test/controlplane (the env file
// `controlplane.sh start DIR` writes, DIR/env; `make bench-storm` starts
// and stops one). There it creates -deployments Deployments (kwok makes
// their pods ready), starts the provider on the real cluster (not the
// sandbox, not a dry run) as a ServiceAccount, and has -senders
// distributor-like senders POST -events scale and restart events at once,
// each POST on a new TCP connection. Many events hit the same Deployment,
// so that the lock and the cooldown must refuse most of them. An
// in-process sink collects every started and finished event.
//
// It checks: every POST was accepted; exactly one started, then one
// finished, per event; each refusal is the lock's or the cooldown's and
// names the event that passed on that Deployment; each Deployment has the
// passes its events allow, and the API server shows their effect (replicas,
// restart annotation) and nothing more; the ledger recorded every event as
// finished and holds no lock; the heartbeat never lapsed; the provider's
// requests, watches aside, stayed within its client-side rate limit
// (KUBE_API_QPS and KUBE_API_BURST when the build has them); the provider
// stopped cleanly. docs/storm.md has the figures and what they say.
//
// It reports: the time from the first POST to the last finished event; the
// API server's requests and their latency during the storm (its /metrics
// before and after), the provider's share of them (its own flow schema in
// the priority and fairness metrics) and its busiest second (sampled from
// /debug/api_priority_and_fairness/dump_priority_levels); the provider's
// idle and peak RSS and CPU time; the heartbeat's renewals.
//
// Everything listens on, and talks to, 127.0.0.1; the whole run is
// bounded by -timeout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/childproc"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/testsupport/controlplane"
)

type options struct {
	binary      string
	envPath     string
	deployments int
	events      int
	senders     int
	replicas    int
	cooldown    time.Duration
	heartbeat   time.Duration
	qps         float64
	burst       int
	poll        time.Duration
	timeout     time.Duration
	seed        uint64
	jsonOut     bool
	keep        bool
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/action-provider", "the action-provider binary")
	flag.StringVar(&o.envPath, "controlplane-env", os.Getenv(controlplane.EnvVar), "env file of a running test/controlplane (DIR/env); default $"+controlplane.EnvVar)
	flag.IntVar(&o.deployments, "deployments", 50, "Deployments the events target")
	flag.IntVar(&o.events, "events", 200, "scale and restart events sent at once")
	flag.IntVar(&o.senders, "senders", 4, "distributor-like senders, each POSTing its share one after the other, a new connection per POST")
	flag.IntVar(&o.replicas, "replicas", 2, "replicas of each Deployment before the storm")
	flag.DurationVar(&o.cooldown, "cooldown", 5*time.Minute, "ACTION_COOLDOWN")
	flag.DurationVar(&o.heartbeat, "heartbeat", 2*time.Second, "HEARTBEAT_PERIOD (short, so that the storm spans several renewals)")
	flag.Float64Var(&o.qps, "qps", 0, "KUBE_API_QPS for the provider (0: its default)")
	flag.IntVar(&o.burst, "burst", 0, "KUBE_API_BURST for the provider (0: its default)")
	flag.DurationVar(&o.poll, "poll", 250*time.Millisecond, "how often the API server's dispatched-request count is sampled")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound of the whole run")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the events' order")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (the provider's log, its kubeconfig)")
	flag.Parse()
	if o.envPath == "" {
		fmt.Fprintln(os.Stderr, "bench-storm: no control plane: pass -controlplane-env DIR/env (test/controlplane/controlplane.sh start DIR) or use make bench-storm")
		os.Exit(2)
	}
	if o.replicas < 1 || o.senders < 1 || o.poll <= 0 || o.timeout <= 0 || o.heartbeat <= 0 || o.qps < 0 || o.burst < 0 {
		fmt.Fprintln(os.Stderr, "bench-storm: -replicas, -senders, -poll, -timeout and -heartbeat must be positive, -qps and -burst not negative")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r, err := run(ctx, o)
	if r != nil {
		if o.jsonOut {
			_ = json.NewEncoder(os.Stdout).Encode(r)
		} else {
			r.print(os.Stdout)
		}
	}
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench-storm:", err)
		os.Exit(1)
	case r.failed():
		os.Exit(1)
	}
}

// check is one thing the storm must show.
type check struct {
	Name   string   `json:"name"`
	OK     bool     `json:"ok"`
	Detail []string `json:"detail,omitempty"`
}

// report is what one storm measured and checked.
type report struct {
	Version     string  `json:"version"` // the binary's --version
	Deployments int     `json:"deployments"`
	Events      int     `json:"events"`
	Senders     int     `json:"senders"`
	LoadBefore  string  `json:"load_before"` // /proc/loadavg
	LoadAfter   string  `json:"load_after"`
	Accepted    int     `json:"accepted"`
	Non2xx      int     `json:"non_2xx"`
	PostErrors  int     `json:"post_errors"`
	SendSeconds float64 `json:"send_seconds"` // first POST to the last answer

	LastFinishedSeconds float64 `json:"last_finished_seconds"` // first POST to the last finished event
	StartedMillis       quant   `json:"trigger_to_started_ms"`
	FinishedMillis      quant   `json:"trigger_to_finished_ms"`

	Passes  map[string]int `json:"passes"`
	Refused map[string]int `json:"refused"`

	APIRequests      float64 `json:"api_requests"` // every client's, during the storm
	APIRate          float64 `json:"api_requests_per_second"`
	APILatencyMillis quant   `json:"api_latency_ms"` // all but WATCH and CONNECT
	// The busiest "VERB resource" pairs of every client's requests; leases
	// are, but for kwok's node Lease, the provider's ledger.
	APIBusiest        []string `json:"api_busiest"`
	ProviderRequests  float64  `json:"provider_requests"`
	ProviderRate      float64  `json:"provider_requests_per_second"`
	ProviderPeak1s    float64  `json:"provider_peak_requests_per_second"`
	ProviderExcess    float64  `json:"provider_excess_over_qps"` // most requests beyond QPS × window in any window
	ProviderExecMs    quant    `json:"provider_execution_ms"`
	ProviderAPFWaitMs quant    `json:"provider_apf_wait_ms"`
	ProviderRejected  float64  `json:"provider_rejected"`
	QPS               float64  `json:"kube_api_qps"`
	Burst             int      `json:"kube_api_burst"`
	LimitsSettable    bool     `json:"limits_settable"`
	ToolPolls         int      `json:"tool_polls"` // this tool's own requests among APIRequests, about
	// The provider's requests for custom resources (KEDA, Argo, Flux):
	// its dynamic client's, which shares the clientset's token bucket since
	// b6f4c7e (it had one of its own); only the provider asks for them
	// during the storm.
	CustomResourceRequests float64 `json:"custom_resource_requests"`
	// The provider's watches, which client-go never rate-limits
	// (rest.Request.Watch).
	ProviderWatches float64 `json:"provider_watches"`
	// client-go's own log of requests it held back (rate-limited itself,
	// so a sample): how many lines, and the longest wait.
	ThrottleLogLines int     `json:"throttle_log_lines"`
	ThrottleMaxMs    float64 `json:"throttle_max_ms"`

	IdleRSSMiB    float64 `json:"idle_rss_mib"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	ProviderCPUMs float64 `json:"provider_cpu_ms"` // during the storm

	HeartbeatPeriod string  `json:"heartbeat_period"`
	Heartbeats      int     `json:"heartbeats"`           // renewals during the storm
	HeartbeatGapMs  float64 `json:"heartbeat_max_gap_ms"` // between two renewTimes
	HeartbeatLagMs  float64 `json:"heartbeat_max_lag_ms"` // renewTime to the write seen on the server
	// The Lease's closest call: the longest a renewal took to land after
	// the previous renewTime, against the three periods after which
	// another replica judges the provider dead.
	HeartbeatLapseMs float64        `json:"heartbeat_closest_to_lapse_ms"`
	LedgerEventState map[string]int `json:"ledger_event_records"`

	Checks []check `json:"checks"`
}

// quant is a distribution's summary.
type quant struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max,omitempty"`
	Mean float64 `json:"mean,omitempty"`
}

func quantiles(ms []float64) quant {
	if len(ms) == 0 {
		return quant{}
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return quant{P50: at(0.50), P99: at(0.99), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

func (r *report) add(name string, ok bool, detail ...string) {
	r.Checks = append(r.Checks, check{Name: name, OK: ok, Detail: detail})
}

func (r *report) failed() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return true
		}
	}
	return false
}

func run(ctx context.Context, o options) (*report, error) {
	p, err := makePlan(o.deployments, o.events, o.senders, o.seed)
	if err != nil {
		return nil, err
	}
	limits, err := inspectBinary(ctx, o.binary)
	if err != nil {
		return nil, err
	}
	if (o.qps > 0 || o.burst > 0) && !limits.configurable {
		return nil, fmt.Errorf("%s has no KUBE_API_QPS and KUBE_API_BURST (not in its --help): -qps and -burst cannot be applied", o.binary)
	}
	if o.qps > 0 {
		limits.qps = o.qps
	}
	if o.burst > 0 {
		limits.burst = o.burst
	}

	cp, err := controlplane.Connect(o.envPath)
	if err != nil {
		return nil, err
	}
	k := kube{cfg: cp.Config, client: cp.Client}
	dir, err := os.MkdirTemp("", "bench-storm-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.keep {
			fmt.Fprintln(os.Stderr, "bench-storm: kept", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()

	setupCtx, cancelSetup := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelSetup()
	fmt.Fprintf(os.Stderr, "bench-storm: creating %d Deployments of %d replicas in %s\n", o.deployments, o.replicas, targetNamespace)
	if err := k.setUp(setupCtx, p, int32(o.replicas)); err != nil {
		return nil, err
	}
	kubeconfig, err := k.providerKubeconfig(setupCtx, dir)
	if err != nil {
		return nil, err
	}

	// The sink, as the distributor's /event endpoint.
	rec := newRecorder()
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sinkSrv := &http.Server{Handler: &eventsink.Sink{OnEvent: rec.add}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = sinkSrv.Serve(sinkLn) }()
	defer sinkSrv.Close()

	hbCtx, stopHB := context.WithCancel(ctx)
	hb := k.watchHeartbeats(hbCtx)
	defer func() { stopHB(); <-hb.done }()

	prov, rcvURL, err := startProvider(setupCtx, o, limits, kubeconfig, dir, "http://"+sinkLn.Addr().String()+"/event")
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			prov.stop(30 * time.Second)
		}
	}()
	// The first heartbeat on record: the provider is settled.
	for len(hb.all()) == 0 {
		select {
		case <-setupCtx.Done():
			return nil, fmt.Errorf("no heartbeat Lease of the provider: %w\n%s", setupCtx.Err(), prov.tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}

	r := &report{Version: limits.version, Deployments: o.deployments, Events: o.events, Senders: o.senders, QPS: limits.qps, Burst: limits.burst,
		LimitsSettable: limits.configurable, HeartbeatPeriod: o.heartbeat.String(), LoadBefore: loadavg()}
	r.IdleRSSMiB = childproc.ReadMemory(prov.PID()).RSS

	scrapedBefore := time.Now()
	before, err := k.scrape(ctx)
	if err != nil {
		return nil, err
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	poller := k.pollDispatched(pollCtx, priorityLevel, o.poll)
	defer func() { stopPoll(); <-poller.done }()
	cpu0 := childproc.CPUTime(prov.PID())

	fmt.Fprintf(os.Stderr, "bench-storm: %d events from %d senders at once\n", o.events, o.senders)
	begin := time.Now()
	answers := send(ctx, p, rcvURL)
	sent := time.Now()
	var accepted []string
	var bad []string
	for i, a := range answers {
		switch {
		case a.err != nil:
			r.PostErrors++
			bad = append(bad, fmt.Sprintf("%s: %v", p.events[i].id, a.err))
		case a.code == http.StatusAccepted:
			accepted = append(accepted, p.events[i].id)
		default:
			if a.code < 200 || a.code > 299 {
				r.Non2xx++
			}
			bad = append(bad, fmt.Sprintf("%s: %d %q", p.events[i].id, a.code, a.answer))
		}
	}
	r.Accepted = len(accepted)
	r.SendSeconds = sent.Sub(begin).Seconds()
	r.add(fmt.Sprintf("every POST answered 202 accepted (%d of %d)", len(accepted), len(answers)), len(bad) == 0, firstN(bad, 10)...)

	last, waitErr := rec.awaitFinished(ctx, accepted)
	r.LastFinishedSeconds = last.Sub(begin).Seconds()
	r.ProviderCPUMs = float64((childproc.CPUTime(prov.PID()) - cpu0).Milliseconds())
	r.PeakRSSMiB = childproc.ReadMemory(prov.PID()).Peak
	r.LoadAfter = loadavg()
	// A fresh context: the report is wanted even when the storm ran out of time.
	endCtx, cancelEnd := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancelEnd()
	after, err := k.scrape(endCtx)
	if err != nil {
		return r, err
	}
	scrapedAfter := time.Now()
	stopPoll()
	<-poller.done
	stopHB()
	<-hb.done
	if waitErr != nil {
		r.add("every accepted event has a finished event", false, waitErr.Error())
	}

	// Once the provider has exited, nothing more can arrive: the counts are final.
	stopped = true
	r.add("the provider exits with status 0 on SIGTERM", prov.stop(30*time.Second), prov.tail(5))

	elapsed := last.Sub(begin)
	r.apiFigures(before, after, elapsed)
	samples, polls, pollErr := poller.result()
	r.ToolPolls = polls + 2
	r.rateFigures(samples, pollErr, scrapedAfter.Sub(scrapedBefore))
	r.heartbeatFigures(hb.all(), begin, last, o.heartbeat)
	r.throttled(prov.Log())

	states, err := k.targetStates(endCtx)
	if err != nil {
		return r, err
	}
	got := rec.snapshot()
	v := judge(p, answers, got, states, int32(o.replicas))
	r.Passes, r.Refused = v.passes, v.refused
	r.add("exactly one started then one finished per event; passes and refusals as the lock and the cooldown allow; the API server shows each pass and nothing else",
		len(v.problems) == 0, firstN(v.problems, 20)...)
	var toStarted, toFinished []float64
	for i, ev := range p.events {
		if out, ok := v.outcomes[ev.id]; ok {
			toStarted = append(toStarted, ms(out.started.Sub(answers[i].at)))
			toFinished = append(toFinished, ms(out.finished.Sub(answers[i].at)))
		}
	}
	r.StartedMillis, r.FinishedMillis = quantiles(toStarted), quantiles(toFinished)

	events, held, err := k.ledgerState(endCtx)
	if err != nil {
		return r, err
	}
	r.LedgerEventState = events
	r.add(fmt.Sprintf("the ledger recorded every event as finished (%d) and holds no lock", len(accepted)),
		events["finished"] == len(accepted) && len(events) == 1 && len(held) == 0,
		fmt.Sprintf("event records by state %v; locks held: %v", events, held))
	return r, nil
}

// startProvider starts the binary on the real cluster with the storm's
// configuration and waits until it is ready. Ports are picked free and
// handed over, so another process may take one in between: a start that
// fails so is tried again.
func startProvider(ctx context.Context, o options, l clientLimits, kubeconfig, dir, broker string) (*proc, string, error) {
	for attempt := 1; ; attempt++ {
		rcv, err := childproc.FreePort()
		if err != nil {
			return nil, "", err
		}
		ops, err := childproc.FreePort()
		if err != nil {
			return nil, "", err
		}
		env := []string{
			"KUBECONFIG=" + kubeconfig, "SANDBOX=false", "DRY_RUN=false",
			"RCV_HOST=127.0.0.1", "RCV_PORT=" + strconv.Itoa(rcv), "OPS_HOST=127.0.0.1", "OPS_PORT=" + strconv.Itoa(ops),
			"EVENTBROKER=" + broker,
			"POD_NAMESPACE=" + ledgerNamespace, "POD_NAME=storm-provider-0",
			"ALLOWED_NAMESPACES=" + project + "-*",
			"ACTION_COOLDOWN=" + o.cooldown.String(), "HEARTBEAT_PERIOD=" + o.heartbeat.String(),
			"SHUTDOWN_GRACE=20s", "SHUTDOWN_FLUSH=5s",
			"LOG_FORMAT=json", "LOG_LEVEL=info",
			"GOGC=200", // as the chart and deploy/service.yaml set it
		}
		if l.configurable {
			env = append(env, "KUBE_API_QPS="+strconv.FormatFloat(l.qps, 'f', -1, 64), "KUBE_API_BURST="+strconv.Itoa(l.burst))
		}
		p, err := startProc(filepath.Join(dir, "provider.log"), o.binary, env)
		if err != nil {
			return nil, "", err
		}
		err = p.awaitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(ops)+"/readyz")
		if err == nil {
			return p, "http://127.0.0.1:" + strconv.Itoa(rcv) + "/", nil
		}
		p.stop(5 * time.Second)
		if attempt < 3 && strings.Contains(p.tail(20), "address already in use") {
			continue
		}
		return nil, "", err
	}
}

// apiFigures are the API server's requests during the storm, from its
// /metrics before and after.
func (r *report) apiFigures(before, after snapshot, elapsed time.Duration) {
	all := func(map[string]string) bool { return true }
	provider := func(l map[string]string) bool { return l["flow_schema"] == flowSchema }
	r.APIRequests = after.sum("apiserver_request_total", all) - before.sum("apiserver_request_total", all)
	r.APIRate = r.APIRequests / elapsed.Seconds()
	lat := histogramDelta(before, after, "apiserver_request_duration_seconds", func(l map[string]string) bool { return !longRunning(l) })
	r.APILatencyMillis = quant{P50: lat.quantile(0.5) * 1000, P99: lat.quantile(0.99) * 1000, Mean: lat.mean() * 1000}
	r.ProviderRequests = after.sum("apiserver_flowcontrol_dispatched_requests_total", provider) - before.sum("apiserver_flowcontrol_dispatched_requests_total", provider)
	r.ProviderRate = r.ProviderRequests / elapsed.Seconds()
	r.ProviderRejected = after.sum("apiserver_flowcontrol_rejected_requests_total", provider) - before.sum("apiserver_flowcontrol_rejected_requests_total", provider)
	exec := histogramDelta(before, after, "apiserver_flowcontrol_request_execution_seconds",
		func(l map[string]string) bool { return provider(l) && l["type"] != "watch" })
	r.ProviderExecMs = quant{P50: exec.quantile(0.5) * 1000, P99: exec.quantile(0.99) * 1000, Mean: exec.mean() * 1000}
	wait := histogramDelta(before, after, "apiserver_flowcontrol_request_wait_duration_seconds",
		func(l map[string]string) bool { return provider(l) && l["execute"] == "true" })
	r.ProviderAPFWaitMs = quant{P50: wait.quantile(0.5) * 1000, P99: wait.quantile(0.99) * 1000, Mean: wait.mean() * 1000}
	r.APIBusiest = busiest(before, after, 8)
	watches := func(l map[string]string) bool { return provider(l) && l["type"] == "watch" }
	r.ProviderWatches = after.sum("apiserver_flowcontrol_request_execution_seconds_count", watches) -
		before.sum("apiserver_flowcontrol_request_execution_seconds_count", watches)
	r.CustomResourceRequests = after.sum("apiserver_request_total", customResource) - before.sum("apiserver_request_total", customResource)
	r.add(fmt.Sprintf("the provider's requests are told apart (flow schema %s): %.0f", flowSchema, r.ProviderRequests), r.ProviderRequests > 0)
	r.add("the API server rejected none of the provider's requests", r.ProviderRejected == 0, fmt.Sprintf("%.0f rejected", r.ProviderRejected))
}

// busiest lists the n "VERB resource" pairs with the most requests
// between two scrapes, with their counts.
func busiest(before, after snapshot, n int) []string {
	delta := map[string]float64{}
	for _, x := range after {
		if x.name == "apiserver_request_total" {
			delta[x.labels["verb"]+" "+x.labels["resource"]+subresource(x.labels)] += x.value
		}
	}
	for _, x := range before {
		if x.name == "apiserver_request_total" {
			delta[x.labels["verb"]+" "+x.labels["resource"]+subresource(x.labels)] -= x.value
		}
	}
	keys := make([]string, 0, len(delta))
	for k := range delta {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmpFloat(delta[b], delta[a]) })
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s %.0f", k, delta[k]))
	}
	return out
}

func subresource(l map[string]string) string {
	if l["subresource"] != "" {
		return "/" + l["subresource"]
	}
	return ""
}

// customResource says whether a request is for a custom resource: its
// group is neither a built-in one (no dot, or *.k8s.io) nor the core group.
func customResource(l map[string]string) bool {
	g := l["group"]
	return strings.Contains(g, ".") && !strings.HasSuffix(g, ".k8s.io") && !longRunning(l)
}

// throttled reads client-go's "Waited before sending request" lines from
// the provider's log.
func (r *report) throttled(log string) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "Waited before sending request") {
			continue
		}
		r.ThrottleLogLines++
		if _, rest, ok := strings.Cut(line, `delay="`); ok {
			if d, err := time.ParseDuration(rest[:max(0, strings.IndexByte(rest, '"'))]); err == nil {
				r.ThrottleMaxMs = max(r.ThrottleMaxMs, ms(d))
			}
		}
	}
}

// rateFigures checks the provider's requests against its client-side
// limit, a token bucket of QPS and burst, which lets at most burst + QPS ×
// t requests through in any time t; watches do not pass through it, and
// are left out. The check takes the requests counted
// between the two scrapes of /metrics, and the time between them (which
// holds them all): over a whole storm, a stall of the API server or of
// this tool, frequent on a loaded machine, moves a request's count by
// little. The samples of the dispatched count give the busiest second and
// the most requests beyond QPS × window in any window, as figures only: a
// server that stalls for a second and then dispatches what piled up packs
// requests the client spread out.
// heartbeatRequests is the provider's heartbeat bucket: so many requests
// per HEARTBEAT_PERIOD, and as many at once.
const heartbeatRequests = 4

func (r *report) rateFigures(s []dispatched, pollErr error, between time.Duration) {
	if pollErr == nil && len(s) >= 2 {
		f := rates(s, r.QPS)
		r.ProviderPeak1s, r.ProviderExcess = f.peak1s, f.excess
	}
	bound := float64(r.Burst) + r.QPS*between.Seconds()
	// The heartbeats have a bucket of their own in the provider
	// (cmd/action-provider's heartbeatRequests per HEARTBEAT_PERIOD).
	if period, err := time.ParseDuration(r.HeartbeatPeriod); err == nil && period > 0 {
		bound += heartbeatRequests * (1 + between.Seconds()/period.Seconds())
	}
	limited := r.ProviderRequests - r.ProviderWatches
	typed := limited - r.CustomResourceRequests
	r.add(fmt.Sprintf("the provider's requests stay within its client-side limit (QPS %g, burst %d, and the heartbeats' own bucket)", r.QPS, r.Burst),
		limited <= bound,
		fmt.Sprintf("%.0f requests (and %.0f watches, never rate-limited) in %s, at most %.0f (burst + QPS × time, and %d per heartbeat period)",
			limited, r.ProviderWatches, between.Round(time.Millisecond), bound, heartbeatRequests),
		fmt.Sprintf("its typed client alone: %.0f (within: %t); its dynamic client (custom resources), on the same token bucket: %.0f",
			typed, typed <= bound, r.CustomResourceRequests))
}

// heartbeatFigures checks that the heartbeat never lapsed during the
// storm: each renewal landed on the server before the previous one ran out
// (three periods after its renewTime, when another replica would report the
// provider's running actions as interrupted), and, at the end, the last
// one had not run out either. It also reports how regular the renewals
// were: the longest gap between two renewTimes, and the longest a renewal
// took to land.
func (r *report) heartbeatFigures(beats []beat, begin, end time.Time, period time.Duration) {
	slices.SortFunc(beats, func(a, b beat) int { return a.renew.Compare(b.renew) })
	ttl := 3 * period
	var prev *beat
	var maxGap, maxLag, closest time.Duration
	for i := range beats {
		b := &beats[i]
		if b.renew.After(end) {
			break
		}
		if b.renew.Before(begin) {
			prev = b
			continue
		}
		r.Heartbeats++
		lag := time.Duration(0)
		if !b.added {
			lag = b.seen.Sub(b.renew)
			maxLag = max(maxLag, lag)
		}
		if prev != nil {
			maxGap = max(maxGap, b.renew.Sub(prev.renew))
			closest = max(closest, b.renew.Add(lag).Sub(prev.renew))
		}
		prev = b
	}
	if prev != nil {
		closest = max(closest, end.Sub(prev.renew))
	}
	r.HeartbeatGapMs, r.HeartbeatLagMs, r.HeartbeatLapseMs = ms(maxGap), ms(maxLag), ms(closest)
	r.add(fmt.Sprintf("the heartbeat never lapsed during the storm (period %s, judged dead after %s)", period, ttl),
		prev != nil && r.Heartbeats > 0 && closest < ttl,
		fmt.Sprintf("%d renewals; longest gap between renewTimes %s; slowest to land %s; closest to lapsing %s of %s",
			r.Heartbeats, maxGap.Round(time.Millisecond), maxLag.Round(time.Millisecond), closest.Round(time.Millisecond), ttl))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("… and %d more", len(s)-n))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func (r *report) print(w io.Writer) {
	nan := func(v float64) string {
		if math.IsNaN(v) {
			return "n/a"
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	limits := "fixed in this build"
	if r.LimitsSettable {
		limits = "KUBE_API_QPS/KUBE_API_BURST"
	}
	fmt.Fprintf(w, "bench-storm: %d scale/restart events on %d Deployments from %d senders; %s; load average %s before, %s after\n",
		r.Events, r.Deployments, r.Senders, r.Version, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "  accepted                 %d (non-2xx %d, errors %d), all sent in %.2f s\n", r.Accepted, r.Non2xx, r.PostErrors, r.SendSeconds)
	fmt.Fprintf(w, "  time to last finished    %.2f s\n", r.LastFinishedSeconds)
	fmt.Fprintf(w, "  trigger -> started       p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", r.StartedMillis.P50, r.StartedMillis.P99, r.StartedMillis.Max)
	fmt.Fprintf(w, "  trigger -> finished      p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", r.FinishedMillis.P50, r.FinishedMillis.P99, r.FinishedMillis.Max)
	fmt.Fprintf(w, "  outcomes                 passes %v, refused %v\n", r.Passes, r.Refused)
	fmt.Fprintf(w, "  API server, all clients  %.0f requests (%.0f/s); latency p50 %s ms, p99 %s ms, mean %s ms (not WATCH/CONNECT; about %d are this tool's)\n",
		r.APIRequests, r.APIRate, nan(r.APILatencyMillis.P50), nan(r.APILatencyMillis.P99), nan(r.APILatencyMillis.Mean), r.ToolPolls)
	fmt.Fprintf(w, "    busiest                %s\n", strings.Join(r.APIBusiest, ", "))
	fmt.Fprintf(w, "  the provider's requests  %.0f (%.1f per event), %.0f/s on average, busiest second %.0f/s; limit QPS %g burst %d (%s)\n",
		r.ProviderRequests, r.ProviderRequests/float64(max(r.Accepted, 1)), r.ProviderRate, r.ProviderPeak1s, r.QPS, r.Burst, limits)
	fmt.Fprintf(w, "    by client              %.0f typed, %.0f dynamic (custom resources), sharing one token bucket of QPS %g burst %d; %.0f watches (not rate-limited); client-go logged %d waits, the longest %.0f ms\n",
		r.ProviderRequests-r.ProviderWatches-r.CustomResourceRequests, r.CustomResourceRequests, r.QPS, r.Burst, r.ProviderWatches, r.ThrottleLogLines, r.ThrottleMaxMs)
	fmt.Fprintf(w, "    on the API server      execution (not watches) p50 %s ms, p99 %s ms; priority-and-fairness wait p99 %s ms; rejected %.0f\n",
		nan(r.ProviderExecMs.P50), nan(r.ProviderExecMs.P99), nan(r.ProviderAPFWaitMs.P99), r.ProviderRejected)
	fmt.Fprintf(w, "  provider RSS             idle %.1f MiB, peak %.1f MiB; CPU %.0f ms during the storm\n", r.IdleRSSMiB, r.PeakRSSMiB, r.ProviderCPUMs)
	fmt.Fprintf(w, "  heartbeat every %-8s %d renewals, longest gap %.0f ms, slowest to land %.0f ms, closest to lapsing %.0f ms\n",
		r.HeartbeatPeriod, r.Heartbeats, r.HeartbeatGapMs, r.HeartbeatLagMs, r.HeartbeatLapseMs)
	fmt.Fprintln(w, "checks:")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s\n", mark, c.Name)
		if !c.OK {
			for _, d := range c.Detail {
				fmt.Fprintf(w, "         %s\n", d)
			}
		}
	}
}

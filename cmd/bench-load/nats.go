package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keptn-action-provider/action-provider/internal/childproc"
)

// natsServerVersion is the nats-server test/nats/nats-server.sh installs,
// the one Keptn 1.4.5 pins.
const natsServerVersion = "v2.10.7"

// queueGroup is the replicas' NATS_QUEUE_GROUP.
const queueGroup = "action-provider"

// natsReport is what one run in NATS mode measured.
type natsReport struct {
	Transport       string          `json:"transport"`
	NATSServer      string          `json:"nats_server"`
	Concurrency     int             `json:"concurrency"`
	Seconds         float64         `json:"seconds"`
	Finished        int64           `json:"finished"`
	EventsPerSecond float64         `json:"events_per_second"`
	P50Millis       float64         `json:"p50_ms"`
	P99Millis       float64         `json:"p99_ms"`
	Replicas        []replicaReport `json:"replicas"`
	// CPU time per finished event: of all replicas together, of
	// nats-server, and of this tool (the senders and the subscriber); all
	// share the machine.
	ProviderCPUMicros   float64 `json:"provider_cpu_us_per_event"`
	NATSServerCPUMicros float64 `json:"nats_server_cpu_us_per_event"`
	ToolCPUMicros       float64 `json:"tool_cpu_us_per_event"`
	TriggeredEvents     int64   `json:"triggered_events"`
	StartedEvents       int64   `json:"started_events"`
	FinishedEvents      int64   `json:"finished_events"`
	// Started events whose source is none of the replicas'.
	UnattributedStarted int64 `json:"unattributed_started_events"`
}

// replicaReport is one provider process of a NATS-mode run.
type replicaReport struct {
	Source        string  `json:"source"`
	StartedEvents int64   `json:"started_events"`
	Share         float64 `json:"share"`
	// Idle: read once the ready process has settled (see idleMemory).
	IdleRSSMiB     float64 `json:"idle_rss_mib"`
	IdleRSSAnonMiB float64 `json:"idle_rss_anon_mib"`
	IdleRSSFileMiB float64 `json:"idle_rss_file_mib"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	ReadyMillis    float64 `json:"ready_ms"`
}

// natsServerBin is NATS_SERVER_BIN, else where test/nats/nats-server.sh
// installs it.
func natsServerBin() string {
	if bin := os.Getenv("NATS_SERVER_BIN"); bin != "" {
		return bin
	}
	cache, err := os.UserCacheDir() // $XDG_CACHE_HOME, else ~/.cache
	if err != nil {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "action-provider", "nats-server-"+natsServerVersion, "bin", "nats-server")
}

// startNATSServer starts nats-server on 127.0.0.1 and a free port, without
// a monitoring port, and waits until it takes clients.
func startNATSServer(ctx context.Context, dir string) (*proc, string, error) {
	bin := natsServerBin()
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, "", fmt.Errorf("no nats-server executable at %s: run test/nats/nats-server.sh, which installs nats-server %s "+
			"into ~/.cache/action-provider and prints its path (NATS_SERVER_BIN=$(test/nats/nats-server.sh) overrides the default place)", bin, natsServerVersion)
	}
	// The port is free when picked, but another process may take it before
	// nats-server binds it: then it is tried again on another.
	for attempt := 1; ; attempt++ {
		port, err := childproc.FreePort()
		if err != nil {
			return nil, "", err
		}
		p, err := startProc(dir, "nats-server", bin, []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, nil)
		if err != nil {
			return nil, "", err
		}
		err = awaitNATS(ctx, p, port, 10*time.Second)
		if err == nil {
			return p, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
		}
		p.stop(5 * time.Second)
		if errors.Is(err, errPortTaken) && attempt < 3 {
			continue
		}
		return nil, "", err
	}
}

func awaitNATS(ctx context.Context, p *proc, port int, limit time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if portTaken(p) {
			return errPortTaken
		}
		if p.Exited() {
			return p.failure()
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if strings.Contains(p.Log(), "Server is ready") {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("nats-server did not take clients within %s\n%s", limit, p.logTail(20))
}

// startReplica starts provider i against natsURL and waits until it is
// ready.
func startReplica(ctx context.Context, dir, binary string, i int, natsURL string) (*proc, error) {
	name := fmt.Sprintf("action-provider-%d", i)
	for attempt := 1; ; attempt++ {
		opsPort, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		p, err := startProc(dir, name, binary, nil, []string{
			"TRANSPORT=nats", "NATS_URL=" + natsURL, "NATS_QUEUE_GROUP=" + queueGroup,
			"SANDBOX=true", "DRY_RUN=true", "LOG_LEVEL=info", "LOG_FORMAT=json",
			"OPS_PORT=" + strconv.Itoa(opsPort),
			// Each replica signs its events with its own source, so that
			// the split of the queue group can be counted.
			"EVENT_SOURCE=" + name, "POD_NAME=" + name,
			// The closed loop never has more than -concurrency events queued.
			"QUEUE_SIZE=1024",
		})
		if err != nil {
			return nil, err
		}
		err = awaitReadyProc(ctx, p, "http://127.0.0.1:"+strconv.Itoa(opsPort)+"/readyz", 10*time.Second)
		if err == nil {
			return p, nil
		}
		taken := portTaken(p)
		p.stop(5 * time.Second)
		if taken && attempt < 3 {
			continue
		}
		return nil, err
	}
}

// measureNATS runs the load through a real nats-server and o.replicas
// providers in one queue group.
func measureNATS(ctx context.Context, o options) (natsReport, error) {
	r := natsReport{Transport: "nats", Concurrency: o.concurrency}
	dir, err := os.MkdirTemp("", "bench-load-nats-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	// Processes are stopped in reverse order of start, however this
	// returns: the replicas first, so that they can flush to NATS, then
	// nats-server.
	var procs []*proc
	defer func() {
		for _, p := range slices.Backward(procs) {
			p.stop(15 * time.Second)
		}
	}()
	server, natsURL, err := startNATSServer(ctx, dir)
	if err != nil {
		return r, err
	}
	procs = append(procs, server)
	r.NATSServer = natsServerVersionOf(server.Path())

	replicas := make([]*proc, o.replicas)
	r.Replicas = make([]replicaReport, o.replicas)
	for i := range replicas {
		p, err := startReplica(ctx, dir, o.binary, i, natsURL)
		if err != nil {
			return r, err
		}
		procs = append(procs, p)
		replicas[i] = p
		r.Replicas[i] = replicaReport{Source: p.name, ReadyMillis: ms(time.Since(p.execAt))}
	}
	for i, p := range replicas {
		idle := idleMemory(ctx, p.PID())
		r.Replicas[i].IdleRSSMiB, r.Replicas[i].IdleRSSAnonMiB, r.Replicas[i].IdleRSSFileMiB = idle.RSS, idle.Anon, idle.File
	}

	// Any child that exits during the run ends it, with its last lines.
	errs := make(chan error, o.concurrency+len(procs)+1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, o.warmup+o.duration)
	defer cancel()
	watching := make(chan struct{})
	defer close(watching)
	for _, p := range procs {
		go func() {
			select {
			case <-p.Done():
				report(fmt.Errorf("during the run: %w", p.failure()))
				cancel()
			case <-watching:
			}
		}()
	}

	// The subscriber: counts started events per source, and wakes the
	// sender waiting for each finished event. Like the HTTP sink it reads
	// only the fields it needs.
	var waiters sync.Map // triggered id → chan struct{}
	var triggered, started, finished, unattributed atomic.Int64
	bySource := make(map[string]*atomic.Int64, len(replicas))
	for _, p := range replicas {
		bySource[p.name] = new(atomic.Int64)
	}
	onAsyncError := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		report(fmt.Errorf("NATS: %w", err))
		cancel()
	})
	sub, err := nats.Connect(natsURL, nats.Name("bench-load subscriber"), nats.Timeout(5*time.Second), nats.NoReconnect(), onAsyncError)
	if err != nil {
		return r, fmt.Errorf("connect to %s: %w", natsURL, err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(startedType, func(m *nats.Msg) {
		started.Add(1)
		if n, ok := bySource[field(m.Data, "source")]; ok {
			n.Add(1)
		} else {
			unattributed.Add(1)
		}
	}); err != nil {
		return r, err
	}
	if _, err := sub.Subscribe(finishedType, func(m *nats.Msg) {
		finished.Add(1)
		if ch, ok := waiters.LoadAndDelete(field(m.Data, "triggeredid")); ok {
			close(ch.(chan struct{}))
		}
	}); err != nil {
		return r, err
	}
	// The subscriptions are in place at the server before anything is sent.
	if err := sub.FlushTimeout(5 * time.Second); err != nil {
		return r, fmt.Errorf("subscribe on %s: %w", natsURL, err)
	}
	pub, err := nats.Connect(natsURL, nats.Name("bench-load senders"), nats.Timeout(5*time.Second), nats.NoReconnect(), onAsyncError)
	if err != nil {
		return r, fmt.Errorf("connect to %s: %w", natsURL, err)
	}
	defer pub.Close()

	template := triggerTemplate(targetProvider)
	var measuring atomic.Bool
	var mu sync.Mutex
	var latencies []time.Duration
	var count atomic.Int64
	var wg sync.WaitGroup
	for w := range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			defer func() { mu.Lock(); latencies = append(latencies, local...); mu.Unlock() }()
			for i := 0; runCtx.Err() == nil; i++ {
				id := fmt.Sprintf("load-%02d-%09d", w, i)
				done := make(chan struct{})
				waiters.Store(id, done)
				begin := time.Now()
				if err := pub.Publish(triggeredType, bytes.Replace(template, []byte("ID-PLACEHOLDER"), []byte(id), 2)); err != nil {
					if runCtx.Err() == nil {
						report(fmt.Errorf("publish %s: %w", id, err))
					}
					return
				}
				triggered.Add(1)
				select {
				case <-done:
				case <-runCtx.Done():
					return
				case <-time.After(10 * time.Second):
					report(fmt.Errorf("no finished event for %s within 10s", id))
					return
				}
				if measuring.Load() {
					local = append(local, time.Since(begin))
					count.Add(1)
				}
			}
		}()
	}
	select {
	case <-time.After(o.warmup):
	case <-runCtx.Done():
	}
	providerCPU := func() (d time.Duration) {
		for _, p := range replicas {
			d += childproc.CPUTime(p.PID())
		}
		return d
	}
	providerCPU0, serverCPU0, toolCPU0 := providerCPU(), childproc.CPUTime(server.PID()), childproc.CPUTime(os.Getpid())
	measuring.Store(true)
	measureStart := time.Now()
	wg.Wait()
	elapsed := time.Since(measureStart)
	providerCPUUsed, serverCPUUsed, toolCPUUsed := providerCPU()-providerCPU0, childproc.CPUTime(server.PID())-serverCPU0, childproc.CPUTime(os.Getpid())-toolCPU0
	select {
	case err := <-errs:
		return r, err
	default:
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	for i, p := range replicas {
		r.Replicas[i].PeakRSSMiB = childproc.ReadMemory(p.PID()).Peak
	}
	r.Seconds = elapsed.Seconds()
	r.Finished = count.Load()
	r.EventsPerSecond = float64(r.Finished) / r.Seconds
	if r.Finished > 0 {
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.Finished) }
		r.ProviderCPUMicros, r.NATSServerCPUMicros, r.ToolCPUMicros = per(providerCPUUsed), per(serverCPUUsed), per(toolCPUUsed)
	}
	slices.Sort(latencies)
	if len(latencies) > 0 {
		r.P50Millis = ms(latencies[len(latencies)*50/100])
		r.P99Millis = ms(latencies[len(latencies)*99/100])
	}
	// The senders stop without waiting for the events still in flight;
	// give those their finished event before counting, so that the counts
	// can be compared.
	for drain := time.Now().Add(10 * time.Second); finished.Load() < triggered.Load() && time.Now().Before(drain); {
		time.Sleep(10 * time.Millisecond)
	}
	r.TriggeredEvents, r.StartedEvents, r.FinishedEvents = triggered.Load(), started.Load(), finished.Load()
	r.UnattributedStarted = unattributed.Load()
	for i, p := range replicas {
		n := bySource[p.name].Load()
		r.Replicas[i].StartedEvents = n
		if r.StartedEvents > 0 {
			r.Replicas[i].Share = float64(n) / float64(r.StartedEvents)
		}
	}
	return r, nil
}

// natsServerVersionOf asks the binary for its version, within 5s.
func natsServerVersionOf(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	v := strings.TrimSpace(string(out))
	if _, after, ok := strings.Cut(v, ": "); ok {
		v = after
	}
	return v
}

func printNATSReport(w io.Writer, r natsReport) {
	fmt.Fprintf(w, "bench-load: %d senders, %.1fs measured, scale in dry-run against the sandbox, over NATS\n", r.Concurrency, r.Seconds)
	fmt.Fprintf(w, "  transport            nats-server %s on 127.0.0.1, %d replica(s) in queue group %s\n", r.NATSServer, len(r.Replicas), queueGroup)
	fmt.Fprintf(w, "  finished events/s    %8.0f   (informational: the >= 6000 target is HTTP mode's)\n", r.EventsPerSecond)
	fmt.Fprintf(w, "  trigger->finished    p50 %.2f ms, p99 %.2f ms   (end to end through nats-server)\n", r.P50Millis, r.P99Millis)
	fmt.Fprintf(w, "  %-20s %9s %7s %10s %14s %10s %9s\n", "replica (source)", "started", "share", "idle RSS", "(anon + file)", "peak RSS", "ready")
	for _, p := range r.Replicas {
		fmt.Fprintf(w, "  %-20s %9d %6.1f%% %6.1f MiB %6.1f + %5.1f %6.1f MiB %6.1f ms\n",
			p.Source, p.StartedEvents, 100*p.Share, p.IdleRSSMiB, p.IdleRSSAnonMiB, p.IdleRSSFileMiB, p.PeakRSSMiB, p.ReadyMillis)
	}
	fmt.Fprintf(w, "  CPU per event        %8.0f us providers (%d together), %.0f us nats-server, %.0f us load tool (senders + subscriber)\n",
		r.ProviderCPUMicros, len(r.Replicas), r.NATSServerCPUMicros, r.ToolCPUMicros)
	fmt.Fprintf(w, "  triggered/started/finished  %d/%d/%d (warm-up included)\n", r.TriggeredEvents, r.StartedEvents, r.FinishedEvents)
	if r.UnattributedStarted > 0 {
		fmt.Fprintf(w, "  started events of no replica's source: %d\n", r.UnattributedStarted)
	}
}

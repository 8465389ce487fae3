// Command bench-load measures the built action-provider binary under load.
//
// It starts the binary in sandbox and dry-run mode against an in-process
// event sink, has N senders each POST a scale event and wait for its
// finished event before sending the next (closed loop, as a distributor
// with N in-flight events behaves), and reports finished events per second,
// trigger→finished latency, TCP connections opened to the sink, idle and
// peak RSS, and the time from exec to ready. Every request goes to
// 127.0.0.1, and the run is bounded by -duration.
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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

type options struct {
	binary      string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	jsonOut     bool
	transport   string
	replicas    int
}

// report is what one run measured.
type report struct {
	Concurrency     int     `json:"concurrency"`
	Seconds         float64 `json:"seconds"`
	Finished        int64   `json:"finished"`
	EventsPerSecond float64 `json:"events_per_second"`
	P50Millis       float64 `json:"p50_ms"`
	P99Millis       float64 `json:"p99_ms"`
	SinkConnections int64   `json:"sink_connections"`
	Refused503      int64   `json:"refused_503"`
	IdleRSSMiB      float64 `json:"idle_rss_mib"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	ReadyMillis     float64 `json:"ready_ms"`
	// CPU time per finished event, of the provider and of this tool (the
	// senders and the sink), which share the machine.
	ProviderCPUMicros float64 `json:"provider_cpu_us_per_event"`
	ToolCPUMicros     float64 `json:"tool_cpu_us_per_event"`
	StartedEvents     int64   `json:"started_events"`
	FinishedEvents    int64   `json:"finished_events"`
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/action-provider", "the action-provider binary to measure")
	flag.IntVar(&o.concurrency, "concurrency", 16, "senders, each with one event in flight")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send after warm-up")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "sending before measuring starts")
	flag.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	flag.StringVar(&o.transport, "transport", "http", "http: POST to the provider's receiver, replies to an in-process sink; "+
		"nats: through a nats-server of its own (NATS_SERVER_BIN, else test/nats/nats-server.sh's) and -replicas providers in one queue group")
	flag.IntVar(&o.replicas, "replicas", 1, "with -transport nats: provider processes sharing the queue group")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-load:", err)
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.transport == "nats" {
		var r natsReport
		if r, err = measureNATS(ctx, o); err == nil {
			emit(o, r, func(w io.Writer) { printNATSReport(w, r) })
		}
	} else {
		var r report
		if r, err = measure(ctx, o); err == nil {
			emit(o, r, func(w io.Writer) { printReport(w, r) })
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-load:", err)
		os.Exit(1)
	}
}

func (o options) validate() error {
	switch {
	case o.transport != "http" && o.transport != "nats":
		return fmt.Errorf("-transport %q: must be http or nats", o.transport)
	case o.replicas < 1:
		return fmt.Errorf("-replicas %d: must be at least 1", o.replicas)
	case o.replicas != 1 && o.transport != "nats":
		return errors.New("-replicas is for -transport nats only")
	case o.concurrency < 1:
		return fmt.Errorf("-concurrency %d: must be at least 1", o.concurrency)
	case o.duration <= 0 || o.warmup < 0:
		return errors.New("-duration must be positive and -warmup not negative")
	}
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

func measure(ctx context.Context, o options) (report, error) {
	r := report{Concurrency: o.concurrency}

	// The sink: counts connections, and wakes the sender waiting for each
	// finished event. It reads only the two fields it needs, so that the
	// tool's own CPU use does not crowd out the provider it measures;
	// correctness of the events is the tests' business.
	var waiters sync.Map // triggered id → chan struct{}
	var started, finished, conns atomic.Int64
	sink := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, eventsink.DistributorMaxBytes+1))
		if err != nil || len(body) > eventsink.DistributorMaxBytes {
			http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		switch field(body, "type") {
		case keptnevent.StartedType:
			started.Add(1)
		case keptnevent.FinishedType:
			finished.Add(1)
			if ch, ok := waiters.LoadAndDelete(field(body, "triggeredid")); ok {
				close(ch.(chan struct{}))
			}
		}
	})
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	sinkSrv := &http.Server{Handler: sink, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = sinkSrv.Serve(sinkLn) }()
	defer sinkSrv.Close()

	rcvPort, err := freePort()
	if err != nil {
		return r, err
	}
	opsPort, err := freePort()
	if err != nil {
		return r, err
	}
	cmd := exec.CommandContext(ctx, o.binary)
	cmd.Env = append(os.Environ(),
		"SANDBOX=true", "DRY_RUN=true", "LOG_LEVEL=info", "LOG_FORMAT=json",
		"RCV_HOST=127.0.0.1", "RCV_PORT="+strconv.Itoa(rcvPort), "OPS_PORT="+strconv.Itoa(opsPort),
		"EVENTBROKER=http://"+sinkLn.Addr().String()+"/event",
		// The closed loop never has more than -concurrency events queued.
		"QUEUE_SIZE=1024",
	)
	execAt := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start %s: %w", o.binary, err)
	}
	defer func() {
		// Bounded: SIGKILL after 15s.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "bench-load: the provider did not stop within 15s of SIGTERM; killing it")
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
			}
		}
	}()
	ops := "http://127.0.0.1:" + strconv.Itoa(opsPort)
	if err := awaitReady(ctx, ops+"/readyz", 10*time.Second); err != nil {
		return r, err
	}
	r.ReadyMillis = ms(time.Since(execAt))
	time.Sleep(500 * time.Millisecond) // let start-up garbage be collected
	r.IdleRSSMiB = rssMiB(cmd.Process.Pid, "VmRSS")

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: o.concurrency}}
	url := "http://127.0.0.1:" + strconv.Itoa(rcvPort) + "/"
	template := triggerTemplate()

	var measuring atomic.Bool
	var refused atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	var count atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, o.warmup+o.duration)
	defer cancel()
	errs := make(chan error, o.concurrency)
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
				if err := send(runCtx, client, url, bytes.Replace(template, []byte("ID-PLACEHOLDER"), []byte(id), 2), &refused); err != nil {
					if runCtx.Err() == nil {
						errs <- err
					}
					return
				}
				select {
				case <-done:
				case <-runCtx.Done():
					return
				case <-time.After(10 * time.Second):
					errs <- fmt.Errorf("no finished event for %s within 10s", id)
					return
				}
				if measuring.Load() {
					local = append(local, time.Since(begin))
					count.Add(1)
				}
			}
		}()
	}
	time.Sleep(o.warmup)
	providerCPU0, toolCPU0 := cpuTime(cmd.Process.Pid), cpuTime(os.Getpid())
	measuring.Store(true)
	measureStart := time.Now()
	wg.Wait()
	elapsed := time.Since(measureStart)
	providerCPU, toolCPU := cpuTime(cmd.Process.Pid)-providerCPU0, cpuTime(os.Getpid())-toolCPU0
	select {
	case err := <-errs:
		return r, err
	default:
	}
	r.PeakRSSMiB = rssMiB(cmd.Process.Pid, "VmHWM")
	r.Seconds = elapsed.Seconds()
	r.Finished = count.Load()
	r.EventsPerSecond = float64(r.Finished) / r.Seconds
	if r.Finished > 0 {
		r.ProviderCPUMicros = float64(providerCPU.Microseconds()) / float64(r.Finished)
		r.ToolCPUMicros = float64(toolCPU.Microseconds()) / float64(r.Finished)
	}
	slices.Sort(latencies)
	if len(latencies) > 0 {
		r.P50Millis = ms(latencies[len(latencies)*50/100])
		r.P99Millis = ms(latencies[len(latencies)*99/100])
	}
	r.SinkConnections = conns.Load()
	r.Refused503 = refused.Load()
	// The senders stop without waiting for the events still in flight;
	// give those their finished event before counting, so that the two
	// counts can be compared.
	for drain := time.Now().Add(10 * time.Second); finished.Load() < started.Load() && time.Now().Before(drain); {
		time.Sleep(10 * time.Millisecond)
	}
	r.StartedEvents, r.FinishedEvents = started.Load(), finished.Load()
	return r, nil
}

// field returns the value of a top-level string attribute of a compact JSON
// event, as the provider writes them.
func field(body []byte, name string) string {
	key := []byte(`"` + name + `":"`)
	i := bytes.Index(body, key)
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return string(rest[:end])
}

// send POSTs one event, retrying a 503 as the distributor would.
func send(ctx context.Context, c *http.Client, url string, body []byte, refused *atomic.Int64) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return nil
		case http.StatusServiceUnavailable:
			refused.Add(1)
			time.Sleep(time.Millisecond)
		default:
			return fmt.Errorf("provider answered %d", resp.StatusCode)
		}
	}
}

func triggerTemplate() []byte {
	return []byte(`{"specversion":"1.0","id":"ID-PLACEHOLDER","source":"shipyard-controller","type":"sh.keptn.event.action.triggered",` +
		`"datacontenttype":"application/json","shkeptncontext":"ctx-ID-PLACEHOLDER","shkeptnspecversion":"0.2.4","triggeredid":"",` +
		`"data":{"project":"sockshop","stage":"production","service":"carts","labels":{"owner":"team-carts"},` +
		`"action":{"name":"Scale up","action":"scale","value":{"replicas":"+1"}},"problem":{"problemTitle":"Response time degradation"}}}`)
}

func awaitReady(ctx context.Context, url string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("the provider did not become ready within " + limit.String())
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rssMiB reads a memory figure (VmRSS: now, VmHWM: peak) of a process.
func rssMiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func printReport(w io.Writer, r report) {
	check := func(ok bool) string {
		if ok {
			return "meets target"
		}
		return "MISSES target"
	}
	fmt.Fprintf(w, "bench-load: %d senders, %.1fs measured, scale in dry-run against the sandbox\n", r.Concurrency, r.Seconds)
	fmt.Fprintf(w, "  finished events/s    %8.0f   (target >= 6000: %s)\n", r.EventsPerSecond, check(r.EventsPerSecond >= 6000))
	fmt.Fprintf(w, "  trigger->finished    p50 %.2f ms, p99 %.2f ms   (target p99 <= 10 ms: %s)\n", r.P50Millis, r.P99Millis, check(r.P99Millis <= 10))
	fmt.Fprintf(w, "  TCP conns to sink    %8d   (target <= %d: %s)\n", r.SinkConnections, 2*r.Concurrency, check(r.SinkConnections <= int64(2*r.Concurrency)))
	fmt.Fprintf(w, "  idle RSS             %8.1f MiB (target <= 25 MB: %s)\n", r.IdleRSSMiB, check(r.IdleRSSMiB*1.048576 <= 25))
	fmt.Fprintf(w, "  peak RSS             %8.1f MiB\n", r.PeakRSSMiB)
	fmt.Fprintf(w, "  exec -> ready        %8.1f ms  (target <= 200 ms: %s)\n", r.ReadyMillis, check(r.ReadyMillis <= 200))
	fmt.Fprintf(w, "  CPU per event        %8.0f us provider, %.0f us load tool (senders + sink)\n", r.ProviderCPUMicros, r.ToolCPUMicros)
	fmt.Fprintf(w, "  503 answers          %8d\n", r.Refused503)
	fmt.Fprintf(w, "  started/finished     %d/%d (warm-up included)\n", r.StartedEvents, r.FinishedEvents)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/childproc"
)

// report is what one round over HTTP measured.
type report struct {
	Target          string  `json:"target"`
	Mode            string  `json:"mode"`
	Concurrency     int     `json:"concurrency"`
	Seconds         float64 `json:"seconds"`
	Finished        int64   `json:"finished"`
	EventsPerSecond float64 `json:"events_per_second"`
	P50Millis       float64 `json:"p50_ms"`
	P99Millis       float64 `json:"p99_ms"`
	// TCP connections the target opened to the sink, and the senders to
	// the target, warm-up included.
	SinkConnections     int64 `json:"sink_connections"`
	ReceiverConnections int64 `json:"receiver_connections"`
	Refused503          int64 `json:"refused_503"`
	// Idle: read once the ready process has settled (see idleMemory).
	IdleRSSMiB     float64 `json:"idle_rss_mib"`
	IdleRSSAnonMiB float64 `json:"idle_rss_anon_mib"`
	IdleRSSFileMiB float64 `json:"idle_rss_file_mib"`
	PeakRSSMiB     float64 `json:"peak_rss_mib"`
	ReadyMillis    float64 `json:"ready_ms"`
	// CPU time per finished event, of the target process (the provider, or
	// the floor in a floor round) and of this tool (the senders and the
	// sink), which share the machine.
	ProviderCPUMicros float64 `json:"provider_cpu_us_per_event"`
	ToolCPUMicros     float64 `json:"tool_cpu_us_per_event"`
	// The CPU every other process used meanwhile, in cores: what else
	// loaded the machine (a build, another benchmark).
	OtherCPUCores  float64 `json:"other_cpu_cores"`
	StartedEvents  int64   `json:"started_events"`
	FinishedEvents int64   `json:"finished_events"`
}

// measureRound starts a fresh target process, reads its idle memory, loads
// it and stops it.
func measureRound(ctx context.Context, o options, target, dir string) (report, error) {
	r := report{Target: target, Mode: o.mode, Concurrency: o.concurrency}
	sinkAddr := "127.0.0.1:0"
	if target == targetTemplate {
		sinkAddr = templateSinkAddr
	}
	s, err := startSink(sinkAddr)
	if err != nil {
		return r, err
	}
	defer s.close()
	t, err := startTarget(ctx, o, target, dir, s.url)
	if err != nil {
		return r, err
	}
	defer t.stop(15 * time.Second)
	r.ReadyMillis = ms(t.ready.Sub(t.execAt))
	idle := idleMemory(ctx, t.PID())
	r.IdleRSSMiB, r.IdleRSSAnonMiB, r.IdleRSSFileMiB = idle.RSS, idle.Anon, idle.File

	l := newLoad(o, s, t.url, triggerTemplate(target))
	w, err := l.run(ctx, t.proc)
	if err != nil {
		return r, err
	}
	if len(w.latencies) == 0 {
		return r, errNoEvents
	}
	r.PeakRSSMiB = childproc.ReadMemory(t.PID()).Peak
	r.Seconds = w.elapsed.Seconds()
	r.Finished = int64(len(w.latencies))
	r.EventsPerSecond = float64(r.Finished) / r.Seconds
	r.ProviderCPUMicros = float64(w.targetCPU.Microseconds()) / float64(r.Finished)
	r.ToolCPUMicros = float64(w.toolCPU.Microseconds()) / float64(r.Finished)
	r.OtherCPUCores = max(0, (w.busyCPU-w.targetCPU-w.toolCPU).Seconds()/w.elapsed.Seconds())
	r.P50Millis = ms(w.latencies[len(w.latencies)*50/100])
	r.P99Millis = ms(w.latencies[len(w.latencies)*99/100])
	r.ReceiverConnections, r.Refused503 = l.dials.Load(), l.refused.Load()
	r.SinkConnections = s.conns.Load()
	r.StartedEvents, r.FinishedEvents = s.drain(10 * time.Second)
	return r, nil
}

// sink stands for the distributor's /event endpoint: it counts the
// connections opened to it and the events, and wakes the sender waiting
// for each finished event. It reads only the two fields it needs, so that
// the tool's own CPU use does not crowd out the process it measures;
// correctness of the events is the tests' business.
type sink struct {
	url                      string
	srv                      *http.Server
	served                   chan struct{} // closed once Serve has returned
	waiters                  sync.Map      // triggered id → chan struct{}
	conns, started, finished atomic.Int64
}

// templateSinkAddr is where keptn-service-template-go POSTs its replies:
// go-utils' DefaultHTTPEventEndpoint, http://localhost:8081/event, which
// it does not let its user change.
const templateSinkAddr = "127.0.0.1:8081"

func startSink(addr string) (*sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{url: "http://" + ln.Addr().String() + "/event", served: make(chan struct{})}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *sink) close() {
	_ = s.srv.Close()
	<-s.served
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, distributorMaxBytes+1))
	if err != nil || len(body) > distributorMaxBytes {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	switch field(body, "type") {
	case startedType:
		s.started.Add(1)
	case finishedType:
		s.finished.Add(1)
		if ch, ok := s.waiters.LoadAndDelete(field(body, "triggeredid")); ok {
			close(ch.(chan struct{}))
		}
	}
}

// expect returns a channel closed when the finished event of id arrives.
func (s *sink) expect(id string) <-chan struct{} {
	done := make(chan struct{})
	s.waiters.Store(id, done)
	return done
}

// drain returns the started and finished counts once every started event
// has its finished one, or after limit: the senders stop without waiting
// for the events still in flight, and the two counts are to be compared.
func (s *sink) drain(limit time.Duration) (started, finished int64) {
	for end := time.Now().Add(limit); s.finished.Load() < s.started.Load() && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	return s.started.Load(), s.finished.Load()
}

// runningTarget is a ready target process and where it receives events.
type runningTarget struct {
	*proc
	url   string
	ready time.Time
}

// startTarget starts the provider, the floor or the template with the sink
// as its event broker and waits until it is ready (the template's /health,
// the others' /readyz), on other ports if another process took one of
// those it was given.
func startTarget(ctx context.Context, o options, target, dir, sinkURL string) (*runningTarget, error) {
	bin, args := o.binary, []string(nil)
	switch target {
	case targetFloor:
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this binary for the floor: %w", err)
		}
		bin, args = self, []string{floorCommand}
	case targetTemplate:
		bin = o.templateBin
	}
	for attempt := 1; ; attempt++ {
		rcvPort, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		opsPort, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		p, err := startProc(dir, target, bin, args, targetEnv(target, rcvPort, opsPort, sinkURL))
		if err != nil {
			return nil, err
		}
		readyURL := "http://127.0.0.1:" + strconv.Itoa(opsPort) + "/readyz"
		if target == targetTemplate {
			readyURL = "http://127.0.0.1:" + strconv.Itoa(rcvPort) + "/health"
		}
		err = awaitReadyProc(ctx, p, readyURL, 10*time.Second)
		if err == nil {
			return &runningTarget{proc: p, url: "http://127.0.0.1:" + strconv.Itoa(rcvPort) + "/", ready: time.Now()}, nil
		}
		taken := portTaken(p)
		p.stop(5 * time.Second)
		if !taken || attempt == 3 {
			return nil, err
		}
	}
}

// providerGOGC is the GOGC the chart and deploy/service.yaml set.
const providerGOGC = "200"

// targetEnv is the environment of a target: the floor reads the same
// variables the provider does for where it listens and where it POSTs.
func targetEnv(target string, rcvPort, opsPort int, sinkURL string) []string {
	env := []string{
		"RCV_HOST=127.0.0.1", "RCV_PORT=" + strconv.Itoa(rcvPort), "OPS_PORT=" + strconv.Itoa(opsPort),
		"EVENTBROKER=" + sinkURL,
	}
	switch target {
	case targetProvider:
		env = append(env, "SANDBOX=true", "DRY_RUN=true", "LOG_LEVEL=info", "LOG_FORMAT=json",
			// The closed loop never has more than -concurrency events queued.
			"QUEUE_SIZE=1024",
			// As the chart and deploy/ run it.
			"GOGC="+providerGOGC)
	case targetFloor:
		// The floor runs as the provider does, so that the two differ in
		// the work they do only.
		env = append(env, "GOGC="+providerGOGC)
	case targetTemplate:
		// Its defaults, written out: receive on RCV_PORT at /, read
		// resources from the local disk (it reads none for action-xyz).
		env = append(env, "RCV_PATH=/", "ENV=local")
	}
	return env
}

// load is the senders of one round: each keeps one event in flight, POSTed
// as the mode says, and waits for its finished event at the sink.
type load struct {
	o         options
	sink      *sink
	template  []byte
	forward   func(ctx context.Context, body []byte) error
	closeIdle func()
	measuring atomic.Bool
	measured  atomic.Int64
	dials     atomic.Int64 // TCP connections opened to the target
	refused   atomic.Int64 // 503 answers

	mu        sync.Mutex
	latencies []time.Duration
}

func newLoad(o options, s *sink, url string, template []byte) *load {
	l := &load{o: o, sink: s, template: template}
	l.forward, l.closeIdle = l.forwarder(url)
	return l
}

// forwarder POSTs an event to url: in pooled mode on a keep-alive
// connection per sender; in distributor mode one at a time, each on a new
// TCP connection closed after the answer, as Keptn 1.4.5's distributor does.
func (l *load) forwarder(url string) (func(context.Context, []byte) error, func()) {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		l.dials.Add(1)
		return dialer.DialContext(ctx, network, addr)
	}}
	client := &http.Client{Transport: transport}
	if l.o.mode == modePooled {
		transport.MaxIdleConnsPerHost, transport.MaxConnsPerHost = l.o.concurrency, l.o.concurrency
		return func(ctx context.Context, body []byte) error {
			return send(ctx, client, url, body, &l.refused)
		}, transport.CloseIdleConnections
	}
	transport.DisableKeepAlives = true
	var lane sync.Mutex // the distributor's single lane
	return func(ctx context.Context, body []byte) error {
		lane.Lock()
		defer lane.Unlock()
		return send(ctx, client, url, body, &l.refused)
	}, transport.CloseIdleConnections
}

// window is what the measured part of a round saw.
type window struct {
	elapsed            time.Duration
	latencies          []time.Duration // sorted
	targetCPU, toolCPU time.Duration
	busyCPU            time.Duration // of the whole machine
}

// run sends for the warm-up, then measures until -duration passes or
// -events are measured; a sender's error, or the target exiting, ends it.
func (l *load) run(ctx context.Context, target *proc) (window, error) {
	defer l.closeIdle()
	runCtx, cancel := context.WithTimeout(ctx, l.o.warmup+l.o.duration)
	var failed error
	var once sync.Once
	fail := func(err error) { once.Do(func() { failed = err; cancel() }) }
	var watcher sync.WaitGroup
	defer watcher.Wait()
	defer cancel() // before the watcher is waited for
	watcher.Go(func() {
		select {
		case <-target.Done():
			fail(fmt.Errorf("during the run: %w", target.failure()))
		case <-runCtx.Done():
		}
	})
	var senders sync.WaitGroup
	for w := range l.o.concurrency {
		senders.Go(func() { l.sender(runCtx, w, fail, cancel) })
	}
	select {
	case <-time.After(l.o.warmup):
	case <-runCtx.Done():
	}
	targetCPU0, toolCPU0, busyCPU0 := childproc.CPUTime(target.PID()), childproc.CPUTime(os.Getpid()), machineBusy()
	l.measuring.Store(true)
	start := time.Now()
	senders.Wait()
	w := window{elapsed: time.Since(start), targetCPU: childproc.CPUTime(target.PID()) - targetCPU0, toolCPU: childproc.CPUTime(os.Getpid()) - toolCPU0,
		busyCPU: machineBusy() - busyCPU0}
	once.Do(func() {}) // failed is final from here on
	if failed != nil {
		return w, failed
	}
	if err := ctx.Err(); err != nil {
		return w, err
	}
	w.latencies = l.latencies
	slices.Sort(w.latencies)
	return w, nil
}

// sender sends one event after another, each once the previous one's
// finished event came, until ctx ends; it calls stop once -events are
// measured.
func (l *load) sender(ctx context.Context, w int, fail func(error), stop func()) {
	var local []time.Duration
	defer func() { l.mu.Lock(); l.latencies = append(l.latencies, local...); l.mu.Unlock() }()
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("load-%02d-%09d", w, i)
		done := l.sink.expect(id)
		begin := time.Now()
		if err := l.forward(ctx, bytes.Replace(l.template, []byte("ID-PLACEHOLDER"), []byte(id), 2)); err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
			fail(fmt.Errorf("no finished event for %s within 10s", id))
			return
		}
		if l.measuring.Load() {
			local = append(local, time.Since(begin))
			if n := l.measured.Add(1); l.o.events > 0 && n >= l.o.events {
				stop()
			}
		}
	}
}

// send POSTs one event in structured mode, retrying a 503 as the
// distributor would. Any other 2xx is delivered, as the distributor takes
// it: the provider and the floor answer 202, the template 200.
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
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			refused.Add(1)
			time.Sleep(time.Millisecond)
		case resp.StatusCode/100 == 2:
			return nil
		default:
			return fmt.Errorf("target answered %d", resp.StatusCode)
		}
	}
}

// field returns the value of a top-level string attribute of a compact JSON
// event, as the provider and the floor write them.
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

// triggerTemplate is the triggered event a round sends, its id to be
// filled in: scale for the provider and the floor, and for the template the
// one action it handles, action-xyz, with the same value.
func triggerTemplate(target string) []byte {
	action := "scale"
	if target == targetTemplate {
		action = "action-xyz"
	}
	return []byte(`{"specversion":"1.0","id":"ID-PLACEHOLDER","source":"shipyard-controller","type":"sh.keptn.event.action.triggered",` +
		`"datacontenttype":"application/json","shkeptncontext":"ctx-ID-PLACEHOLDER","shkeptnspecversion":"0.2.4","triggeredid":"",` +
		`"data":{"project":"sockshop","stage":"production","service":"carts","labels":{"owner":"team-carts"},` +
		`"action":{"name":"Scale up","action":"` + action + `","value":{"replicas":"+1"}},"problem":{"problemTitle":"Response time degradation"}}}`)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// errNoEvents says a round measured nothing to take a median of.
var errNoEvents = errors.New("no finished event was measured: make -duration longer")

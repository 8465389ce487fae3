package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The API server's metrics this tool reads (text exposition format).
var keptMetrics = []string{
	"apiserver_request_total",
	"apiserver_request_duration_seconds",
	"apiserver_flowcontrol_dispatched_requests_total",
	"apiserver_flowcontrol_rejected_requests_total",
	"apiserver_flowcontrol_request_execution_seconds",
	"apiserver_flowcontrol_request_wait_duration_seconds",
}

// sample is one series' value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// snapshot is the kept series of one scrape.
type snapshot []sample

// scrape reads the API server's /metrics with the admin's credentials.
func (k kube) scrape(ctx context.Context) (snapshot, error) {
	b, err := k.client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics of the API server: %w", err)
	}
	return parseMetrics(b)
}

// parseMetrics reads the series of keptMetrics (and their _bucket, _sum
// and _count) from the text format; the rest is skipped unparsed.
func parseMetrics(b []byte) (snapshot, error) {
	var out snapshot
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !kept(line) {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

func kept(line string) bool {
	for _, m := range keptMetrics {
		if rest, ok := strings.CutPrefix(line, m); ok && rest != "" &&
			(rest[0] == '{' || rest[0] == ' ' || rest[0] == '_') {
			return true
		}
	}
	return false
}

// parseSample parses `name{a="x",b="y"} value [timestamp]`.
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("metrics line %q: no value", line)
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq < 0 {
				return s, fmt.Errorf("metrics line of %s: bad labels", s.name)
			}
			key := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' && j+1 < len(line) {
					j++
					if line[j] == 'n' {
						val.WriteByte('\n')
						continue
					}
				}
				val.WriteByte(line[j])
			}
			if j == len(line) {
				return s, fmt.Errorf("metrics line of %s: unterminated label value", s.name)
			}
			s.labels[key] = val.String()
			line = line[j+1:]
		}
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return s, fmt.Errorf("metrics line of %s: no value", s.name)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("metrics line of %s: value %q: %w", s.name, f[0], err)
	}
	s.value = v
	return s, nil
}

// sum adds the series of name that match.
func (s snapshot) sum(name string, match func(map[string]string) bool) float64 {
	t := 0.0
	for _, x := range s {
		if x.name == name && (match == nil || match(x.labels)) {
			t += x.value
		}
	}
	return t
}

// histogram is a histogram's increase between two scrapes, the matching
// series added up.
type histogram struct {
	count, sum float64
	buckets    []bucket // cumulative, by upper bound
}

type bucket struct {
	le    float64
	count float64
}

func histogramDelta(before, after snapshot, name string, match func(map[string]string) bool) histogram {
	var h histogram
	h.count = after.sum(name+"_count", match) - before.sum(name+"_count", match)
	h.sum = after.sum(name+"_sum", match) - before.sum(name+"_sum", match)
	byLE := map[float64]float64{}
	add := func(s snapshot, sign float64) {
		for _, x := range s {
			if x.name != name+"_bucket" || (match != nil && !match(x.labels)) {
				continue
			}
			le, err := strconv.ParseFloat(x.labels["le"], 64)
			if err != nil {
				continue
			}
			byLE[le] += sign * x.value
		}
	}
	add(after, 1)
	add(before, -1)
	for le, c := range byLE {
		h.buckets = append(h.buckets, bucket{le, c})
	}
	slices.SortFunc(h.buckets, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return h
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile
// does: linear within the bucket it falls in. NaN without observations.
func (h histogram) quantile(q float64) float64 {
	if len(h.buckets) == 0 || h.buckets[len(h.buckets)-1].count <= 0 {
		return math.NaN()
	}
	total := h.buckets[len(h.buckets)-1].count
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lower // above the highest finite bound: that bound
			}
			if b.count == below {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}

func (h histogram) mean() float64 {
	if h.count <= 0 {
		return math.NaN()
	}
	return h.sum / h.count
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// longRunning says whether a request's verb is one whose duration is how
// long a client stayed, not how fast the server was.
func longRunning(l map[string]string) bool {
	return l["verb"] == "WATCH" || l["verb"] == "CONNECT"
}

// dispatched is the count of requests the API server's priority and
// fairness dispatched at one priority level, at one moment.
type dispatched struct {
	at    time.Time
	count float64
}

// dispatchPoller samples /debug/api_priority_and_fairness/dump_priority_levels,
// a few lines of text, at a steady interval: unlike /metrics, it is cheap
// enough to read several times a second, which the busiest second of the
// provider's requests needs.
type dispatchPoller struct {
	mu      sync.Mutex
	samples []dispatched
	polls   int
	err     error
	done    chan struct{}
}

func (k kube) pollDispatched(ctx context.Context, level string, every time.Duration) *dispatchPoller {
	p := &dispatchPoller{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			b, err := k.client.Discovery().RESTClient().Get().AbsPath("/debug/api_priority_and_fairness/dump_priority_levels").DoRaw(ctx)
			at := time.Now()
			var n float64
			if err == nil {
				n, err = dispatchedOf(b, level)
			}
			p.mu.Lock()
			p.polls++
			if err != nil && ctx.Err() == nil {
				p.err = err
			} else if err == nil {
				p.samples = append(p.samples, dispatched{at, n})
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *dispatchPoller) result() ([]dispatched, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]dispatched(nil), p.samples...), p.polls, p.err
}

// dispatchedOf reads the DispatchedRequests column of level's row.
func dispatchedOf(dump []byte, level string) (float64, error) {
	lines := strings.Split(strings.TrimSpace(string(dump)), "\n")
	if len(lines) < 2 {
		return 0, fmt.Errorf("dump_priority_levels: no rows")
	}
	col := -1
	for i, h := range strings.Split(lines[0], ",") {
		if strings.TrimSpace(h) == "DispatchedRequests" {
			col = i
		}
	}
	if col < 0 {
		return 0, fmt.Errorf("dump_priority_levels has no DispatchedRequests column: %q", lines[0])
	}
	for _, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) > col && strings.TrimSpace(f[0]) == level {
			return strconv.ParseFloat(strings.TrimSpace(f[col]), 64)
		}
	}
	return 0, fmt.Errorf("dump_priority_levels has no row for %s", level)
}

// rateFigures are what a series of dispatched counts says of a client's
// rate limiter.
type rateFigures struct {
	peak1s float64 // requests per second over the busiest window of at least 1 s
	// excess is the most requests in any window beyond qps × the window's
	// length: a token bucket of that qps never lets more than its burst through.
	excess float64
	window time.Duration // where the excess was seen
}

func rates(s []dispatched, qps float64) rateFigures {
	var r rateFigures
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			d := s[j].at.Sub(s[i].at)
			n := s[j].count - s[i].count
			if e := n - qps*d.Seconds(); e > r.excess {
				r.excess, r.window = e, d
			}
			if d >= time.Second {
				if rate := n / d.Seconds(); rate > r.peak1s && (j == i+1 || s[j-1].at.Sub(s[i].at) < time.Second) {
					r.peak1s = rate
				}
			}
		}
	}
	return r
}

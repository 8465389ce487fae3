package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/childproc"
)

// proc is a child process of this tool (childproc), named for the report
// and its messages.
type proc struct {
	*childproc.Proc
	name   string
	execAt time.Time
}

// startProc starts bin with args and env (added to this process's
// environment, later entries winning), its output in dir/name.log.
func startProc(dir, name, bin string, args, env []string) (*proc, error) {
	execAt := time.Now()
	p, err := childproc.Start(filepath.Join(dir, name+".log"), bin, args, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &proc{Proc: p, name: name, execAt: execAt}, nil
}

// stop sends SIGTERM, and SIGKILL if the process has not exited within
// grace, saying so.
func (p *proc) stop(grace time.Duration) {
	if p.Stop(grace) {
		fmt.Fprintf(os.Stderr, "bench-load: %s did not stop within %s of SIGTERM; killed it\n", p.name, grace)
	}
}

// logTail is the last n lines of the process's output, for error messages.
func (p *proc) logTail(n int) string { return p.Tail(p.name, n) }

// failure describes how the process ended, with its last lines.
func (p *proc) failure() error {
	return fmt.Errorf("%s exited (%v)\n%s", p.name, p.Err(), p.logTail(20))
}

// awaitReadyProc polls url until it answers 200, the process exits, ctx
// ends or limit passes.
func awaitReadyProc(ctx context.Context, p *proc, url string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.Exited() {
			return p.failure()
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
	return fmt.Errorf("%s did not become ready within %s\n%s", p.name, limit, p.logTail(20))
}

// errPortTaken says a process lost the free port it was given to another
// process, and can be started again on another.
var errPortTaken = errors.New("port taken")

func portTaken(p *proc) bool {
	return p.Exited() && strings.Contains(p.Log(), "address already in use")
}

// machineBusy is the CPU time all processors have spent busy so far:
// /proc/stat's user, nice, system, irq, softirq and steal.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var ticks int64
	for i, v := range f {
		if i == 1 || i == 2 || i == 3 || i == 6 || i == 7 || i == 8 {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// idleMemory reads the memory of a process that has just become ready and
// is sent nothing, once it has settled: sampled every 100ms, it is taken
// when VmRSS has stayed within 1% for 500ms, or after 5s. So every target
// is read the same way, and not mid-way through work left from start-up.
func idleMemory(ctx context.Context, pid int) childproc.Memory {
	const every, still, limit = 100 * time.Millisecond, 5, 5 * time.Second
	tick := time.NewTicker(every)
	defer tick.Stop()
	var window []float64 // the last still+1 samples of VmRSS
	m := childproc.ReadMemory(pid)
	for end := time.Now().Add(limit); time.Now().Before(end); {
		window = append(window, m.RSS)
		if len(window) > still+1 {
			window = window[1:]
		}
		if len(window) == still+1 && slices.Max(window)-slices.Min(window) <= m.RSS/100 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return m
		}
		m = childproc.ReadMemory(pid)
	}
	return m
}

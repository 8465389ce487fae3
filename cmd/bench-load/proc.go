package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process whose output goes to a file of its own, so that
// nothing in this tool spends CPU copying it, and whose last lines can be
// shown when it fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	execAt  time.Time
	done    chan struct{} // closed once the process has exited
	err     error         // what Wait returned; read after done
}

// startProc starts bin with args and env (added to this process's
// environment, later entries winning), its output in dir/name.log.
func startProc(dir, name, bin string, args, env []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.execAt = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL if the process has not exited within
// grace; it returns once the process is gone, or after grace plus 5s.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	fmt.Fprintf(os.Stderr, "bench-load: %s did not stop within %s of SIGTERM; killing it\n", p.name, grace)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		fmt.Fprintf(os.Stderr, "bench-load: %s (pid %d) survived SIGKILL for 5s\n", p.name, p.pid())
	}
}

// log is everything the process wrote so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// logTail is the last n lines of the process's output, for error messages.
func (p *proc) logTail(n int) string {
	out := strings.TrimRight(p.log(), "\n")
	if out == "" {
		return "--- " + p.name + " wrote nothing ---"
	}
	lines := strings.Split(out, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- last lines of " + p.name + " ---\n" + strings.Join(lines, "\n")
}

// failure describes how the process ended, with its last lines.
func (p *proc) failure() error {
	return fmt.Errorf("%s exited (%v)\n%s", p.name, p.err, p.logTail(20))
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
		if p.exited() {
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
	return p.exited() && strings.Contains(p.log(), "address already in use")
}

// cpuTime is the user+system CPU time a process has used so far, all its
// threads together (not its children's).
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
	utime, _ := strconv.ParseInt(f[11], 10, 64)           // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64)           // field 15
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
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

// memory is a process's resident memory, in MiB, from /proc/PID/status;
// -1 where unreadable.
type memory struct {
	RSS  float64 // VmRSS: Anon + File + shared memory
	Anon float64 // RssAnon: heap, stacks, the runtime's own
	File float64 // RssFile: the pages of the binary (and other files) mapped in
	Peak float64 // VmHWM: the highest VmRSS so far
}

func readMemory(pid int) memory {
	m := memory{RSS: -1, Anon: -1, File: -1, Peak: -1}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	fields := map[string]*float64{"VmRSS": &m.RSS, "RssAnon": &m.Anon, "RssFile": &m.File, "VmHWM": &m.Peak}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, _ := strings.Cut(line, ":")
		if dst, ok := fields[name]; ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 64)
			*dst = kb / 1024
		}
	}
	return m
}

// idleMemory reads the memory of a process that has just become ready and
// is sent nothing, once it has settled: sampled every 100ms, it is taken
// when VmRSS has stayed within 1% for 500ms, or after 5s. So every target
// is read the same way, and not mid-way through work left from start-up.
func idleMemory(ctx context.Context, pid int) memory {
	const every, still, limit = 100 * time.Millisecond, 5, 5 * time.Second
	tick := time.NewTicker(every)
	defer tick.Stop()
	var window []float64 // the last still+1 samples of VmRSS
	m := readMemory(pid)
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
		m = readMemory(pid)
	}
	return m
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is the provider as a child process, its output in a file.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once it has exited
	err     error         // what Wait returned; read after done
}

func startProc(logPath, bin string, env []string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
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

// stop sends SIGTERM and waits up to grace for the exit, then kills.
// It reports whether the process exited by itself, with status 0.
func (p *proc) stop(grace time.Duration) (clean bool) {
	if p.exited() {
		return p.err == nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err == nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return false
}

// log is everything the process wrote so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// tail is the last n lines of the process's output.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- last lines of " + filepath.Base(p.logPath) + " ---\n" + strings.Join(lines, "\n")
}

// awaitReady polls url until it answers 200, the process exits or ctx ends.
func (p *proc) awaitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		if p.exited() {
			return fmt.Errorf("the provider exited (%v)\n%s", p.err, p.tail(20))
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the provider is not ready: %w\n%s", ctx.Err(), p.tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// memMiB reads a memory figure of a process (VmRSS: now, VmHWM: peak).
func memMiB(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return -1
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// clientLimits are the provider's client-side limits of requests to the
// API server. A build with KUBE_API_QPS and KUBE_API_BURST lists them,
// with their defaults, in --help.
type clientLimits struct {
	qps          float64
	burst        int
	configurable bool
	version      string // what --version prints
}

// Without those variables, internal/kube sets these, fixed.
const fixedQPS, fixedBurst = 50, 100

func inspectBinary(ctx context.Context, bin string) (clientLimits, error) {
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		return clientLimits{}, fmt.Errorf("%s --help: %w", bin, err)
	}
	l := clientLimits{qps: fixedQPS, burst: fixedBurst}
	found := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "KUBE_API_QPS":
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				l.qps, found = v, found+1
			}
		case "KUBE_API_BURST":
			if v, err := strconv.Atoi(f[1]); err == nil {
				l.burst, found = v, found+1
			}
		}
	}
	l.configurable = found == 2
	v, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return clientLimits{}, fmt.Errorf("%s --version: %w", bin, err)
	}
	l.version = strings.TrimSpace(string(v))
	return l, nil
}

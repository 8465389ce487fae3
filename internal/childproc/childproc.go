// Package childproc runs a program as a child process for the benchmark
// tools (cmd/bench-load, cmd/bench-storm) and reads what Linux says of it:
// its CPU time and its resident memory. The output goes to a file of its
// own, so that the tool spends no CPU copying it, and its last lines can
// be shown when the child fails.
package childproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a started child process.
type Proc struct {
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	err     error         // what Wait returned; read after done
}

// Start starts bin with args and env (added to this process's environment,
// later entries winning), its output in logPath.
func Start(logPath, bin string, args, env []string) (*Proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Proc{LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Path is the program it runs.
func (p *Proc) Path() string { return p.cmd.Path }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (exec.Cmd.Wait's error); nil while it runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Stop sends SIGTERM and waits up to grace for the exit, then SIGKILL and
// up to 5s more. It reports whether it had to kill the process.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	if p.Exited() {
		return false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return true
}

// Log is everything the process wrote so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail is the last n lines of the process's output, headed by name, for
// error messages.
func (p *Proc) Tail(name string, n int) string {
	out := strings.TrimRight(p.Log(), "\n")
	if out == "" {
		return "--- " + name + " wrote nothing ---"
	}
	lines := strings.Split(out, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- last lines of " + name + " ---\n" + strings.Join(lines, "\n")
}

// CPUTime is the user+system CPU time a process has used so far, all its
// threads together (not its children's); 0 where unreadable.
func CPUTime(pid int) time.Duration {
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

// Memory is a process's resident memory, in MiB, from /proc/PID/status;
// -1 where unreadable.
type Memory struct {
	RSS  float64 // VmRSS: Anon + File + shared memory
	Anon float64 // RssAnon: heap, stacks, the runtime's own
	File float64 // RssFile: the pages of the binary (and other files) mapped in
	Peak float64 // VmHWM: the highest VmRSS so far
}

// ReadMemory reads pid's Memory.
func ReadMemory(pid int) Memory {
	m := Memory{RSS: -1, Anon: -1, File: -1, Peak: -1}
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

// FreePort returns a loopback TCP port free at the time of the call, for a
// child to listen on.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

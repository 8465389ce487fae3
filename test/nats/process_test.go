package nats

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// process is a child process of the test: nats-server or a provider.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited; then err is set
	err  error
	log  *syncBuffer // stdout and stderr
}

// start runs bin with args and env on top of the test's environment. The
// process is killed, if still running, when the test ends, and its output
// is logged if the test failed.
func start(t *testing.T, name, bin string, args []string, env map[string]string) (*process, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ() // later entries win
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, cmd.Process.Pid, p.log)
		}
	})
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process, by its PID.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("%s: %v to pid %d: %v", p.name, sig, p.cmd.Process.Pid, err)
	}
}

// wait waits, at most timeout, for the exit. exited says whether it came;
// then err is the process's (nil: status 0).
func (p *process) wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// stop sends SIGTERM and waits, bounded, for the exit; then SIGKILL.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if ok, _ := p.wait(stopTimeout); !ok {
		t.Errorf("%s (pid %d) still running %s after SIGTERM; killing it", p.name, p.cmd.Process.Pid, stopTimeout)
		p.kill(t)
	}
}

// kill sends SIGKILL, if the process still runs, and waits for the exit.
func (p *process) kill(t *testing.T) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	if ok, _ := p.wait(stopTimeout); !ok {
		t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

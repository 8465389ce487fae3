package testsupport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// StopTimeout bounds the wait for a process's exit after a signal.
const StopTimeout = 10 * time.Second

// Process is a child process of the test: nats-server, a provider.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  *SyncBuffer // stdout and stderr
	done chan struct{}
	err  error // set before done is closed
}

// Start runs bin with args and env on top of the test's environment. The
// kernel kills it if the test binary dies (Linux); it is killed, if still
// running, when the test ends, and its output is logged if the test failed.
func Start(t testing.TB, name, bin string, args []string, env map[string]string) (*Process, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ() // later entries win
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Process{Name: name, Cmd: cmd, Log: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill(t)
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, cmd.Process.Pid, p.Log)
		}
	})
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (nil: status 0); valid once it has.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Exited says whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process, by its PID.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil && !p.Exited() {
		t.Fatalf("%s: %v to pid %d: %v", p.Name, sig, p.Cmd.Process.Pid, err)
	}
}

// Wait waits, at most timeout, for the exit. exited says whether it came;
// then err is the process's (nil: status 0).
func (p *Process) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(timeout):
		return false, nil
	}
}

// Terminate sends SIGTERM and waits, at most timeout, for the exit; it
// fails the test if none comes, and returns the process's error.
func (p *Process) Terminate(t testing.TB, timeout time.Duration) error {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	exited, err := p.Wait(timeout)
	if !exited {
		t.Fatalf("%s (pid %d) still running %s after SIGTERM\n%s", p.Name, p.Cmd.Process.Pid, timeout, p.Log)
	}
	return err
}

// Stop sends SIGTERM and waits, bounded, for the exit; then SIGKILL.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	if ok, _ := p.Wait(StopTimeout); !ok {
		t.Errorf("%s (pid %d) still running %s after SIGTERM; killing it", p.Name, p.Cmd.Process.Pid, StopTimeout)
		p.Kill(t)
	}
}

// Kill sends SIGKILL, if the process still runs, and waits for the exit.
func (p *Process) Kill(t testing.TB) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Kill()
	if ok, _ := p.Wait(StopTimeout); !ok {
		t.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, p.Cmd.Process.Pid)
	}
}

// AwaitReady waits, at most timeout, until GET url answers 200; it fails
// early if the process exits.
func (p *Process) AwaitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if HTTPStatus(ctx, url) == http.StatusOK {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not OK within %s", url, timeout)
		case <-time.After(PollEvery):
		}
	}
}

// HTTPStatus is GET url's status code, 0 if there was no answer.
func HTTPStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// InUse says whether a process failed to start because another took its port.
func (p *Process) InUse() bool {
	return p != nil && strings.Contains(p.Log.String(), "address already in use")
}

// BuildProvider builds ./cmd/action-provider, from the module root, to out,
// within timeout.
func BuildProvider(out string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/action-provider")
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/action-provider: %w\n%s", err, b)
	}
	return out, nil
}

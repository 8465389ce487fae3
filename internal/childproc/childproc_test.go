package childproc

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStartStopAndRead(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	log := filepath.Join(t.TempDir(), "child.log")
	// The child says it is up, then waits for SIGTERM and exits 0 on it.
	p, err := Start(log, sh, []string{"-c", `trap 'exit 0' TERM; echo "up $GREETING"; while :; do sleep 0.05; done`}, []string{"GREETING=hi"})
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.Log(), "up hi") {
		select {
		case <-p.Done():
			t.Fatalf("exited: %v\n%s", p.Err(), p.Tail("child", 5))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if m := ReadMemory(p.PID()); m.RSS <= 0 || m.Peak < m.RSS {
		t.Errorf("memory of a running child: %+v", m)
	}
	if CPUTime(p.PID()) < 0 {
		t.Error("negative CPU time")
	}
	if killed := p.Stop(10 * time.Second); killed || p.Err() != nil || !p.Exited() {
		t.Errorf("Stop: killed %t, err %v, exited %t", killed, p.Err(), p.Exited())
	}
	if got := p.Tail("child", 1); got != "--- last lines of child ---\nup hi" {
		t.Errorf("Tail: %q", got)
	}
	if m := ReadMemory(p.PID()); m.RSS != -1 {
		t.Errorf("memory of a gone process: %+v", m)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	log := filepath.Join(t.TempDir(), "child.log")
	p, err := Start(log, sh, []string{"-c", `trap '' TERM; echo up; while :; do sleep 0.05; done`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.Log(), "up") {
		<-time.After(10 * time.Millisecond)
	}
	if !p.Stop(100*time.Millisecond) || !p.Exited() {
		t.Errorf("Stop of a process that ignores SIGTERM: want killed and gone")
	}
}

func TestStartReportsAMissingProgram(t *testing.T) {
	if _, err := Start(filepath.Join(t.TempDir(), "x.log"), "/nonexistent/program", nil, nil); err == nil {
		t.Fatal("no error for a missing program")
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	ln.Close()
}

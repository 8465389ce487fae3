package nats

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// natsServer is a nats-server process on 127.0.0.1.
type natsServer struct {
	*process
	URL string // nats://127.0.0.1:PORT
}

// startNATS starts a nats-server of its own for the test, on 127.0.0.1 and a
// free port, with no monitoring port, and waits until it takes clients. It
// is stopped by its PID when the test ends. Each test has its own, because
// every test's bridges subscribe to the same topic.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	// The port is picked free and then given to the process, so another
	// process may take it in between: a start that fails on a port in use is
	// tried again on another port.
	for attempt := 1; ; attempt++ {
		s, err := tryStartNATS(t)
		if err == nil {
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		if attempt < 3 && s != nil && strings.Contains(s.log.String(), "address already in use") {
			t.Logf("attempt %d: %v; trying another port", attempt, err)
			continue
		}
		if s != nil {
			t.Fatalf("nats-server: %v\n%s", err, s.log)
		}
		t.Fatalf("nats-server: %v", err)
	}
}

func tryStartNATS(t *testing.T) (*natsServer, error) {
	port := freePort(t)
	// -a/-p: loopback only. No -m: the monitoring port stays off.
	p, err := start(t, "nats-server", natsServerBin, []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, nil)
	if err != nil {
		return nil, err
	}
	s := &natsServer{process: p, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	deadline := time.Now().Add(waitTimeout)
	for {
		if s.exited() {
			return s, fmt.Errorf("exited before it was ready: %v", s.err)
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			if strings.Contains(s.log.String(), "Server is ready") {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("not ready within %s", waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect opens a client connection for the test, closed when it ends.
func (s *natsServer) connect(t *testing.T, name string) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(s.URL, natsgo.Name(name), natsgo.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

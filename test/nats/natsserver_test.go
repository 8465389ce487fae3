package nats

import (
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	natsgo "github.com/nats-io/nats.go"
)

// natsServer is a nats-server process on 127.0.0.1.
type natsServer struct {
	*testsupport.Process
	URL string // nats://127.0.0.1:PORT
}

// startNATS starts a nats-server of its own for the test, on 127.0.0.1 and a
// free port, with no monitoring port, and waits until it takes clients. It
// is stopped by its PID when the test ends. Each test has its own, because
// every test's bridges subscribe to the same topic.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	s, _ := startNATSOnFreePort(t, "")
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// startNATSOnFreePort starts nats-server on a free port of 127.0.0.1, with
// JetStream storing in store unless it is "" (startNATSAt), and returns it
// and the port. The port is picked free and then given to the process, so
// another process may take it in between: a start that fails on a port in
// use is tried again on another port.
func startNATSOnFreePort(t *testing.T, store string) (*natsServer, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := testsupport.FreePort(t)
		s, err := startNATSAt(t, port, store)
		if err == nil {
			return s, port
		}
		if attempt < 3 && s != nil && s.InUse() {
			t.Logf("attempt %d: %v; trying another port", attempt, err)
			continue
		}
		if s != nil {
			t.Fatalf("nats-server: %v\n%s", err, s.Log)
		}
		t.Fatalf("nats-server: %v", err)
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

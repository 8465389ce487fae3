package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	natsgo "github.com/nats-io/nats.go"
)

// restartableNATS is a nats-server on a fixed port of 127.0.0.1 that a
// test stops and starts again, with JetStream on and its store in a
// directory of the test, so that a stream outlives the restart: the
// server restores it before it takes clients again.
type restartableNATS struct {
	port     int
	storeDir string
	URL      string
	cur      *natsServer
}

// startRestartableNATS starts one on a free port; the test's end stops it.
func startRestartableNATS(t *testing.T) *restartableNATS {
	t.Helper()
	store := t.TempDir()
	s, port := startNATSOnFreePort(t, store)
	r := &restartableNATS{port: port, storeDir: store, URL: s.URL, cur: s}
	t.Cleanup(func() { r.cur.Stop(t) })
	return r
}

// stop stops the server with SIGTERM, as Kubernetes stops a pod, and waits
// for it to exit: every client's connection drops.
func (r *restartableNATS) stop(t *testing.T) {
	t.Helper()
	r.cur.Stop(t)
	if !r.cur.Exited() {
		t.Fatal("nats-server did not stop")
	}
}

// keptn connects as Keptn's control plane would, reconnecting at once
// when the server is back, and records on a JetStream stream every event
// published, so that what was sent across a restart is kept.
func (r *restartableNATS) keptn(t *testing.T) (*natsgo.Conn, *streamRecorder) {
	t.Helper()
	nc, err := natsgo.Connect(r.URL, natsgo.Name("shipyard-controller"), natsgo.Timeout(5*time.Second),
		natsgo.MaxReconnects(-1), natsgo.ReconnectWait(10*time.Millisecond), natsgo.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, recordStream(t, nc)
}

// start starts the server again, on the same port and with the same store.
// The port was free only while the server was down, so another process of
// the machine may have taken it meanwhile: a start that fails on a port in
// use is tried again for a few seconds, and then fails the test.
func (r *restartableNATS) start(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := startNATSAt(t, r.port, r.storeDir)
		if err == nil {
			r.cur = s
			return
		}
		if s != nil && s.InUse() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if s != nil {
			t.Fatalf("nats-server again on port %d: %v\n%s", r.port, err, s.Log)
		}
		t.Fatalf("nats-server again on port %d: %v", r.port, err)
	}
}

// startNATSAt starts nats-server on 127.0.0.1:port, with JetStream storing
// in store unless it is "", and waits until it takes clients. The process
// is killed, if still running, when the test ends.
func startNATSAt(t *testing.T, port int, store string) (*natsServer, error) {
	// -a/-p: loopback only. No -m: the monitoring port stays off.
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	if store != "" {
		args = append(args, "-js", "-sd", store)
	}
	p, err := testsupport.Start(t, "nats-server", natsServerBin, args, nil)
	if err != nil {
		return nil, err
	}
	s := &natsServer{Process: p, URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	ready := func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return strings.Contains(s.Log.String(), "Server is ready")
	}
	if !testsupport.Poll(context.Background(), waitTimeout, func() bool { return s.Exited() || ready() }) {
		p.Kill(t)
		return s, fmt.Errorf("not ready within %s", waitTimeout)
	}
	if s.Exited() {
		return s, fmt.Errorf("exited before it was ready: %v", s.Err())
	}
	return s, nil
}

// streamRecorder is a JetStream stream on the server that keeps every
// message published on sh.keptn.>, from its creation on, across restarts
// of the server: what the providers sent, whether or not any client was
// subscribed at the time.
type streamRecorder struct {
	js   natsgo.JetStreamContext
	name string
}

// recordStream creates the stream through nc.
func recordStream(t *testing.T, nc *natsgo.Conn) *streamRecorder {
	t.Helper()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	r := &streamRecorder{js: js, name: "KEPTN"}
	if _, err := js.AddStream(&natsgo.StreamConfig{
		Name: r.name, Subjects: []string{"sh.keptn.>"}, Storage: natsgo.FileStorage,
	}); err != nil {
		t.Fatalf("create stream %s: %v", r.name, err)
	}
	return r
}

// Events returns what the stream holds but the triggered events the test
// published, in the order the server got them. An error is returned, not
// fatal: the server may be restarting.
func (r *streamRecorder) Events() ([]keptnEvent, error) {
	info, err := r.js.StreamInfo(r.name)
	if err != nil {
		return nil, err
	}
	var out []keptnEvent
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := r.js.GetMsg(r.name, seq)
		if errors.Is(err, natsgo.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m.Subject == triggeredTopic {
			continue
		}
		var ev keptnEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return nil, fmt.Errorf("%s (seq %d) is not a Keptn event: %w: %.200s", m.Subject, seq, err, m.Data)
		}
		ev.Subject, ev.Raw = m.Subject, m.Data
		out = append(out, ev)
	}
	return out, nil
}

// await polls the stream until done holds of its events, bounded by
// timeout; it returns the events it last read.
func (r *streamRecorder) await(ctx context.Context, t *testing.T, timeout time.Duration, what string, done func([]keptnEvent) bool) []keptnEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		evs     []keptnEvent
		lastErr error
	)
	for {
		got, err := r.Events()
		if err == nil {
			evs = got
			if done(evs) {
				return evs
			}
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s (%d events in the stream; last error: %v)", what, timeout, len(evs), lastErr)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

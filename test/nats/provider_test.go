package nats

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// provider is the action-provider binary running as a child process.
type provider struct {
	*testsupport.Process
	rcvURL string // where the bridge POSTs triggered events
	opsURL string
}

// startProvider starts the binary in sandbox mode (an in-memory cluster of
// its own, so no cluster is needed), with its receiver on 127.0.0.1 and a
// free port, its events going to eventBroker, and env on top of the
// defaults below; it waits until /readyz answers.
func startProvider(ctx context.Context, t *testing.T, name, eventBroker string, env map[string]string) *provider {
	t.Helper()
	// The ports are picked free and then given to the process, so another
	// process may take one in between: a start that fails on a port in use
	// is tried again on other ports.
	for attempt := 1; ; attempt++ {
		p, err := tryStartProvider(ctx, t, name, eventBroker, env)
		if err == nil {
			return p
		}
		if p != nil && attempt < 3 && p.InUse() {
			t.Logf("%s: attempt %d: %v; trying other ports", name, attempt, err)
			continue
		}
		if p != nil {
			t.Fatalf("%s: %v\n%s", name, err, p.Log)
		}
		t.Fatalf("%s: %v", name, err)
	}
}

func tryStartProvider(ctx context.Context, t *testing.T, name, eventBroker string, env map[string]string) (*provider, error) {
	rcvPort, opsPort := testsupport.FreePort(t), testsupport.FreePort(t)
	all := map[string]string{
		// The distributor's way: triggered events POSTed to the receiver,
		// replies POSTed to EVENTBROKER.
		"TRANSPORT": "http",
		"SANDBOX":   "true",
		"DRY_RUN":   "true",
		"RCV_HOST":  "127.0.0.1",
		"RCV_PORT":  strconv.Itoa(rcvPort),
		"RCV_PATH":  "/",
		// OPS_PORT binds all interfaces (the provider has no setting for
		// its host); nothing but this test talks to it.
		"OPS_PORT":                  strconv.Itoa(opsPort),
		"EVENTBROKER":               eventBroker,
		"EVENTBROKER_RETRY_TIMEOUT": "20s",
		"POD_NAME":                  name,
		"LOG_FORMAT":                "json",
		"LOG_LEVEL":                 "debug",
		"SHUTDOWN_GRACE":            "20s",
		"SHUTDOWN_FLUSH":            "5s",
		// Every event of a test acts on the same workload.
		"ACTION_COOLDOWN": "0s",
	}
	for k, v := range env {
		all[k] = v
	}
	proc, err := testsupport.Start(t, name, providerBin, nil, all)
	if err != nil {
		return nil, err
	}
	p := &provider{
		Process: proc,
		rcvURL:  fmt.Sprintf("http://127.0.0.1:%d/", rcvPort),
		opsURL:  fmt.Sprintf("http://127.0.0.1:%d", opsPort),
	}
	return p, p.AwaitReady(ctx, p.opsURL+"/readyz", waitTimeout)
}

// logLine returns the first JSON log line whose msg is msg.
func (p *provider) logLine(msg string) map[string]any {
	lines := p.logLines(msg)
	if len(lines) == 0 {
		return nil
	}
	return lines[0]
}

// logLines returns the JSON log lines whose msg is msg.
func (p *provider) logLines(msg string) []map[string]any { return p.Log.LogLines(msg) }

// replica is one pod: a provider and its distributor, the bridge.
type replica struct {
	name     string
	provider *provider
	bridge   *Bridge
}

// startReplica starts b's /event, a provider sending to it, and then b's
// subscription, forwarding to the ready provider. (In a pod the distributor
// may start first; a triggered event it forwards before the provider
// listens is refused and dropped, which no test here is about.) b's Topic
// defaults to action.triggered; its Recipient is set here.
func startReplica(ctx context.Context, t *testing.T, name string, b *Bridge, env map[string]string) *replica {
	t.Helper()
	if b.Topic == "" {
		b.Topic = triggeredTopic
	}
	t.Cleanup(b.Close)
	broker, err := b.Listen()
	if err != nil {
		t.Fatal(err)
	}
	p := startProvider(ctx, t, name, broker, env)
	b.Recipient = p.rcvURL
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &replica{name: name, provider: p, bridge: b}
}

// startReplicas starts n replicas in one queue group, as n pods of one
// deployment: their distributors share PUBSUB_GROUP.
func startReplicas(ctx context.Context, t *testing.T, n int, natsURL string, env map[string]string) []*replica {
	t.Helper()
	var rs []*replica
	for i := range n {
		b := &Bridge{NATSURL: natsURL, Group: "action-provider"}
		rs = append(rs, startReplica(ctx, t, fmt.Sprintf("action-provider-%d", i), b, env))
	}
	return rs
}

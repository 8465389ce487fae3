package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"

	"github.com/keptn-action-provider/action-provider/examples/events"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
)

// The events' project and stage: the provider acts in namespace
// project-stage, on the Deployment named after the service.
const (
	project = "storm"
	stage   = "production"
	// targetNamespace holds the 50 Deployments.
	targetNamespace = project + "-" + stage
)

// shape says which actions a Deployment gets, and so what the lock and the
// cooldown must leave of them.
type shape string

const (
	single      shape = "single"       // one event: it must pass
	scaleOnly   shape = "scale only"   // several scales: exactly one passes
	restartOnly shape = "restart only" // several restarts: exactly one passes
	mixed       shape = "mixed"        // scales and restarts: at most one of each, at least one in all
)

// target is one Deployment of the storm.
type target struct {
	name   string
	shape  shape
	events []int // indexes into plan.events
}

// plannedEvent is one triggered event to send.
type plannedEvent struct {
	id     string
	target int
	action string // scale or restart
	sender int
	body   []byte
}

// plan is the whole storm.
type plan struct {
	targets []target
	events  []plannedEvent
	senders [][]int // per sender, the events it sends in order
}

// makePlan spreads events over deployments: a fifth of them get a single
// event (half scale, half restart); the others share the rest round-robin
// and are, in this order, half scale-only, a quarter restart-only and a
// quarter mixed, so that many events hit the same Deployment and the lock
// and the cooldown must refuse most of them. The events are shuffled with
// seed and dealt to senders, so that those hitting one Deployment arrive
// from different senders at about the same time.
func makePlan(deployments, eventCount, senders int, seed uint64) (plan, error) {
	if deployments < 5 || eventCount < deployments || senders < 1 {
		return plan{}, fmt.Errorf("need at least 5 deployments, as many events as deployments, and a sender (have %d, %d, %d)", deployments, eventCount, senders)
	}
	scaleTmpl, err := example("01-scale-up.json")
	if err != nil {
		return plan{}, err
	}
	restartTmpl, err := example("07-restart.json")
	if err != nil {
		return plan{}, err
	}
	run, err := runID()
	if err != nil {
		return plan{}, err
	}

	p := plan{targets: make([]target, deployments)}
	singles := deployments / 5
	rest := deployments - singles
	for i := range p.targets {
		t := &p.targets[i]
		t.name = fmt.Sprintf("svc-%02d", i)
		switch k := i - singles; {
		case i < singles:
			t.shape = single
		case k < rest/2:
			t.shape = scaleOnly
		case k < rest*3/4:
			t.shape = restartOnly
		default:
			t.shape = mixed
		}
	}
	add := func(ti int) {
		t := &p.targets[ti]
		action := "scale"
		switch {
		case t.shape == restartOnly,
			(t.shape == single || t.shape == mixed) && (ti+len(t.events))%2 == 1:
			action = "restart"
		}
		t.events = append(t.events, len(p.events))
		p.events = append(p.events, plannedEvent{id: fmt.Sprintf("storm-%s-%03d", run, len(p.events)), target: ti, action: action})
	}
	for i := range singles {
		add(i)
	}
	for n := 0; len(p.events) < eventCount; n++ {
		add(singles + n%rest)
	}

	for i := range p.events {
		ev := &p.events[i]
		tmpl := scaleTmpl
		if ev.action == "restart" {
			tmpl = restartTmpl
		}
		if ev.body, err = triggeredBody(tmpl, ev.id, p.targets[ev.target].name); err != nil {
			return plan{}, err
		}
	}

	order := make([]int, len(p.events))
	for i := range order {
		order[i] = i
	}
	rng := mrand.New(mrand.NewPCG(seed, seed^0x5eed))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	p.senders = make([][]int, senders)
	for n, i := range order {
		s := n % senders
		p.events[i].sender = s
		p.senders[s] = append(p.senders[s], i)
	}
	return p, nil
}

// example reads one of the example triggered events.
func example(name string) (map[string]any, error) {
	b, err := events.FS.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("example event %s: %w", name, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, fmt.Errorf("example event %s: %w", name, err)
	}
	return ev, nil
}

// triggeredBody is the example with a new id and context, aimed at
// Deployment service of targetNamespace. It is decoded as the provider will
// decode it, so that a broken event fails here, not in the storm.
func triggeredBody(tmpl map[string]any, id, service string) ([]byte, error) {
	ev := map[string]any{}
	for k, v := range tmpl {
		ev[k] = v
	}
	data := map[string]any{}
	for k, v := range tmpl["data"].(map[string]any) {
		data[k] = v
	}
	ev["id"], ev["shkeptncontext"] = id, "ctx-"+id
	data["project"], data["stage"], data["service"] = project, stage, service
	ev["data"] = data
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", id, err)
	}
	h := http.Header{"Content-Type": []string{"application/cloudevents+json"}}
	if _, err := keptnevent.Decode(h, body); err != nil {
		return nil, fmt.Errorf("event %s does not decode: %w", id, err)
	}
	return body, nil
}

// runID tells this run's event ids from any earlier run's.
func runID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

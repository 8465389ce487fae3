// Command keptnsim plays the parts of Keptn that test/deploy.sh needs around
// a real action-provider process, without Keptn:
//
//	keptnsim sink -addr 127.0.0.1:0 -port-file F -out EVENTS
//	    the distributor's /event endpoint: accepts structured-mode CloudEvents
//	    (at most 64 KiB, as the distributor) and appends each, one JSON object
//	    a line, to EVENTS.
//	keptnsim freeport [N]
//	    prints N free TCP ports on 127.0.0.1.
//	keptnsim events -shipyard F -remediation F -project P -stage S -service SVC -out DIR
//	    checks the shipyard and the remediation.yaml as Keptn 1.x's
//	    shipyard-controller and remediation-service read them, then writes the
//	    sh.keptn.event.action.triggered event Keptn would send for each action
//	    of each problem type, and DIR/index.tsv listing them.
//	keptnsim event -project P -stage S -service SVC -action A -value JSON -out FILE
//	    writes one action.triggered event.
//	keptnsim post URL FILE
//	    POSTs FILE as a structured-mode CloudEvent, as the distributor does;
//	    prints the HTTP status code and the answer.
//	keptnsim get URL
//	    GETs URL, prints the answer; exits 1 unless the status is 2xx.
//	keptnsim natssink -url URL -out EVENTS -ready-file F
//	    Keptn's side of NATS for TRANSPORT=nats: subscribes to
//	    sh.keptn.event.action.> (as shipyard-controller does, no queue group),
//	    appends each started or finished event to EVENTS as the sink does, and
//	    creates F once subscribed.
//	keptnsim natspub URL FILE [COUNT]
//	    publishes FILE (an action.triggered event) COUNT times (default 1) on
//	    sh.keptn.event.action.triggered, as shipyard-controller does.
//	keptnsim expect -events EVENTS -id ID -status S -result R [-message TEXT] [-timeout D]
//	    waits until EVENTS holds the finished event for triggered event ID and
//	    checks it: exactly one started before it, the status, the result, and
//	    that the message contains TEXT. Exits 1 with the reason otherwise.
//
// It is test tooling: it imports nothing of the provider, so it keeps working
// whatever the provider's packages become.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keptn/go-utils/pkg/lib/v0_1_4"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	"github.com/nats-io/nats.go"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: keptnsim sink|freeport|events|event|post|get|expect|natssink|natspub ...")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "sink":
		err = sink(args)
	case "freeport":
		err = freeport(args)
	case "events":
		err = events(args)
	case "event":
		err = event(args)
	case "post":
		err = post(args)
	case "get":
		err = get(args)
	case "expect":
		err = expect(args)
	case "natssink":
		err = natsSink(args)
	case "natspub":
		err = natsPub(args)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keptnsim %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// ---- sink ----

// distributorMaxBytes is the distributor's API_PROXY_MAX_PAYLOAD_BYTES_KB
// default, 64 KiB.
const distributorMaxBytes = 64 << 10

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	portFile := fs.String("port-file", "", "write the port here once listening")
	out := fs.String("out", "", "append received events here, one JSON object a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if *portFile != "" {
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		if err := os.WriteFile(*portFile+".tmp", []byte(port+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(*portFile+".tmp", *portFile); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/event", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "only POST", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, distributorMaxBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		var ev struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" {
			http.Error(w, "not a structured-mode CloudEvent", http.StatusBadRequest)
			return
		}
		var line bytes.Buffer
		if err := json.Compact(&line, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		line.WriteByte('\n')
		if _, err := f.Write(line.Bytes()); err != nil { // one write: lines never interleave
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ---- freeport ----

func freeport(args []string) error {
	n := 1
	if len(args) > 0 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 {
			return fmt.Errorf("bad count %q", args[0])
		}
	}
	// Hold every listener until all are chosen, so the ports differ.
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// ---- events ----

// The actions the provider answers to (internal/actionconfig/catalog.go), and
// whether each needs a value: restart, rollback and delete-pods have a
// meaning without one.
var knownActions = map[string]bool{"scale": true, "scaling": true, "restart": false, "rollback": false, "delete-pods": false}

// Keptn's entity names (keptncommon.ValidateKeptnEntityName).
var keptnName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

func events(args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	shipyardFile := fs.String("shipyard", "", "shipyard.yaml")
	remediationFile := fs.String("remediation", "", "remediation.yaml")
	project := fs.String("project", "sockshop", "Keptn project")
	stage := fs.String("stage", "production", "Keptn stage")
	service := fs.String("service", "carts", "Keptn service")
	out := fs.String("out", "", "directory for the events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shipyardFile == "" || *remediationFile == "" || *out == "" {
		return errors.New("-shipyard, -remediation and -out are required")
	}
	if err := checkShipyard(*shipyardFile, *stage); err != nil {
		return fmt.Errorf("%s: %w", *shipyardFile, err)
	}
	rem, err := readRemediation(*remediationFile)
	if err != nil {
		return fmt.Errorf("%s: %w", *remediationFile, err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var index strings.Builder
	n := 0
	for _, r := range rem.Spec.Remediations {
		// The problem Keptn would report: its title is the problem type;
		// "default" is what remediation-service falls back to for any other.
		problem := keptnv2.ProblemDetails{ProblemTitle: r.ProblemType}
		if r.ProblemType == "default" {
			problem.ProblemTitle = "Memory leak (no remediation of its own)"
		}
		for i := range r.ActionsOnOpen {
			action, err := nextAction(rem, problem, i)
			if err != nil {
				return err
			}
			n++
			ev, id, err := triggered(*project, *stage, *service, *action, &problem, i)
			if err != nil {
				return err
			}
			name := fmt.Sprintf("%02d-%s.json", n, slug(r.ProblemType+"-"+strconv.Itoa(i)))
			if err := os.WriteFile(filepath.Join(*out, name), ev, 0o644); err != nil {
				return err
			}
			value, _ := json.Marshal(action.Value)
			fmt.Fprintf(&index, "%s\t%s\t%s\t%d\t%s\t%s\n", name, id, r.ProblemType, i, action.Action, value)
		}
	}
	if n == 0 {
		return fmt.Errorf("%s has no actions", *remediationFile)
	}
	return os.WriteFile(filepath.Join(*out, "index.tsv"), []byte(index.String()), 0o644)
}

// checkShipyard reads the shipyard as shipyard-controller 1.x does (go-utils'
// YAML decoding, apiVersion spec.keptn.sh/ >= 0.2, named stages) and checks
// that stage has Keptn's remediation sequence: get-action, action, evaluation,
// re-triggered by its own failed evaluation.
func checkShipyard(file, stage string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s, err := keptnv2.DecodeShipyardYAML(raw)
	if err != nil {
		return err
	}
	const prefix = "spec.keptn.sh/"
	if !strings.HasPrefix(s.ApiVersion, prefix) {
		return fmt.Errorf("apiVersion %q: want %s0.2.x", s.ApiVersion, prefix)
	}
	parts := strings.Split(strings.TrimPrefix(s.ApiVersion, prefix), ".")
	if major, minor := atoi(parts, 0), atoi(parts, 1); major != 0 || minor < 2 {
		return fmt.Errorf("apiVersion %q: Keptn 1.x needs >= %s0.2", s.ApiVersion, prefix)
	}
	if s.Kind != "Shipyard" {
		return fmt.Errorf("kind %q: want Shipyard", s.Kind)
	}
	if len(s.Spec.Stages) == 0 {
		return errors.New("no stages")
	}
	var found *keptnv2.Sequence
	for _, st := range s.Spec.Stages {
		if !keptnName.MatchString(st.Name) {
			return fmt.Errorf("stage name %q: Keptn wants lower case letters, digits and hyphens, starting with a letter", st.Name)
		}
		if st.Name != stage {
			continue
		}
		for i := range st.Sequences {
			if st.Sequences[i].Name == "remediation" {
				found = &st.Sequences[i]
			}
		}
	}
	if found == nil {
		return fmt.Errorf("stage %q has no sequence \"remediation\"", stage)
	}
	var tasks []string
	for _, t := range found.Tasks {
		tasks = append(tasks, t.Name)
		if t.TriggeredAfter != "" {
			if _, err := time.ParseDuration(t.TriggeredAfter); err != nil {
				return fmt.Errorf("task %s: triggeredAfter %q: %w", t.Name, t.TriggeredAfter, err)
			}
		}
	}
	if got := strings.Join(tasks, ","); got != "get-action,action,evaluation" {
		return fmt.Errorf("remediation tasks are %s; Keptn's remediation needs get-action,action,evaluation", got)
	}
	loop := stage + ".remediation.finished"
	for _, t := range found.TriggeredOn {
		if t.Event == loop && t.Selector.Match["evaluation.result"] == "fail" {
			return nil
		}
	}
	return fmt.Errorf("remediation is not triggered again on %s with evaluation.result fail, so only the first action would ever run", loop)
}

func atoi(parts []string, i int) int {
	if i >= len(parts) {
		return -1
	}
	n, err := strconv.Atoi(parts[i])
	if err != nil {
		return -1
	}
	return n
}

// readRemediation reads remediation.yaml as remediation-service 1.x does
// (YAML to JSON, go-utils' v0_1_4 types; apiVersion exactly spec.keptn.sh/0.1.4),
// more strictly (an unknown field, such as a misspelt actionsOnOpen, is an error),
// and checks every action is one the provider answers to.
func readRemediation(file string) (*v0_1_4.Remediation, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r v0_1_4.Remediation
	if err := yaml.UnmarshalStrict(raw, &r); err != nil {
		return nil, err
	}
	if r.ApiVersion != "spec.keptn.sh/0.1.4" {
		return nil, fmt.Errorf("apiVersion %q: remediation-service accepts only spec.keptn.sh/0.1.4", r.ApiVersion)
	}
	if r.Kind != "Remediation" {
		return nil, fmt.Errorf("kind %q: want Remediation", r.Kind)
	}
	if len(r.Spec.Remediations) == 0 {
		return nil, errors.New("no remediations")
	}
	seen := map[string]bool{}
	for _, m := range r.Spec.Remediations {
		if m.ProblemType == "" || seen[m.ProblemType] {
			return nil, fmt.Errorf("problemType %q is empty or repeated", m.ProblemType)
		}
		seen[m.ProblemType] = true
		if len(m.ActionsOnOpen) == 0 {
			return nil, fmt.Errorf("problemType %q has no actionsOnOpen", m.ProblemType)
		}
		for i, a := range m.ActionsOnOpen {
			needsValue, known := knownActions[a.Action]
			if !known {
				return nil, fmt.Errorf("problemType %q action %d: %q is not an action of this provider (scale, scaling, restart, rollback, delete-pods)", m.ProblemType, i, a.Action)
			}
			if needsValue && a.Value == nil {
				return nil, fmt.Errorf("problemType %q action %d: no value", m.ProblemType, i)
			}
		}
	}
	return &r, nil
}

// nextAction is remediation-service 1.x's GetNextAction: the problem type
// matching the root cause, else the title, else "default"; then the action at
// actionIndex.
func nextAction(r *v0_1_4.Remediation, p keptnv2.ProblemDetails, actionIndex int) (*keptnv2.ActionInfo, error) {
	var actions []v0_1_4.RemediationActionsOnOpen
	for _, want := range []string{p.RootCause, p.ProblemTitle, "default"} {
		if want == "" {
			continue
		}
		for _, m := range r.Spec.Remediations {
			if m.ProblemType == want {
				actions = m.ActionsOnOpen
				break
			}
		}
		if actions != nil {
			break
		}
	}
	if actions == nil {
		return nil, fmt.Errorf("no remediation for problem %q", p.ProblemTitle)
	}
	if actionIndex >= len(actions) {
		return nil, fmt.Errorf("no action with index %d for problem %q", actionIndex, p.ProblemTitle)
	}
	a := actions[actionIndex]
	return &keptnv2.ActionInfo{Name: a.Name, Action: a.Action, Description: a.Description, Value: a.Value}, nil
}

// triggered builds the action.triggered event shipyard-controller sends: the
// sequence's data so far (project, stage, service, problem, get-action's
// result) with the action.
func triggered(project, stage, service string, action keptnv2.ActionInfo, problem *keptnv2.ProblemDetails, actionIndex int) ([]byte, string, error) {
	id, ctxID := uuid(), uuid()
	data := map[string]any{
		"project": project,
		"stage":   stage,
		"service": service,
		"labels":  map[string]string{"source": "test/deploy.sh"},
		"status":  "succeeded",
		"result":  "pass",
		"action":  action,
	}
	if problem != nil {
		data["problem"] = problem
		data["getAction"] = map[string]int{"actionIndex": actionIndex + 1}
	}
	ev := map[string]any{
		"specversion":        "1.0",
		"id":                 id,
		"source":             "shipyard-controller",
		"type":               "sh.keptn.event.action.triggered",
		"time":               time.Now().UTC().Format(time.RFC3339Nano),
		"datacontenttype":    "application/json",
		"shkeptncontext":     ctxID,
		"shkeptnspecversion": "0.2.4",
		"data":               data,
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	return b, id, err
}

func event(args []string) error {
	fs := flag.NewFlagSet("event", flag.ContinueOnError)
	project := fs.String("project", "", "Keptn project")
	stage := fs.String("stage", "", "Keptn stage")
	service := fs.String("service", "", "Keptn service")
	action := fs.String("action", "scale", "action")
	value := fs.String("value", `{"replicas":"+1"}`, "the action's value, JSON")
	out := fs.String("out", "", "file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *project == "" || *stage == "" || *service == "" || *out == "" {
		return errors.New("-project, -stage, -service and -out are required")
	}
	var v any
	if err := json.Unmarshal([]byte(*value), &v); err != nil {
		return fmt.Errorf("-value: %w", err)
	}
	ev, id, err := triggered(*project, *stage, *service, keptnv2.ActionInfo{Name: *action, Action: *action, Value: v}, nil, 0)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, ev, 0o644); err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// ---- post, get ----

var client = &http.Client{Timeout: 10 * time.Second}

func post(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: keptnsim post URL FILE")
	}
	body, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	resp, err := client.Post(args[0], "application/cloudevents+json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimSpace(string(answer)))
	return nil
}

func get(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: keptnsim get URL")
	}
	resp, err := client.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Println(strings.TrimSpace(string(answer)))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: HTTP %d", args[0], resp.StatusCode)
	}
	return nil
}

// ---- expect ----

type received struct {
	Type        string `json:"type"`
	TriggeredID string `json:"triggeredid"`
	Source      string `json:"source"`
	Data        struct {
		Status  string `json:"status"`
		Result  string `json:"result"`
		Message string `json:"message"`
	} `json:"data"`
}

func expect(args []string) error {
	fs := flag.NewFlagSet("expect", flag.ContinueOnError)
	file := fs.String("events", "", "the sink's event file")
	id := fs.String("id", "", "id of the triggered event")
	status := fs.String("status", "succeeded", "expected data.status of finished")
	result := fs.String("result", "pass", "expected data.result of finished")
	message := fs.String("message", "", "text the finished message must contain")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for finished")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *id == "" {
		return errors.New("-events and -id are required")
	}
	deadline := time.Now().Add(*timeout)
	for {
		started, finished, err := scan(*file, *id)
		if err != nil {
			return err
		}
		if len(finished) > 0 {
			f := finished[0]
			switch {
			case len(started) != 1:
				return fmt.Errorf("event %s: %d started events, want 1", *id, len(started))
			case len(finished) != 1:
				return fmt.Errorf("event %s: %d finished events, want 1", *id, len(finished))
			case f.Data.Status != *status || f.Data.Result != *result:
				return fmt.Errorf("event %s: finished %s/%s, want %s/%s: %q", *id, f.Data.Status, f.Data.Result, *status, *result, f.Data.Message)
			case !strings.Contains(f.Data.Message, *message):
				return fmt.Errorf("event %s: finished message %q does not contain %q", *id, f.Data.Message, *message)
			}
			fmt.Printf("%s/%s: %s\n", f.Data.Status, f.Data.Result, f.Data.Message)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("event %s: no finished event within %s (%d started)", *id, *timeout, len(started))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func scan(file, id string) (started, finished []received, err error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var ev received
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line still being written
		}
		if ev.TriggeredID != id {
			continue
		}
		switch ev.Type {
		case "sh.keptn.event.action.started":
			started = append(started, ev)
		case "sh.keptn.event.action.finished":
			finished = append(finished, ev)
		}
	}
	return started, finished, sc.Err()
}

// ---- NATS ----

const triggeredSubject = "sh.keptn.event.action.triggered"

func natsSink(args []string) error {
	fs := flag.NewFlagSet("natssink", flag.ContinueOnError)
	url := fs.String("url", "", "NATS server URL")
	out := fs.String("out", "", "append received events here, one JSON object a line")
	readyFile := fs.String("ready-file", "", "created once subscribed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *out == "" {
		return errors.New("-url and -out are required")
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	nc, err := nats.Connect(*url, nats.Name("keptnsim natssink"))
	if err != nil {
		return err
	}
	defer nc.Close()
	// Everything of the action task but the triggered events, which are
	// Keptn's own; each message is one structured-mode CloudEvent.
	_, err = nc.Subscribe("sh.keptn.event.action.>", func(m *nats.Msg) {
		if m.Subject == triggeredSubject {
			return
		}
		var ev struct {
			Type string `json:"type"`
		}
		var line bytes.Buffer
		if json.Unmarshal(m.Data, &ev) != nil || ev.Type != m.Subject || json.Compact(&line, m.Data) != nil {
			fmt.Fprintf(os.Stderr, "keptnsim natssink: not a structured CloudEvent of type %s: %.200s\n", m.Subject, m.Data)
			return
		}
		line.WriteByte('\n')
		if _, err := f.Write(line.Bytes()); err != nil {
			fmt.Fprintf(os.Stderr, "keptnsim natssink: %v\n", err)
		}
	})
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, []byte("ok\n"), 0o644); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func natsPub(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return errors.New("usage: keptnsim natspub URL FILE [COUNT]")
	}
	count := 1
	if len(args) == 3 {
		var err error
		if count, err = strconv.Atoi(args[2]); err != nil || count < 1 {
			return fmt.Errorf("bad count %q", args[2])
		}
	}
	body, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	nc, err := nats.Connect(args[0], nats.Name("keptnsim natspub"))
	if err != nil {
		return err
	}
	defer nc.Close()
	for range count {
		if err := nc.Publish(triggeredSubject, body); err != nil {
			return err
		}
	}
	return nc.FlushTimeout(5 * time.Second)
}

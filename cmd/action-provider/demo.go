//go:build !nosandbox

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	examplecatalog "github.com/keptn-action-provider/action-provider/examples/catalog"
	"github.com/keptn-action-provider/action-provider/examples/events"
	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/gate/approval"
	"github.com/keptn-action-provider/action-provider/internal/history"
	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/secret"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// demo runs the provider in sandbox mode with an event sink in-process, POSTs
// it every example event as the distributor would, and prints what Keptn
// would receive. It fails when the provider does not keep its contract: a
// 202 without exactly one started and one finished, or a 200 with any event.
func demo(ctx context.Context, out, logOut io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	cfg.RcvHost, cfg.RcvPort, cfg.OpsPort = "127.0.0.1", 0, 0
	cfg.Sandbox = config.SandboxOn
	masker := &secret.Masker{}
	log := newLogger(cfg, logOut, masker)
	if cfg.LogLevel == "info" {
		log.SetLevel(logrus.WarnLevel) // the demo's own output tells the story
	}
	sandboxPolicy(&cfg, log)
	if cfg.ActionsConfig == "" {
		// The built-in actions and a first job (examples/catalog/sandbox.yaml).
		path, remove, err := writeCatalog(examplecatalog.Sandbox)
		if err != nil {
			return err
		}
		defer remove()
		cfg.ActionsConfig = path
	}

	client, err := sandbox.New(sandboxseed.FS)
	if err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	dyn := sandbox.NewDynamic()
	sink := &eventsink.Sink{}
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the event sink: %w", err)
	}
	sinkSrv := &http.Server{Handler: sink, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = sinkSrv.Serve(sinkLn) }()
	defer sinkSrv.Close()
	cfg.EventBroker = "http://" + sinkLn.Addr().String() + "/event"

	url, stop, err := serveDemo(ctx, cfg, client, dyn, log, masker)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Sandbox cluster seeded from examples/sandbox; provider receiving on %s;\nevents go to an in-process sink at %s. DRY_RUN=%t.\n\n",
		url, cfg.EventBroker, cfg.DryRun)
	names, err := fs.Glob(events.FS, "*.json")
	if err != nil {
		stop()
		return err
	}
	for _, name := range names {
		body, err := fs.ReadFile(events.FS, name)
		if err == nil {
			err = demoEvent(ctx, out, url, client, sink, name, body, approval.ApproveKey)
		}
		if err != nil {
			stop()
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	stop()
	fmt.Fprintln(out, "All example events behaved as the Keptn contract requires.")
	if err := demoGates(ctx, out, cfg, client, dyn, sink, log, masker); err != nil {
		return err
	}
	// What a person reads the morning after: action-provider history.
	entries, err := history.Read(ctx, client, history.Options{Since: time.Hour, LedgerNamespace: cfg.PodNamespace})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\naction-provider history --since 1h, on the sandbox:")
	return history.Table(out, entries, time.UTC)
}

// serveDemo builds and starts a provider on the sandbox; stop stops it.
func serveDemo(ctx context.Context, cfg config.Config, client kube.Interface, dyn dynamic.Interface,
	log logrus.FieldLogger, masker *secret.Masker) (url string, stop func(), err error) {
	// The sandbox is the demo's own: no other replica to share claims with.
	svc, err := buildTraced(cfg, client, dyn, nil, true, log, masker, nil)
	if err != nil {
		return "", nil, err
	}
	p := svc.server
	if err := p.Listen(); err != nil {
		return "", nil, err
	}
	serveCtx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- p.Serve(serveCtx) }()
	return svc.receiver.URL(), func() { cancel(); <-served }, nil
}

// writeCatalog writes a catalog to a temporary file for ACTIONS_CONFIG.
func writeCatalog(body []byte) (path string, remove func(), err error) {
	f, err := os.CreateTemp("", "action-provider-demo-*.yaml")
	if err != nil {
		return "", nil, fmt.Errorf("write the demo's catalog: %w", err)
	}
	_, err = f.Write(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("write the demo's catalog: %w", err)
	}
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}

// demoEvent sends one event and prints what Keptn receives; a person asked
// to approve answers with decision (approval.ApproveKey or RejectKey).
func demoEvent(ctx context.Context, out io.Writer, url string, client kube.Interface,
	sink *eventsink.Sink, name string, body []byte, decision string) error {
	fmt.Fprintf(out, "== %s\n", name)
	// Decoding here only describes the event; the provider decodes it itself.
	t, decodeErr := keptnevent.Decode(http.Header{}, body)
	var (
		target workload.Ref
		before string
	)
	if decodeErr == nil {
		fmt.Fprintf(out, "   action %q, value %s, %s/%s/%s\n", t.Data.Action.Action, orNone(t.Value), t.Data.Project, t.Data.Stage, t.Data.Service)
		// Only to describe the target: the value's own keys are the action's business.
		var sel workload.Selector
		_ = json.Unmarshal(t.Value, &sel)
		if ref, err := workload.Resolve(ctx, client, t.Request(false), sel); err == nil {
			target, before = ref, describeState(ctx, client, ref)
		}
	}

	code, answer, err := post(ctx, url, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   POST -> %d %s\n", code, answer)
	switch code {
	case http.StatusAccepted:
		waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// The demo plays the person a risky action waits for.
		approverCtx, stopApprover := context.WithCancel(waitCtx)
		approved := make(chan []string, 1)
		go func() { approved <- decide(approverCtx, client, t.ID, decision) }()
		fin, err := sink.AwaitFinished(waitCtx, t.ID)
		stopApprover()
		asked := <-approved
		if err != nil {
			return err
		}
		evs := sink.For(t.ID)
		if len(evs) != 2 || evs[0].Type != keptnevent.StartedType {
			return fmt.Errorf("want exactly one started then one finished, got %d events", len(evs))
		}
		fmt.Fprintf(out, "   <- %s  (triggeredid %s, shkeptncontext %s)\n", evs[0].Type, evs[0].TriggeredID, evs[0].KeptnContext)
		for _, line := range asked {
			fmt.Fprintln(out, line)
		}
		fmt.Fprintf(out, "   <- %s status=%s result=%s\n      %q\n", fin.Type, fin.Data.Status, fin.Data.Result, fin.Data.Message)
		if before != "" {
			fmt.Fprintf(out, "   %s before: %s\n", target, before)
			fmt.Fprintf(out, "   %s after:  %s\n", target, describeState(ctx, client, target))
			for _, e := range auditEvents(ctx, client, target, t.ID) {
				fmt.Fprintf(out, "   kubectl describe %s shows: %s %s %s\n      %q\n",
					strings.ToLower(string(target.Kind)), e.Type, e.Reason, e.Source.Component, e.Message)
			}
		}
		describeJobs(ctx, out, client, t.ID)
	case http.StatusOK:
		// The answer came after the lifecycle decided not to queue the
		// event: nothing for it exists that could send an event later.
		if evs := sink.For(t.ID); len(evs) != 0 {
			return fmt.Errorf("an ignored event produced %d events", len(evs))
		}
		fmt.Fprintln(out, "   <- no event: another provider may own this action, and a started without a finished would hang Keptn")
	default:
		fmt.Fprintln(out, "   <- no event: the sender is told why, and the provider carries on")
	}
	fmt.Fprintln(out)
	return nil
}

func post(ctx context.Context, url string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST to the provider: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// describeState says what a person would look at: replicas, images,
// the restart stamp, and the pods.
func describeState(ctx context.Context, client kube.Interface, ref workload.Ref) string {
	var (
		tmpl     corev1.PodTemplateSpec
		replicas = "a pod on each node"
	)
	switch ref.Kind {
	case workload.Deployment:
		d, err := client.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		tmpl, replicas = d.Spec.Template, count(d.Spec.Replicas, "replica")
	case workload.StatefulSet:
		s, err := client.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		tmpl, replicas = s.Spec.Template, count(s.Spec.Replicas, "replica")
	case workload.DaemonSet:
		ds, err := client.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		tmpl = ds.Spec.Template
	}
	parts := []string{replicas}
	for _, c := range tmpl.Spec.Containers {
		parts = append(parts, "image "+c.Image)
	}
	if at := tmpl.Annotations["kubectl.kubernetes.io/restartedAt"]; at != "" {
		parts = append(parts, "restarted at "+at)
	}
	// Most sandbox workloads have no pods: nothing runs them.
	if pods, err := workload.Pods(ctx, client, ref); err == nil && len(pods) > 0 {
		var names []string
		for _, p := range pods {
			state := "ready"
			if !podReady(p) {
				state = "not ready"
			}
			names = append(names, fmt.Sprintf("pod %s %s (uid %.8s)", p.Name, state, p.UID))
		}
		parts = append(parts, strings.Join(names, ", "))
	}
	return strings.Join(parts, ", ")
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// count is "1 replica", "3 replicas"; nil counts as 1, the API's default.
func count(n *int32, noun string) string {
	v := int32(1)
	if n != nil {
		v = *n
	}
	if v == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", v, noun)
}

// auditEvents lists the events the provider recorded on ref for the
// triggered event id.
func auditEvents(ctx context.Context, client kube.Interface, ref workload.Ref, id string) []corev1.Event {
	list, err := client.CoreV1().Events(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var evs []corev1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == ref.Name && e.InvolvedObject.Kind == string(ref.Kind) &&
			e.Source.Component == audit.Component && strings.Contains(e.Message, "triggeredid "+id) {
			evs = append(evs, e)
		}
	}
	return evs
}

// decide plays the person an approval waits for: it looks for the
// provider's ApprovalPending event for the triggered event id, and
// annotates the target with decision as the event says, until ctx ends.
// It returns what to print.
func decide(ctx context.Context, client kube.Interface, id, decision string) []string {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, e := range list.Items {
				if e.Reason != approval.ReasonPending || !strings.Contains(e.Message, id) {
					continue
				}
				o := e.InvolvedObject
				patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, decision, id+" demo: the person at the keyboard")
				var perr error
				switch o.Kind {
				case "Deployment":
					_, perr = client.AppsV1().Deployments(o.Namespace).Patch(ctx, o.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-annotate"})
				case "StatefulSet":
					_, perr = client.AppsV1().StatefulSets(o.Namespace).Patch(ctx, o.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-annotate"})
				default:
					return []string{"   the provider asks a person to approve " + o.Kind + " " + o.Name + "; the demo approves only workloads"}
				}
				lines := []string{fmt.Sprintf("   the provider waits for a person (kubectl events shows %s %s):\n      %q", e.Type, e.Reason, e.Message)}
				if perr != nil {
					return append(lines, "   approving failed: "+perr.Error())
				}
				verb := "approves"
				if decision == approval.RejectKey {
					verb = "rejects"
				}
				return append(lines, fmt.Sprintf("   a person %s: kubectl annotate %s/%s -n %s %s=%s --overwrite",
					verb, strings.ToLower(o.Kind), o.Name, o.Namespace, decision, id))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// describeJobs shows the Jobs a job action created for the event, as
// kubectl get and describe would.
func describeJobs(ctx context.Context, out io.Writer, client kube.Interface, id string) {
	list, err := client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, j := range list.Items {
		if j.Annotations[action.AnnotationPrefix+"triggeredid"] != id {
			continue
		}
		state := "running"
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				state = string(c.Type)
			}
		}
		fmt.Fprintf(out, "   kubectl get job -n %s %s: %s, image %s\n", j.Namespace, j.Name, state, j.Spec.Template.Spec.Containers[0].Image)
		ref := workload.Ref{Kind: "Job", Namespace: j.Namespace, Name: j.Name}
		for _, e := range auditEvents(ctx, client, ref, id) {
			fmt.Fprintf(out, "   kubectl describe job shows: %s %s %s\n      %q\n", e.Type, e.Reason, e.Source.Component, e.Message)
		}
	}
}

func orNone(v []byte) string {
	if len(v) == 0 {
		return "(none)"
	}
	return string(v)
}

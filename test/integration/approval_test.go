package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate/approval"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// approvalInstance is a provider whose catalog is catalogYAML, allowed to
// scale to 0.
func approvalInstance(t *testing.T, c kube.Interface, catalogYAML string) instance {
	t.Helper()
	path := filepath.Join(t.TempDir(), "actions.yaml")
	if err := os.WriteFile(path, []byte(catalogYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return newInstance(t, c, "approval-"+randomSuffix(), func(cfg *config.Config) {
		cfg.ActionsConfig, cfg.ScaleMinReplicas = path, 0
	})
}

// The catalog of these tests: the built-in actions, the defaults on.
const approvalCatalog = `
approval:
  timeout: %s
  productionStages: [%s]
actions:
  - {name: scale, kind: scale}
  - {name: rollback, kind: rollback}
  - {name: delete-pods, kind: delete-pods}
  - {name: restart, kind: restart, guardrails: {approval: required}}
  - {name: rollback-now, kind: rollback, guardrails: {approval: never}}
`

func catalogFor(timeout, stage string) string {
	return strings.Replace(strings.Replace(approvalCatalog, "%s", timeout, 1), "%s", stage, 1)
}

// runAsync runs req on another goroutine.
func (i instance) runAsync(ctx context.Context, t *testing.T, req action.Request) <-chan finished {
	h := i.handler(t, req.Action)
	done := make(chan finished, 1)
	go func() { done <- report(h.Run(ctx, req)) }()
	return done
}

// pendingEvent waits for the ApprovalPending Event of triggered id on the
// workload, as the person who approves would, and returns it.
func pendingEvent(ctx context.Context, t *testing.T, c kubernetes.Interface, ref workload.Ref, id string) corev1.Event {
	t.Helper()
	var found corev1.Event
	eventually(ctx, t, "the ApprovalPending event of "+id, func(ctx context.Context) (bool, string, error) {
		for _, e := range auditEvents(ctx, t, c, ref) {
			if e.Reason == approval.ReasonPending && strings.Contains(e.Message, "triggeredid "+id) {
				found = e
				return true, "", nil
			}
		}
		return false, "no event yet", nil
	})
	return found
}

var commandRE = regexp.MustCompile(`(approve|reject): (kubectl annotate \S+ -n \S+ \S+ --overwrite)`)

// kubectl runs the command the Event gives for verb (approve or reject),
// exactly as written, against the control plane.
func kubectl(ctx context.Context, t *testing.T, cp *controlPlane, e corev1.Event, verb string) {
	t.Helper()
	var command string
	for _, m := range commandRE.FindAllStringSubmatch(e.Message, -1) {
		if m[1] == verb {
			command = m[2]
		}
	}
	if command == "" {
		t.Fatalf("the event gives no %s command: %s", verb, e.Message)
	}
	args := append(strings.Fields(command)[1:], "--kubeconfig", cp.env["KUBECONFIG"])
	out, err := exec.CommandContext(ctx, filepath.Join(cp.env["KUBE_BIN_DIR"], "kubectl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
}

// annotateAs writes annotations on a Deployment as kubectl annotate does.
func annotateAs(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, a map[string]string) {
	t.Helper()
	var pairs []string
	for k, v := range a {
		pairs = append(pairs, `"`+k+`":"`+v+`"`)
	}
	patch := `{"metadata":{"annotations":{` + strings.Join(pairs, ",") + `}}}`
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "kubectl-annotate"}); err != nil {
		t.Fatal(err)
	}
}

func reasonsOf(evs []corev1.Event) []string {
	var r []string
	for _, e := range evs {
		if strings.HasPrefix(e.Reason, "Approval") {
			r = append(r, e.Type+" "+e.Reason)
		}
	}
	return r
}

func checkNoApprovalMarks(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, keep map[string]string) {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range d.Annotations {
		if strings.HasPrefix(k, action.AnnotationPrefix) && keep[k] != v {
			t.Errorf("annotation %s=%q left on %s", k, v, name)
		}
	}
}

func replicasOf(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string) int32 {
	t.Helper()
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

// TestApprovalGranted: a scale to 0 waits; the person runs the Event's
// approve command (kubectl itself); the scale then runs. A rejection left
// by an earlier run, naming another triggered id, does not count.
func TestApprovalGranted(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 2}
	carts.create(ctx, t, cp.client, ns)
	stale := map[string]string{approval.RejectKey: "trig-an-earlier-run"}
	annotateAs(ctx, t, cp.client, ns, "carts", stale)
	inst := approvalInstance(t, cp.api, catalogFor("2m", "production"))

	req := request(stage, "scale", `{"replicas": 0}`, false)
	done := inst.runAsync(ctx, t, req)
	e := pendingEvent(ctx, t, cp.client, carts.ref(ns), req.TriggeredID)
	if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "waits up to 2m0s for approval: scaling deployment "+ns+"/carts from 2 to 0 replicas") {
		t.Errorf("pending event: %s %q", e.Type, e.Message)
	}
	d, err := cp.client.AppsV1().Deployments(ns).Get(ctx, "carts", metav1.GetOptions{})
	if err != nil || d.Annotations[approval.PendingKey] != req.TriggeredID {
		t.Fatalf("pending annotation: %v %v", d.Annotations, err)
	}
	kubectl(ctx, t, cp, e, "approve")

	got := <-done
	checkFinished(t, 0, step{want: "scaled deployment {ns}/carts from 2 to 0 replicas"}, ns, got)
	if n := replicasOf(ctx, t, cp.client, ns, "carts"); n != 0 {
		t.Errorf("replicas after the approval: %d", n)
	}
	evs := auditEvents(ctx, t, cp.client, carts.ref(ns))
	if r := strings.Join(reasonsOf(evs), ", "); r != "Warning ApprovalPending, Normal ApprovalGranted" {
		t.Errorf("approval events: %s", r)
	}
	for _, e := range evs {
		if e.Reason == approval.ReasonGranted && !strings.Contains(e.Message, "approved by kubectl-annotate after") {
			t.Errorf("granted event %q does not say who", e.Message)
		}
	}
	checkNoApprovalMarks(ctx, t, cp.client, ns, "carts", stale)
}

// TestApprovalRejected: delete-pods with "all": true waits; the reject
// command refuses it, and no pod is evicted.
func TestApprovalRejected(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 2}
	carts.create(ctx, t, cp.client, ns)
	inst := approvalInstance(t, cp.api, catalogFor("2m", "production"))
	eventually(ctx, t, "two pods of carts", func(ctx context.Context) (bool, string, error) {
		n := len(podUIDs(ctx, t, cp.client, ns, "carts"))
		return n == 2, "", nil
	})
	before := podUIDs(ctx, t, cp.client, ns, "carts")

	req := request(stage, "delete-pods", `{"all": true}`, false)
	done := inst.runAsync(ctx, t, req)
	kubectl(ctx, t, cp, pendingEvent(ctx, t, cp.client, carts.ref(ns), req.TriggeredID), "reject")

	got := <-done
	checkFinished(t, 0, step{wantFail: `refused (approval): approval rejected by kubectl-annotate on deployment {ns}/carts: evicting every pod of deployment {ns}/carts ("all": true)`}, ns, got)
	after := podUIDs(ctx, t, cp.client, ns, "carts")
	for uid := range before {
		if !after[uid] {
			t.Errorf("pod %s evicted although the approval was rejected", uid)
		}
	}
	if r := strings.Join(reasonsOf(auditEvents(ctx, t, cp.client, carts.ref(ns))), ", "); r != "Warning ApprovalPending, Warning ApprovalRejected" {
		t.Errorf("approval events: %s", r)
	}
	checkNoApprovalMarks(ctx, t, cp.client, ns, "carts", nil)
}

// TestApprovalTimedOut: nobody approves within approval.timeout (2s); an
// approval of another triggered id, left from earlier, does not count. The
// run ends succeeded/fail, nothing scaled.
func TestApprovalTimedOut(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 2}
	carts.create(ctx, t, cp.client, ns)
	stale := map[string]string{approval.ApproveKey: "trig-an-earlier-run"}
	annotateAs(ctx, t, cp.client, ns, "carts", stale)
	inst := approvalInstance(t, cp.api, catalogFor("2s", "production"))

	req := request(stage, "scale", `"-2"`, false) // relative, lands on 0
	got := inst.run(ctx, t, req)
	checkFinished(t, 0, step{wantFail: "refused (approval): not approved within 2s: scaling deployment {ns}/carts from 2 to 0 replicas; approve with `kubectl annotate deployment/carts -n {ns} keptn-action-provider.io/approve=" + req.TriggeredID + " --overwrite`"}, ns, got)
	if !strings.Contains(got.message, "approval.timeout sets the wait") || !strings.Contains(got.message, `guardrails.approval: never exempts entry "scale"`) {
		t.Errorf("the refusal %q does not say what changes it", got.message)
	}
	if n := replicasOf(ctx, t, cp.client, ns, "carts"); n != 2 {
		t.Errorf("replicas after the timeout: %d, want 2", n)
	}
	if r := strings.Join(reasonsOf(auditEvents(ctx, t, cp.client, carts.ref(ns))), ", "); r != "Warning ApprovalPending, Warning ApprovalTimedOut" {
		t.Errorf("approval events: %s", r)
	}
	checkNoApprovalMarks(ctx, t, cp.client, ns, "carts", stale)
}

// TestApprovalDefaults: what asks and what does not. A scale to 2 runs at
// once; a rollback in a production stage asks (and, unapproved, is
// refused); guardrails.approval: never does not ask; required asks for a
// restart, which the defaults never ask for.
func TestApprovalDefaults(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)
	// The test's random stage is a production stage of this catalog.
	inst := approvalInstance(t, cp.api, catalogFor("1s", stage))

	got := inst.run(ctx, t, request(stage, "scale", `{"replicas": 2}`, false))
	checkFinished(t, 0, step{want: "scaled deployment {ns}/carts from 1 to 2 replicas"}, ns, got)
	if r := reasonsOf(auditEvents(ctx, t, cp.client, carts.ref(ns))); len(r) != 0 {
		t.Errorf("a scale to 2 asked for approval: %v", r)
	}

	got = inst.run(ctx, t, request(stage, "rollback", ``, false))
	checkFinished(t, 1, step{wantFail: `refused (approval): not approved within 1s: rolling back deployment {ns}/carts in production stage "` + stage + `"`}, ns, got)
	if !strings.Contains(got.message, "approval.productionStages which stages") {
		t.Errorf("the refusal %q does not name approval.productionStages", got.message)
	}

	got = inst.run(ctx, t, request(stage, "rollback-now", ``, false))
	if got.status != keptnv2.StatusSucceeded || !strings.Contains(got.message, "no previous revision") {
		t.Errorf("rollback-now (approval: never): %s/%s %q, want the rollback's own answer", got.status, got.result, got.message)
	}

	got = inst.run(ctx, t, request(stage, "restart", ``, false))
	checkFinished(t, 3, step{wantFail: `refused (approval): not approved within 1s: entry "restart" (restart on deployment {ns}/carts) has guardrails.approval: required`}, ns, got)
	if r := strings.Join(reasonsOf(auditEvents(ctx, t, cp.client, carts.ref(ns))), ", "); r != "Warning ApprovalPending, Warning ApprovalTimedOut, Warning ApprovalPending, Warning ApprovalTimedOut" {
		t.Errorf("approval events: %s", r)
	}
}

// TestApprovalDryRunDoesNotWait: a dry run reports the approval a real run
// would wait for, as a warning, and writes nothing: no mark, no Event.
func TestApprovalDryRunDoesNotWait(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 2}
	carts.create(ctx, t, cp.client, ns)
	// Had it waited, it would have answered "not approved within 3m0s".
	inst := approvalInstance(t, cp.api, catalogFor("3m", "production"))

	start := time.Now()
	req := request(stage, "scale", `{"replicas": 0}`, true)
	got := inst.run(ctx, t, req)
	if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultWarning ||
		!strings.HasPrefix(got.message, "dry run: would scale deployment "+ns+"/carts from 2 to 0") ||
		!strings.Contains(got.message, "approval needed (scaling deployment "+ns+"/carts from 2 to 0 replicas): a real run would wait up to 3m0s for `kubectl annotate deployment/carts -n "+ns+" keptn-action-provider.io/approve="+req.TriggeredID) {
		t.Fatalf("dry run: %s/%s %q", got.status, got.result, got.message)
	}
	if r := reasonsOf(auditEvents(ctx, t, cp.client, carts.ref(ns))); len(r) != 0 {
		t.Errorf("a dry run recorded %v", r)
	}
	checkNoApprovalMarks(ctx, t, cp.client, ns, "carts", nil)
	t.Logf("dry run answered in %s", time.Since(start).Round(time.Millisecond))
}

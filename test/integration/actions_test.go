package integration

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/actionconfig"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// instance is one provider's catalog of actions, wired exactly as the
// binary wires it, with its ledger in ledgerNamespace. Two instances with
// different names stand for two replicas of the provider.
type instance struct {
	registry *action.Registry
}

// newInstance builds an instance named name. The defaults suit tests that
// run several steps on one workload; edit changes them.
func newInstance(t *testing.T, c kube.Interface, name string, edit func(*config.Config)) instance {
	t.Helper()
	cfg, err := config.Load() // the defaults, and whatever the environment sets
	if err != nil {
		t.Fatal(err)
	}
	cfg.PodNamespace, cfg.PodName = ledgerNamespace, name
	// Deny by default: the tests' namespaces, "itest-<stage>", named.
	cfg.AllowedNamespaces = []string{project + "-*"}
	cfg.ScaleMinReplicas, cfg.ScaleMaxReplicas = 1, 10
	cfg.Cooldown = 0
	cfg.VerifyTimeout = waitTimeout / 2
	if edit != nil {
		edit(&cfg)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	// The ledger and audit recorder as the composition root makes them.
	book, err := ledger.New(c, ledger.Config{Namespace: cfg.PodNamespace, Identity: name,
		EventTTL: cfg.DedupTTL, LockTTL: cfg.ActionTimeout + 30*time.Second, HeartbeatPeriod: cfg.HeartbeatPeriod})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actionconfig.Load(cfg, actionconfig.Deps{Client: c, Ledger: book, Audit: audit.New(c, name), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return instance{registry: cat.Registry}
}

func (i instance) handler(t *testing.T, name string) action.Handler {
	t.Helper()
	h, _, ok := i.registry.Lookup(name)
	if !ok {
		t.Fatalf("no handler for %q", name)
	}
	return h
}

// run runs the action of req and returns what the finished event says.
func (i instance) run(ctx context.Context, t *testing.T, req action.Request) finished {
	t.Helper()
	return report(i.handler(t, req.Action).Run(ctx, req))
}

// podUIDs lists the UIDs of the workload's live pods.
func podUIDs(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, app string) map[string]bool {
	t.Helper()
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			uids[string(p.UID)] = true
		}
	}
	return uids
}

// auditEvents lists the reasons and messages of the provider's events on
// the object.
func auditEvents(ctx context.Context, t *testing.T, c kubernetes.Interface, ref workload.Ref) []corev1.Event {
	t.Helper()
	list, err := c.CoreV1().Events(ref.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + ref.Name + ",involvedObject.kind=" + string(ref.Kind),
	})
	if err != nil {
		t.Fatal(err)
	}
	var ours []corev1.Event
	for _, e := range list.Items {
		if e.Source.Component == audit.Component {
			ours = append(ours, e)
		}
	}
	return ours
}

func TestRestartReplacesPodsAndConverges(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	for _, o := range []object{{workload.Deployment, "carts", 2}, {workload.StatefulSet, "carts-db", 2}} {
		o.create(ctx, t, cp.client, ns)
	}
	inst := newInstance(t, cp.api, "a", nil)

	for _, tc := range []struct {
		value, app string
		ref        workload.Ref
	}{
		{"", "carts", workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}},
		{`{"kind": "sts", "name": "carts-db"}`, "carts-db", workload.Ref{Kind: workload.StatefulSet, Namespace: ns, Name: "carts-db"}},
	} {
		before := podUIDs(ctx, t, cp.client, ns, tc.app)
		req := request(stage, "restart", tc.value, false)
		req.Problem.ProblemTitle = "Response time degradation"
		got := inst.run(ctx, t, req)
		checkFinished(t, 0, step{want: "restarted " + tc.ref.String() + " (never restarted); rollout converged in "}, ns, got)
		if !strings.HasSuffix(got.message, "2/2 pods ready") {
			t.Errorf("finished message %q does not say how many pods are ready", got.message)
		}
		after := podUIDs(ctx, t, cp.client, ns, tc.app)
		for uid := range before {
			if after[uid] {
				t.Errorf("%s: pod %s survived the restart", tc.ref, uid)
			}
		}
		if len(after) != 2 {
			t.Errorf("%s: %d live pods after the restart, want 2", tc.ref, len(after))
		}
		events := auditEvents(ctx, t, cp.client, tc.ref)
		if len(events) != 1 || events[0].Reason != "Restarted" ||
			!strings.Contains(events[0].Message, "triggeredid "+req.TriggeredID) ||
			!strings.Contains(events[0].Message, `problem "Response time degradation"`) {
			t.Errorf("%s: audit events %+v, want one Restarted naming the triggered id and the problem", tc.ref, events)
		}
	}
}

// setImage changes the image of the deployment's container, as a release
// would, and waits for the rollout.
func setImage(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, image string) {
	t.Helper()
	updateDeployment(ctx, t, c, ns, name, func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image })
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(ctx, t, c, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: name}, *d.Spec.Replicas)
}

// updateDeployment changes a deployment as another client would, reading it
// again when the controllers got in between.
func updateDeployment(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, change func(*appsv1.Deployment)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update deployment %s/%s: %v", ns, name, err)
	}
}

func TestRollbackRestoresThePreviousImage(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 2}.create(ctx, t, cp.client, ns)
	setImage(ctx, t, cp.client, ns, "carts", "registry.invalid/carts:2")
	inst := newInstance(t, cp.api, "a", nil)

	got := inst.run(ctx, t, request(stage, "rollback", "", false))
	checkFinished(t, 0, step{want: "rolled back deployment {ns}/carts from revision 2 to revision 1"}, ns, got)
	if !strings.Contains(got.message, "rollout converged in ") {
		t.Errorf("finished message %q does not report the rollout", got.message)
	}
	d, err := cp.client.AppsV1().Deployments(ns).Get(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if image := d.Spec.Template.Spec.Containers[0].Image; image != "registry.invalid/carts:1" {
		t.Errorf("image after the rollback: %s, want registry.invalid/carts:1", image)
	}
	// As with kubectl rollout undo, the old template comes back as a new
	// revision.
	if rev := d.Annotations["deployment.kubernetes.io/revision"]; rev != "3" {
		t.Errorf("revision after the rollback: %q, want 3", rev)
	}
	if ev := auditEvents(ctx, t, cp.client, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}); len(ev) != 1 || ev[0].Reason != "RolledBack" {
		t.Errorf("audit events %+v, want one RolledBack", ev)
	}

	// A StatefulSet goes back through its ControllerRevisions.
	db := object{workload.StatefulSet, "carts-db", 2}
	db.create(ctx, t, cp.client, ns)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cp.client.AppsV1().StatefulSets(ns).Get(ctx, "carts-db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Template.Spec.Containers[0].Image = "registry.invalid/carts-db:2"
		_, err = cp.client.AppsV1().StatefulSets(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(ctx, t, cp.client, db.ref(ns), 2)
	got = inst.run(ctx, t, request(stage, "rollback", `{"kind": "sts", "name": "carts-db"}`, false))
	checkFinished(t, 1, step{want: "rolled back statefulset {ns}/carts-db from revision 2 to revision 1"}, ns, got)
	s, err := cp.client.AppsV1().StatefulSets(ns).Get(ctx, "carts-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if image := s.Spec.Template.Spec.Containers[0].Image; image != "registry.invalid/carts-db:1" {
		t.Errorf("statefulset image after the rollback: %s, want registry.invalid/carts-db:1", image)
	}

	// A deployment with one revision has nothing to roll back to.
	object{workload.Deployment, "orders", 1}.create(ctx, t, cp.client, ns)
	got = inst.run(ctx, t, request(stage, "rollback", `{"name": "orders"}`, false))
	if got.result != "fail" || !strings.Contains(got.message, "no previous revision") {
		t.Errorf("rollback of a single revision: %s/%s %q, want fail saying there is no previous revision", got.status, got.result, got.message)
	}
}

func TestDeletePodsRespectsPodDisruptionBudget(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 2}.create(ctx, t, cp.client, ns)
	// "all": true asks a person by default; the approval has tests of its own.
	inst := approvalInstance(t, cp.api, "approval: {defaults: false}\nactions:\n  - {name: delete-pods, kind: delete-pods}\n")

	// Without a budget, one pod is evicted and replaced.
	before := podUIDs(ctx, t, cp.client, ns, "carts")
	got := inst.run(ctx, t, request(stage, "delete-pods", `{"all": true, "maxPods": 1}`, false))
	checkFinished(t, 0, step{want: "evicted 1 pod of deployment {ns}/carts"}, ns, got)
	after := podUIDs(ctx, t, cp.client, ns, "carts")
	kept := 0
	for uid := range before {
		if after[uid] {
			kept++
		}
	}
	if kept != 1 || len(after) != 2 {
		t.Errorf("after evicting 1 of 2 pods: %d of the old pods kept, %d live; want 1 and 2", kept, len(after))
	}

	// A budget that allows no disruption refuses the eviction.
	minAvailable := intstr.FromInt32(2)
	_, err := cp.client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "carts-pdb"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "carts"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the disruption controller to process carts-pdb", func(ctx context.Context) (bool, string, error) {
		p, err := cp.client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "carts-pdb", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Status.ObservedGeneration >= p.Generation && p.Status.CurrentHealthy == 2, "", nil
	})
	before = podUIDs(ctx, t, cp.client, ns, "carts")
	got = inst.run(ctx, t, request(stage, "delete-pods", `{"all": true, "maxPods": 1}`, false))
	checkFinished(t, 1, step{wantFail: "carts-pdb"}, ns, got)
	if !strings.Contains(got.message, "PodDisruptionBudget") {
		t.Errorf("refusal %q does not name the rule", got.message)
	}
	if after := podUIDs(ctx, t, cp.client, ns, "carts"); len(after) != len(before) {
		t.Errorf("pods changed although the budget refused: %v -> %v", before, after)
	} else {
		for uid := range before {
			if !after[uid] {
				t.Errorf("pod %s is gone although the budget refused", uid)
			}
		}
	}
}

func TestScaleMovesTheAutoscalerFloor(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 1}.create(ctx, t, cp.client, ns)
	minReplicas := int32(1)
	_, err := cp.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "carts"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "carts"},
			MinReplicas:    &minReplicas, MaxReplicas: 2,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inst := newInstance(t, cp.api, "a", nil)

	got := inst.run(ctx, t, request(stage, "scale", `{"replicas": "+2"}`, false))
	checkFinished(t, 0, step{want: "scaled: deployment {ns}/carts is autoscaled by horizontalpodautoscaler carts, so its minReplicas was set instead of the replicas: 1 → 3 (maxReplicas raised 2 → 3 to make room); the autoscaler takes it from 1 to 3 replicas; rollout converged in "}, ns, got)
	h, err := cp.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 3 {
		t.Errorf("autoscaler bounds %d..%d, want 3..3", *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	// The autoscaler, not the action, wrote the replicas.
	waitConverged(ctx, t, cp.client, workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}, 3)
}

func TestGuardrailsRefuseAndChangeNothing(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 2}.create(ctx, t, cp.client, ns)
	optedOut := object{workload.Deployment, "orders", 1}
	optedOut.create(ctx, t, cp.client, ns)
	updateDeployment(ctx, t, cp.client, ns, "orders", func(d *appsv1.Deployment) {
		d.Annotations = map[string]string{guard.OptOutAnnotation: "true"}
	})
	carts := workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}
	orders := workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "orders"}
	// A catalog whose restart and scale let events choose the namespace, so
	// that the allowlist's protection of namespaces is what refuses.
	anyNamespace := filepath.Join(t.TempDir(), "actions.yaml")
	if err := os.WriteFile(anyNamespace, []byte(`actions:
  - {name: restart, kind: restart, target: {override: [namespace, name, kind]}}
  - {name: scale, kind: scale, target: {override: [namespace, name, kind]}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	namespaceOverride := func(c *config.Config) { c.ActionsConfig, c.AllowedNamespaces = anyNamespace, []string{"*"} }

	for _, tc := range []struct {
		name   string
		edit   func(*config.Config)
		action string
		value  string
		want   string
		target workload.Ref
	}{
		{"namespace allowlist", func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-*"} }, "restart", "",
			`refused (namespace allowlist): namespace {ns} is not allowed: it matches none of ALLOWED_NAMESPACES (now "sockshop-*")`, carts},
		{"no namespace allowed by default", func(c *config.Config) { c.AllowedNamespaces = nil }, "restart", "",
			"refused (namespace allowlist): namespace {ns} is not allowed: it matches none of ALLOWED_NAMESPACES (now empty); add it there, or set NAMESPACE_OPT_IN_LABEL", carts},
		{"an event may not choose the namespace", nil, "restart", `{"namespace": "kube-system", "name": "coredns"}`,
			`refused (target override): the value sets "namespace": "kube-system", but catalog entry "restart" does not let events choose the namespace`, carts},
		{"protected namespace", namespaceOverride, "restart", `{"namespace": "kube-system", "name": "coredns"}`,
			"refused (namespace allowlist): namespace kube-system is protected", carts},
		{"the provider's own namespace", namespaceOverride, "scale", `{"namespace": "` + ledgerNamespace + `", "name": "x", "replicas": "1"}`,
			"refused (namespace allowlist): namespace " + ledgerNamespace + " is protected", carts},
		{"opt-out annotation", nil, "restart", `{"name": "orders"}`,
			"refused (opt-out annotation): deployment {ns}/orders is annotated keptn-action-provider.io/opt-out=\"true\"", orders},
		{"opt-out holds for every action", nil, "delete-pods", `{"name": "orders", "all": true}`,
			"refused (opt-out annotation)", orders},
		{"max step", func(c *config.Config) { c.ScaleMaxStep = 2 }, "scale", `{"replicas": "+3"}`,
			"refused (maximum step): scaling deployment {ns}/carts from 2 to 5 replicas changes more than 2 at once (SCALE_MAX_STEP)", carts},
		{"maximum replicas", nil, "scale", `{"replicas": "11"}`,
			"refused (maximum replicas)", carts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[workload.Ref]state{carts: read(ctx, t, cp.client, carts), orders: read(ctx, t, cp.client, orders)}
			got := newInstance(t, cp.api, "a", tc.edit).run(ctx, t, request(stage, tc.action, tc.value, false))
			checkFinished(t, 0, step{wantFail: tc.want}, ns, got)
			for ref, b := range before {
				if a := read(ctx, t, cp.client, ref); a.generation != b.generation {
					t.Errorf("%s was written (generation %d -> %d) although the action was refused", ref, b.generation, a.generation)
				}
			}
			if ev := auditEvents(ctx, t, cp.client, tc.target); len(ev) != 0 {
				t.Errorf("a refused action recorded %d audit events on %s", len(ev), tc.target)
			}
		})
	}
}

// TestLockAndCooldownAcrossInstances: two instances of the provider share
// the cluster. While one restarts carts, whose new pods can never be
// scheduled, the other may not act on carts; the stuck rollout then fails
// with its reason; and a second restart is refused by the cooldown, on
// either instance.
func TestLockAndCooldownAcrossInstances(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	object{workload.Deployment, "carts", 2}.create(ctx, t, cp.client, ns)
	// From now on, new pods of carts wait for a node that does not exist.
	updateDeployment(ctx, t, cp.client, ns, "carts", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"action-provider-test/node": "none"}
	})

	cooldown := func(c *config.Config) { c.Cooldown = time.Hour; c.VerifyTimeout = 8 * time.Second }
	a := newInstance(t, cp.api, "replica-a", cooldown)
	b := newInstance(t, cp.api, "replica-b", cooldown)

	var wg sync.WaitGroup
	var first finished
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = report(a.handler(t, "restart").Run(ctx, request(stage, "restart", "", false)))
	}()
	// While a waits for its rollout, b is refused.
	eventually(ctx, t, "a to hold the lock of carts", func(ctx context.Context) (bool, string, error) {
		l, err := cp.client.CoordinationV1().Leases(ledgerNamespace).Get(ctx, "target.deployment."+ns+".carts", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", "", nil
	})
	got := b.run(ctx, t, request(stage, "scale", `{"replicas": "+1"}`, false))
	checkFinished(t, 0, step{wantFail: "refused (one action at a time per target): deployment {ns}/carts is busy: action restart"}, ns, got)
	wg.Wait()

	// The rollout never converges, and the result says why.
	checkFinished(t, 1, step{wantFail: "restarted deployment {ns}/carts (never restarted), but the rollout did not converge: "}, ns, first)
	if !strings.Contains(first.message, "Unschedulable") {
		t.Errorf("the failure %q does not give the pods' reason (Unschedulable)", first.message)
	}

	// The restart changed carts, so restart is cooling down on both instances.
	for i, inst := range []instance{a, b} {
		got := inst.run(ctx, t, request(stage, "restart", "", false))
		checkFinished(t, 2+i, step{wantFail: "refused (cooldown): restart changed deployment {ns}/carts"}, ns, got)
	}
}

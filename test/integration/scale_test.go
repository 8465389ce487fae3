package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// finished is what the lifecycle reports in the finished event for a
// handler's answer.
type finished struct {
	status  keptnv2.StatusType
	result  keptnv2.ResultType
	message string
}

func report(out action.Outcome, err error) finished {
	status, result, message := lifecycle.Report(out, err)
	return finished{status, result, message}
}

// step is one action run against the namespace of a test case.
type step struct {
	action string // as in the event: "scale" or the alias "scaling"
	value  string // data.action.value
	dryRun bool   // the provider's DRY_RUN
	// The finished event: {ns} stands for the namespace. A pass is
	// matched on want as the start of the message (verification adds how
	// the rollout went), a refusal (succeeded/fail) on wantFail and an
	// error (errored/fail) on wantErr, as substrings.
	want     string
	wantFail string
	wantErr  string
	// spec.replicas of every object afterwards, read from the API server.
	// An object whose count did not change must not have been written at
	// all: its generation is unchanged.
	replicas map[string]int32
}

func TestScaleHandler(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	deploy := func(name string, n int32) object { return object{workload.Deployment, name, n} }

	tests := []struct {
		name    string
		objects []object
		steps   []step
	}{
		{
			name:    "deployment: absolute, then helm-service's relative scaling string",
			objects: []object{deploy("carts", 1)},
			steps: []step{
				{action: "scale", value: `{"replicas": "3"}`,
					want: "scaled deployment {ns}/carts from 1 to 3 replicas", replicas: map[string]int32{"carts": 3}},
				{action: "scaling", value: `"-1"`,
					want: "scaled deployment {ns}/carts from 3 to 2 replicas", replicas: map[string]int32{"carts": 2}},
				{action: "scale", value: `{"replicas": 2}`,
					want: "deployment {ns}/carts already has 2 replicas; nothing to do", replicas: map[string]int32{"carts": 2}},
			},
		},
		{
			name:    "statefulset named in the value",
			objects: []object{{workload.StatefulSet, "carts-db", 1}, deploy("carts", 1)},
			steps: []step{
				{action: "scale", value: `{"kind": "StatefulSet", "name": "carts-db", "replicas": "+2"}`,
					want:     "scaled statefulset {ns}/carts-db from 1 to 3 replicas",
					replicas: map[string]int32{"carts-db": 3, "carts": 1}},
				{action: "scale", value: `{"kind": "sts", "name": "carts-db", "replicas": "-1"}`,
					want:     "scaled statefulset {ns}/carts-db from 3 to 2 replicas",
					replicas: map[string]int32{"carts-db": 2, "carts": 1}},
			},
		},
		{
			name:    "only <service>-primary exists",
			objects: []object{deploy("carts-primary", 1)},
			steps: []step{
				{action: "scale", value: `{"replicas": "+1"}`,
					want: "scaled deployment {ns}/carts-primary from 1 to 2 replicas", replicas: map[string]int32{"carts-primary": 2}},
			},
		},
		{
			name:    "<service> is the idle canary at 0 beside <service>-primary",
			objects: []object{deploy("carts", 0), deploy("carts-primary", 2)},
			steps: []step{
				{action: "scaling", value: `"1"`,
					want:     "scaled deployment {ns}/carts-primary from 2 to 3 replicas",
					replicas: map[string]int32{"carts": 0, "carts-primary": 3}},
			},
		},
		{
			name:    "bounds refuse and change nothing",
			objects: []object{deploy("carts", 2)},
			steps: []step{
				{action: "scale", value: `{"replicas": "11"}`,
					wantFail: "refused (maximum replicas): scaling deployment {ns}/carts from 2 to 11 replicas is above the maximum of 10 (SCALE_MAX_REPLICAS)",
					replicas: map[string]int32{"carts": 2}},
				{action: "scaling", value: `"-2"`,
					wantFail: "refused (minimum replicas): scaling deployment {ns}/carts from 2 to 0 replicas is below the minimum of 1 (SCALE_MIN_REPLICAS)",
					replicas: map[string]int32{"carts": 2}},
			},
		},
		{
			name:    "dry run changes nothing",
			objects: []object{deploy("carts", 1)},
			steps: []step{
				{action: "scale", value: `{"replicas": "+1", "dryRun": true}`,
					want: "dry run: would scale deployment {ns}/carts from 1 to 2 replicas", replicas: map[string]int32{"carts": 1}},
				{action: "scale", value: `{"replicas": "4"}`, dryRun: true,
					want: "dry run: would scale deployment {ns}/carts from 1 to 4 replicas", replicas: map[string]int32{"carts": 1}},
			},
		},
		{
			name:    "no such workload",
			objects: []object{deploy("orders", 1)},
			steps: []step{
				{action: "scale", value: `{"replicas": "+1"}`,
					wantErr:  `find the workload to scale: no deployment carts or carts-primary in namespace {ns}: deployments.apps "carts" not found`,
					replicas: map[string]int32{"orders": 1}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			stage, ns := newNamespace(ctx, t, cp.client)
			h := newInstance(t, cp.api, "a", nil).handler(t, "scale")
			refs := map[string]workload.Ref{}
			for _, o := range tc.objects {
				o.create(ctx, t, cp.client, ns)
				refs[o.name] = o.ref(ns)
			}
			for i, s := range tc.steps {
				before := map[string]state{}
				for name, ref := range refs {
					before[name] = read(ctx, t, cp.client, ref)
				}
				got := report(h.Run(ctx, request(stage, s.action, s.value, s.dryRun)))
				checkFinished(t, i, s, ns, got)
				for name, want := range s.replicas {
					ref := refs[name]
					after := read(ctx, t, cp.client, ref)
					if after.replicas != want {
						t.Fatalf("step %d: spec.replicas of %s on the API server = %d, want %d", i, ref, after.replicas, want)
					}
					if want == before[name].replicas && after.generation != before[name].generation {
						t.Errorf("step %d: %s was written (generation %d -> %d) although its replicas stay %d",
							i, ref, before[name].generation, after.generation, want)
					}
					waitConverged(ctx, t, cp.client, ref, want)
				}
			}
		})
	}
}

// TestScaleHandlerRetriesOnConflict puts a real concurrent writer between
// the handler's read of the scale subresource and its write: the API server
// answers 409 Conflict, and the handler applies its relative change again to
// the count that is really there, rather than overwriting the other write.
//
// The other writer waits until the deployment controller has carried out its
// change before the handler's write goes on: while the controller is still
// updating the status, each status write also moves the resourceVersion the
// handler's write is conditional on, and the number of conflicts would vary
// from run to run.
func TestScaleHandlerRetriesOnConflict(t *testing.T) {
	cp := requireCluster(t)
	t.Parallel()
	ctx := testContext(t)
	stage, ns := newNamespace(ctx, t, cp.client)
	carts := object{workload.Deployment, "carts", 1}
	carts.create(ctx, t, cp.client, ns)

	// Before the handler's first PUT of carts' scale reaches the API
	// server, another client scales carts to 5.
	var interfered atomic.Bool
	var conflicts, puts atomic.Int32
	cfg := rest.CopyConfig(cp.config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			isScalePut := req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/namespaces/"+ns+"/deployments/carts/scale")
			if isScalePut {
				puts.Add(1)
				if interfered.CompareAndSwap(false, true) {
					if err := scaleTo(req.Context(), cp.client, ns, "carts", 5); err != nil {
						return nil, err
					}
					if err := poll(req.Context(), "carts to converge on 5 ready replicas", converged(cp.client, carts.ref(ns), 5)); err != nil {
						return nil, err
					}
				}
			}
			resp, err := rt.RoundTrip(req)
			if isScalePut && err == nil && resp.StatusCode == http.StatusConflict {
				conflicts.Add(1)
			}
			return resp, err
		})
	}
	client, err := kube.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newInstance(t, client, "a", nil).handler(t, "scale")

	got := report(h.Run(ctx, request(stage, "scale", `{"replicas": "+1"}`, false)))
	checkFinished(t, 0, step{want: "scaled deployment {ns}/carts from 5 to 6 replicas"}, ns, got)
	if conflicts.Load() != 1 || puts.Load() != 2 {
		t.Errorf("the handler's PUTs of carts/scale: %d, of which %d answered 409 Conflict; want 2 and 1", puts.Load(), conflicts.Load())
	}
	if n := read(ctx, t, cp.client, carts.ref(ns)).replicas; n != 6 {
		t.Fatalf("spec.replicas of carts on the API server = %d, want 6 (5 from the other writer, +1)", n)
	}
	waitConverged(ctx, t, cp.client, carts.ref(ns), 6)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// scaleTo is the other writer: it sets the replicas of a Deployment.
func scaleTo(ctx context.Context, c kubernetes.Interface, ns, name string, n int32) error {
	s, err := c.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Spec.Replicas = n
	_, err = c.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	return err
}

// request is what the lifecycle hands the handler for a triggered event of
// project itest, the given stage, and service carts.
func request(stage, actionName, value string, dryRun bool) action.Request {
	id := randomSuffix()
	return action.Request{
		Action: actionName, Value: json.RawMessage(value),
		Project: project, Stage: stage, Service: "carts",
		KeptnContext: "ctx-" + id, TriggeredID: "trig-" + id,
		DryRun: dryRun,
	}
}

func checkFinished(t *testing.T, i int, s step, ns string, got finished) {
	t.Helper()
	switch {
	case s.wantErr != "":
		want := strings.ReplaceAll(s.wantErr, "{ns}", ns)
		if got.status != keptnv2.StatusErrored || got.result != keptnv2.ResultFailed || !strings.Contains(got.message, want) {
			t.Fatalf("step %d: finished %s/%s %q, want errored/fail with %q", i, got.status, got.result, got.message, want)
		}
	case s.wantFail != "":
		want := strings.ReplaceAll(s.wantFail, "{ns}", ns)
		if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultFailed || !strings.Contains(got.message, want) {
			t.Fatalf("step %d: finished %s/%s %q, want succeeded/fail with %q", i, got.status, got.result, got.message, want)
		}
	default:
		want := strings.ReplaceAll(s.want, "{ns}", ns)
		if got.status != keptnv2.StatusSucceeded || got.result != keptnv2.ResultPass || !strings.HasPrefix(got.message, want) {
			t.Fatalf("step %d: finished %s/%s %q, want succeeded/pass starting %q", i, got.status, got.result, got.message, want)
		}
	}
}

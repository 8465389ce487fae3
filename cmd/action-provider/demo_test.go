//go:build !nosandbox

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The demo is the newcomer's first look: it must tell the whole story and
// succeed on the embedded defaults.
func TestDemoTellsTheWholeStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, logs bytes.Buffer
	if err := run(ctx, []string{"demo"}, &out, &logs); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), logs.String())
	}
	got := out.String()
	for _, want := range []string{
		"== 01-scale-up.json",
		"POST -> 202 accepted",
		"<- sh.keptn.event.action.started  (triggeredid 6de83495-4f83-481c-8dbe-fcceb2e0243b, shkeptncontext 08735340-6f9e-4b32-97ff-3b6c292bc509)",
		`"scaled deployment sockshop-production/carts from 1 to 2 replicas; rollout converged in `,
		"deployment sockshop-production/carts before: 1 replica, image docker.io/keptnexamples/carts:0.13.2\n",
		"deployment sockshop-production/carts after:  2 replicas, image docker.io/keptnexamples/carts:0.13.2",
		"kubectl describe deployment shows: Normal Scaled keptn-action-provider",
		"keptn remediation scale: 1 replica → 2 replicas (shkeptncontext 08735340-6f9e-4b32-97ff-3b6c292bc509",
		"== 02-scaling-legacy.json",
		`"scaled deployment sockshop-staging/carts-primary from 2 to 3 replicas`,
		"== 03-unknown-action.json",
		`POST -> 200 ignored: no handler for action "page-oncall"`,
		"<- no event: another provider may own this action",
		"== 04-malformed.json",
		"POST -> 200 rejected: invalid data: data.action must be an object, not string",
		"== 05-delete-pods.json",
		`"evicted 1 pod of statefulset sockshop-production/carts-db: carts-db-0 (CrashLoopBackOff); rollout converged in `,
		"statefulset sockshop-production/carts-db before: 1 replica, image docker.io/library/mongo:4.4.29, pod carts-db-0 not ready",
		"statefulset sockshop-production/carts-db after:  1 replica, image docker.io/library/mongo:4.4.29, pod carts-db-0 ready",
		"== 06-rollback.json",
		"   the provider waits for a person (kubectl events shows Warning ApprovalPending):",
		"   a person approves: kubectl annotate deployment/carts -n sockshop-production keptn-action-provider.io/approve=7e8f9a0b-1c2d-4e3f-9a4b-5c6d7e8f9a0b --overwrite",
		"kubectl describe deployment shows: Normal ApprovalGranted keptn-action-provider",
		`"rolled back deployment sockshop-production/carts from revision 2 to revision 1`,
		"deployment sockshop-production/carts after:  2 replicas, image docker.io/keptnexamples/carts:0.13.1",
		"== 07-restart.json",
		`"restarted deployment sockshop-production/carts (never restarted); rollout converged in `,
		"kubectl describe deployment shows: Normal Restarted keptn-action-provider",
		"== 08-scale-cooldown.json",
		"<- sh.keptn.event.action.finished status=succeeded result=fail",
		`"refused (cooldown): scale changed deployment sockshop-production/carts `,
		"== 09-health-check.json",
		`"job sockshop-production/health-check-82648d6aa5 completed in 0s; last 4 log lines of pod health-check-82648d6aa5-`,
		`  command: [\"curl\" \"-fsS\" \"--max-time\" \"10\"`,
		`\"http://carts:8080/health\"]`,
		"kubectl get job -n sockshop-production health-check-82648d6aa5: Complete, image curlimages/curl:8.11.1",
		"kubectl describe job shows: Normal JobCreated keptn-action-provider",
		"kubectl describe job shows: Normal JobCompleted keptn-action-provider",
		"All example events behaved as the Keptn contract requires.",
		// When not to act: one refusal of each gate.
		"== gates 1: freeze window",
		`"refused (freeze window): \"staging-release-freeze\" (from 2026-12-01T00:00:00Z to 2099-12-31T00:00:00Z) holds namespace sockshop-staging until 2099-12-31T00:00:00Z`,
		"== gates 2: alert hold",
		`"refused (alert hold): alert CartsDatabaseDown (active since 2026-11-24T03:00:00Z) is firing`,
		"== gates 3: gitops owner",
		`"refused (gitops): deployment sockshop-production/orders is managed by flux kustomization flux-system/apps`,
		"== gates 4: approval, rejected",
		"   a person rejects: kubectl annotate statefulset/carts-db -n sockshop-production keptn-action-provider.io/reject=6a7e5000-0000-4000-8000-000000000004 --overwrite",
		`"refused (approval): approval rejected`,
		"== gates 5: budget: the one action it allows",
		`"scaled statefulset sockshop-production/carts-db from 1 to 2 replicas`,
		"== gates 6: budget, spent",
		`"refused (budget): remediation budget spent: 1 of 1 actions in the last 10m across the cluster`,
		"Each gate refused with the rule and the setting that changes it.",
		// The morning after.
		"action-provider history --since 1h, on the sandbox:",
		"sockshop-production/Deployment/carts             rollback      ApprovalGranted",
		"keptn/Lease/action-provider-budget               Refuse        BudgetSpent",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", got)
	}
}

func TestDemoInDryRunChangesNothing(t *testing.T) {
	t.Setenv("DRY_RUN", "true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"demo"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`"dry run: would scale deployment sockshop-production/carts from 1 to 2 replicas"`,
		"deployment sockshop-production/carts after:  1 replica, image docker.io/keptnexamples/carts:0.13.2\n",
		"statefulset sockshop-production/carts-db after:  1 replica, image docker.io/library/mongo:4.4.29, pod carts-db-0 not ready",
		`"dry run: would roll back deployment sockshop-production/carts from revision 2 to revision 1`,
		`"dry run: would restart deployment sockshop-production/carts`,
		`"dry run: would evict 1 pod of statefulset sockshop-production/carts-db: carts-db-0 (CrashLoopBackOff)`,
		`"dry run: would create job sockshop-production/health-check-82648d6aa5: image curlimages/curl:8.11.1, command [\"curl\"]`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run demo lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "kubectl describe") {
		t.Errorf("a dry run recorded audit events:\n%s", out.String())
	}
}

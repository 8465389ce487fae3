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
		`"scaled deployment sockshop-production/carts from 1 to 2 replicas"`,
		"replicas of deployment sockshop-production/carts: 1 -> 2",
		"== 02-scaling-legacy.json",
		"replicas of deployment sockshop-production/carts: 2 -> 3",
		"== 03-unknown-action.json",
		`POST -> 200 ignored: no handler for action "page-oncall"`,
		"<- no event: another provider may own this action",
		"== 04-malformed.json",
		"POST -> 400 invalid data: data.action must be an object, not string",
		"All example events behaved as the Keptn contract requires.",
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
		"replicas of deployment sockshop-production/carts: 1 -> 1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run demo lacks %q:\n%s", want, out.String())
		}
	}
}

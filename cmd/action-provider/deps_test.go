package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestReleaseBuildLinksOnlyItsAPIGroups guards the release binary's size and
// idle memory (docs/performance.md#binary-size): built with -tags nosandbox,
// it must not import client-go's full clientset, whose scheme registers 56
// API groups at start-up, nor any API group the provider does not use.
func TestReleaseBuildLinksOnlyItsAPIGroups(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gobin, "list", "-deps", "-tags", "nosandbox,grpcnotrace", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"k8s.io/api/apps/v1": true, "k8s.io/api/autoscaling/v1": true, "k8s.io/api/autoscaling/v2": true,
		"k8s.io/api/batch/v1": true, "k8s.io/api/coordination/v1": true, "k8s.io/api/core/v1": true,
		"k8s.io/api/policy/v1": true,
		// batch/v1 names its types (the Job's workload reference).
		"k8s.io/api/scheduling/v1alpha3": true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == "k8s.io/client-go/kubernetes" || strings.HasPrefix(pkg, "k8s.io/client-go/kubernetes/"):
			t.Errorf("the release build imports %s: use internal/kube, and keep client-go's clientset to the sandbox and tests", pkg)
		case strings.HasPrefix(pkg, "k8s.io/api/") && !allowed[pkg]:
			t.Errorf("the release build imports %s, an API group the provider does not use", pkg)
		}
	}
}

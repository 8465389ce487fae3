package sandbox

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
)

func TestNewLoadsExampleSeed(t *testing.T) {
	cs, err := New(sandboxseed.FS)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()

	for _, ns := range []string{"sockshop-production", "sockshop-staging", "monitoring"} {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}

	deployments := []struct {
		ns, name string
		replicas int32
	}{
		{"sockshop-production", "carts", 1},
		{"sockshop-staging", "carts-primary", 2},
		{"sockshop-staging", "carts", 0},
	}
	for _, d := range deployments {
		got, err := cs.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("deployment %s/%s: %v", d.ns, d.name, err)
			continue
		}
		if got.Spec.Replicas == nil || *got.Spec.Replicas != d.replicas {
			t.Errorf("deployment %s/%s: spec.replicas = %v, want %d", d.ns, d.name, got.Spec.Replicas, d.replicas)
		}
		if got.Status.ReadyReplicas != d.replicas || got.Status.ObservedGeneration != got.Generation {
			t.Errorf("deployment %s/%s: seeded status is not converged: %+v", d.ns, d.name, got.Status)
		}
		if got.ResourceVersion == "" || got.UID == "" || got.CreationTimestamp.IsZero() {
			t.Errorf("deployment %s/%s: resourceVersion %q, uid %q, creationTimestamp %v: want all set",
				d.ns, d.name, got.ResourceVersion, got.UID, got.CreationTimestamp)
		}
	}

	sts, err := cs.AppsV1().StatefulSets("sockshop-production").Get(ctx, "carts-db", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("statefulset carts-db: %v", err)
	}
	if *sts.Spec.Replicas != 1 {
		t.Errorf("statefulset carts-db: spec.replicas = %d, want 1", *sts.Spec.Replicas)
	}
	if _, err := cs.AppsV1().DaemonSets("monitoring").Get(ctx, "node-exporter", metav1.GetOptions{}); err != nil {
		t.Errorf("daemonset node-exporter: %v", err)
	}
}

const namespace = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
`

func TestNewSeeds(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		wantErr []string // substrings of the error; nil means success
	}{
		{
			name: "documents, comments and empty documents",
			files: fstest.MapFS{
				"a.yaml": {Data: []byte("# a comment only\n---\n" + namespace + "---\n---\n" + deployment)},
				"b.yml":  {Data: []byte(strings.ReplaceAll(deployment, "name: web", "name: api"))},
			},
		},
		{
			name:    "no seed files",
			files:   fstest.MapFS{"README.md": {Data: []byte("hello")}},
			wantErr: []string{"no *.yaml or *.yml files"},
		},
		{
			name:    "malformed yaml",
			files:   fstest.MapFS{"bad.yaml": {Data: []byte(namespace + "---\nkind: [Deployment\n")}},
			wantErr: []string{"seed bad.yaml, document 2"},
		},
		{
			name:    "unknown kind",
			files:   fstest.MapFS{"crd.yaml": {Data: []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")}},
			wantErr: []string{"seed crd.yaml, document 1", `unknown kind "Widget"`, "example.com/v1"},
		},
		{
			name:    "missing kind",
			files:   fstest.MapFS{"nokind.yaml": {Data: []byte("apiVersion: v1\nmetadata:\n  name: x\n")}},
			wantErr: []string{"seed nokind.yaml, document 1"},
		},
		{
			name:    "typo in a field",
			files:   fstest.MapFS{"typo.yaml": {Data: []byte(namespace + "---\n" + strings.Replace(deployment, "replicas:", "replica:", 1))}},
			wantErr: []string{"seed typo.yaml, document 2", "replica"},
		},
		{
			name:    "no name",
			files:   fstest.MapFS{"anon.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata: {}\n")}},
			wantErr: []string{"seed anon.yaml, document 1", "no metadata.name"},
		},
		{
			name:    "same object twice",
			files:   fstest.MapFS{"a.yaml": {Data: []byte(deployment)}, "b.yaml": {Data: []byte("# again\n" + deployment)}},
			wantErr: []string{"seed b.yaml, document 1", "deployment demo/web", "already exists"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := New(tt.files)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				for _, name := range []string{"web", "api"} {
					if _, err := cs.AppsV1().Deployments("demo").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
						t.Errorf("deployment demo/%s: %v", name, err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("New: no error, want one containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

// A sandbox serves for as long as the service runs; the fake's record of
// every call must not grow with it.
func TestClusterForgetsItsCallLog(t *testing.T) {
	c, err := New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 * forgetEvery {
		if _, err := c.AppsV1().Deployments("sockshop-production").GetScale(context.Background(), "carts", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.fake.Actions()); n > forgetEvery {
		t.Errorf("%d calls recorded after %d; the log is not bounded", n, 10*forgetEvery)
	}
}

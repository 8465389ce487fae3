//go:build !nosandbox

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"

	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	examplecatalog "github.com/keptn-action-provider/action-provider/examples/catalog"
	"github.com/keptn-action-provider/action-provider/examples/events"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/gate/approval"
	"github.com/keptn-action-provider/action-provider/internal/gate/gitops"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// examplePrometheus is the address gates.yaml names, which the demo
// points at its stand-in.
const examplePrometheus = "http://prometheus.monitoring:9090"

// gateStep is one event of the demo's last part.
type gateStep struct {
	title, stage, action string
	value                any
	decision             string // what the person answers an approval with
}

// demoGates is the demo's last part: the same sandbox under
// examples/catalog/gates.yaml, one event for each gate that refuses, and
// one that spends the budget. It stands in for what the gates look at: a
// Prometheus with a firing alert, a Flux-managed Deployment, a namespace
// under an alert's hold.
func demoGates(ctx context.Context, out io.Writer, cfg config.Config, client kube.Interface, dyn dynamic.Interface,
	sink *eventsink.Sink, log logrus.FieldLogger, masker *secret.Masker) error {
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"success","data":{"alerts":[{"labels":{"alertname":"CartsDatabaseDown","namespace":"sockshop-dev","severity":"critical"},"state":"firing","activeAt":"2026-11-24T03:00:00Z","value":"1e+00"}]}}`)
	}))
	defer prom.Close()
	path, remove, err := writeCatalog(bytes.ReplaceAll(examplecatalog.Gates, []byte(examplePrometheus), []byte(prom.URL)))
	if err != nil {
		return err
	}
	defer remove()
	cfg.ActionsConfig = path
	if err := gateWorld(ctx, client, dyn); err != nil {
		return fmt.Errorf("prepare the sandbox for the gates: %w", err)
	}
	url, stop, err := serveDemo(ctx, cfg, client, dyn, log, masker)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Fprintf(out, "\nWhen not to act: the same sandbox under examples/catalog/gates.yaml (docs/gates.md), with a\n"+
		"stand-in Prometheus at %s where CartsDatabaseDown fires for sockshop-dev, and a Deployment\n"+
		"orders in sockshop-production that Flux's Kustomization flux-system/apps manages.\n\n", prom.URL)
	template, err := fs.ReadFile(events.FS, "01-scale-up.json")
	if err != nil {
		return err
	}
	steps := []gateStep{
		{"freeze window", "staging", "scale", map[string]string{"replicas": "+1"}, ""},
		{"alert hold", "dev", "restart", nil, ""},
		{"gitops owner", "production", "scale", map[string]string{"name": "orders", "replicas": "+1"}, ""},
		{"approval, rejected", "production", "delete-pods", map[string]any{"name": "carts-db", "kind": "statefulset", "all": true}, approval.RejectKey},
		{"budget: the one action it allows", "production", "scale", map[string]string{"name": "carts-db", "kind": "statefulset", "replicas": "+1"}, ""},
		{"budget, spent", "production", "restart", map[string]string{"name": "carts-db", "kind": "statefulset"}, ""},
	}
	for i, s := range steps {
		body, err := gateEvent(template, i+1, s)
		if err == nil {
			err = demoEvent(ctx, out, url, client, sink, fmt.Sprintf("gates %d: %s", i+1, s.title), body, s.decision)
		}
		if err != nil {
			return fmt.Errorf("gates %d (%s): %w", i+1, s.title, err)
		}
	}
	fmt.Fprintln(out, "Each gate refused with the rule and the setting that changes it.")
	return nil
}

// gateEvent makes step n's event from an example: its own id and
// context, the stage, the action and the value.
func gateEvent(template []byte, n int, s gateStep) ([]byte, error) {
	var ev map[string]any
	if err := json.Unmarshal(template, &ev); err != nil {
		return nil, err
	}
	ev["id"] = fmt.Sprintf("6a7e5000-0000-4000-8000-00000000000%d", n)
	ev["shkeptncontext"] = fmt.Sprintf("6a7e5c00-0000-4000-8000-00000000000%d", n)
	data := ev["data"].(map[string]any)
	data["stage"] = s.stage
	a := data["action"].(map[string]any)
	a["action"], a["name"] = s.action, s.title
	if s.value == nil {
		delete(a, "value")
	} else {
		a["value"] = s.value
	}
	return json.Marshal(ev)
}

// gateWorld adds to the sandbox what the gates look at: namespace
// sockshop-dev with a carts Deployment, and a Deployment orders in
// sockshop-production with the labels Flux's kustomize-controller puts on
// what it applies, and its Kustomization.
func gateWorld(ctx context.Context, client kube.Interface, dyn dynamic.Interface) error {
	optIn, err := guard.ParseLabel(guard.SuggestedOptInLabel)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sockshop-dev", Labels: map[string]string{optIn.Key: optIn.Value}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, d := range []*appsv1.Deployment{
		deployment("sockshop-dev", "carts", nil),
		deployment("sockshop-production", "orders", map[string]string{
			gitops.FluxKustomizeName: "apps", gitops.FluxKustomizeNamespace: "flux-system",
		}),
	} {
		if _, err := client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	k := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec": map[string]any{"interval": "10m", "path": "./apps", "prune": true,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
	}}
	_, err = dyn.Resource(gitops.Kustomizations).Namespace("flux-system").Create(ctx, k, metav1.CreateOptions{})
	return err
}

func deployment(ns, name string, labels map[string]string) *appsv1.Deployment {
	one := int32(1)
	l := map[string]string{"app": name}
	for k, v := range labels {
		l[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "docker.io/keptnexamples/" + name + ":0.13.1"}}},
			},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1},
	}
}

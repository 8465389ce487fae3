// Package kube finds the Kubernetes cluster the provider acts on, the way
// kubectl and controllers do: an explicit KUBECONFIG, the in-cluster service
// account, or the user's ~/.kube/config; and talks to it through a client
// of the six API groups the provider uses (Interface, NewForConfig).
package kube

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoCluster is returned by RESTConfig when no cluster is configured at
// all: no KUBECONFIG, not running in a pod and no ~/.kube/config.
var ErrNoCluster = errors.New("no Kubernetes cluster configured: KUBECONFIG is not set, not running in a pod, and there is no ~/.kube/config")

// Client settings. client-go's defaults (5 QPS, burst 10) are meant for
// kubectl-like one-shot tools; a provider handling bursts of remediations
// would be throttled client-side long before the API server minds.
const (
	userAgent = "keptn-action-provider"
	qps       = 50
	burst     = 100
)

// sourceKind says where a configuration comes from.
type sourceKind int

const (
	none sourceKind = iota
	kubeconfigEnv
	inCluster
	homeConfig
)

// source picks the configuration to use without reading any of it. The order
// is that of controller-runtime: KUBECONFIG first, since it is only ever set
// on purpose, while every pod gets KUBERNETES_SERVICE_HOST whether it wants to
// act on its own cluster or not.
func source(lookupEnv func(string) (string, bool), home string) (sourceKind, string) {
	if v, ok := lookupEnv("KUBECONFIG"); ok && v != "" {
		return kubeconfigEnv, v
	}
	host, _ := lookupEnv("KUBERNETES_SERVICE_HOST")
	port, _ := lookupEnv("KUBERNETES_SERVICE_PORT")
	if host != "" && port != "" {
		return inCluster, ""
	}
	if home != "" {
		p := filepath.Join(home, ".kube", "config")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return homeConfig, p
		}
	}
	return none, ""
}

// Available reports whether a cluster is configured, that is whether
// RESTConfig would try one rather than return ErrNoCluster. It reads no file
// and makes no network call, so it is cheap enough to pick between a real
// cluster and the sandbox at start-up.
func Available(lookupEnv func(string) (string, bool), home string) bool {
	kind, _ := source(lookupEnv, home)
	return kind != none
}

// RESTConfig returns the configuration for the cluster to act on and a short
// description of where it came from, for the start-up log: "KUBECONFIG=/a:/b",
// "in-cluster" or "/root/.kube/config".
//
// KUBECONFIG, like kubectl's, may list several files, which are merged; files
// that do not exist are skipped, but at least one must exist. When nothing is
// configured the error is ErrNoCluster.
//
// lookupEnv chooses the source; the in-cluster loader, rest.InClusterConfig,
// then reads the process environment and the service account files itself.
func RESTConfig(lookupEnv func(string) (string, bool), home string) (*rest.Config, string, error) {
	kind, where := source(lookupEnv, home)
	var (
		cfg  *rest.Config
		desc string
		err  error
	)
	switch kind {
	case kubeconfigEnv:
		desc = "KUBECONFIG=" + where
		cfg, err = fromKubeconfig(filepath.SplitList(where))
	case inCluster:
		desc = "in-cluster"
		cfg, err = rest.InClusterConfig()
	case homeConfig:
		desc = where
		cfg, err = fromKubeconfig([]string{where})
	default:
		return nil, "", ErrNoCluster
	}
	if err != nil {
		return nil, desc, fmt.Errorf("load Kubernetes configuration (%s): %w", desc, err)
	}
	cfg.UserAgent = userAgent
	cfg.QPS = qps
	cfg.Burst = burst
	return cfg, desc, nil
}

// fromKubeconfig merges the kubeconfig files that exist among paths and
// builds the configuration of their current context.
func fromKubeconfig(paths []string) (*rest.Config, error) {
	var existing []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			existing = append(existing, p)
		}
	}
	if len(existing) == 0 {
		return nil, fmt.Errorf("no kubeconfig file found: %w", fs.ErrNotExist)
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: existing}
	raw, err := rules.Load()
	if err != nil {
		return nil, err
	}
	// A direct client config, not the deferred one kubectl uses: that one
	// silently falls back to in-cluster when the files are empty, which would
	// hide a broken KUBECONFIG behind the pod's own cluster.
	return clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
}

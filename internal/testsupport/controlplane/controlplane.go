// Package controlplane connects the tests to the Kubernetes control plane
// test/controlplane/controlplane.sh starts, named by the env file it
// writes (make test passes it as CONTROLPLANE_ENV). Only tests import it;
// it is apart from testsupport so that the tests that need no cluster do
// not link client-go.
package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keptn-action-provider/action-provider/internal/envfile"
)

// EnvVar names the env file of a running control plane.
const EnvVar = "CONTROLPLANE_ENV"

// ControlPlane is a running control plane on loopback.
type ControlPlane struct {
	Env    map[string]string // the env file: KUBECONFIG, KUBE_APISERVER_URL, ...
	Config *rest.Config
	Client kubernetes.Interface
}

// Connect reads the env file at envPath, checks that the API server is on
// loopback (the tests create and delete namespaces) and waits, at most
// 30 s, until it answers /readyz.
func Connect(envPath string) (*ControlPlane, error) {
	env, err := envfile.Read(envPath)
	if err != nil {
		return nil, err
	}
	if env["KUBECONFIG"] == "" {
		return nil, fmt.Errorf("%s sets no KUBECONFIG", envPath)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", env["KUBECONFIG"], err)
	}
	if err := requireLoopback(cfg.Host); err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
			return &ControlPlane{Env: env, Config: cfg, Client: client}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the API server at %s is not reachable (started by controlplane.sh start?): %w", cfg.Host, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func requireLoopback(host string) error {
	u, err := url.Parse(host)
	if err != nil {
		return fmt.Errorf("API server URL %q: %w", host, err)
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
		return nil
	}
	return fmt.Errorf("refusing to run against %s: the tests create and delete namespaces, and only run against a loopback control plane", host)
}

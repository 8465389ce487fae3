package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keptn-action-provider/action-provider/internal/envfile"
)

// envVar names the env file of a running control plane.
const envVar = "CONTROLPLANE_ENV"

// Bounds of the waits. Every wait in these tests is bounded, so that a
// broken cluster fails the test rather than hanging it until go test's
// -timeout.
const (
	waitTimeout  = 60 * time.Second       // one condition: a rollout, an event, readiness
	testTimeout  = 4 * time.Minute        // one top-level test
	buildTimeout = 10 * time.Minute       // go build of the binary, cold cache
	pollInterval = 100 * time.Millisecond // between polls of the API server
)

// ledgerNamespace stands for the provider's own namespace (POD_NAMESPACE),
// where its Leases live; every provider in these tests shares it, as the
// replicas of one deployment would.
const ledgerNamespace = "action-provider-itest"

// controlPlane is the cluster the tests run against.
type controlPlane struct {
	env    map[string]string // DIR/env
	config *rest.Config
	client kubernetes.Interface
}

// Set once by TestMain, read-only afterwards.
var (
	cluster     *controlPlane // nil when CONTROLPLANE_ENV is unset, or on setupErr
	setupErr    error         // CONTROLPLANE_ENV is set, but the cluster or the binary cannot be used
	providerBin string        // the built action-provider binary
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	path := os.Getenv(envVar)
	if path == "" {
		return m.Run() // every test skips
	}
	tmp, err := os.MkdirTemp("", "action-provider-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)

	cluster, setupErr = connect(path)
	if setupErr == nil {
		providerBin, setupErr = buildProvider(filepath.Join(tmp, "action-provider"))
	}
	if setupErr != nil {
		cluster = nil
		// Each test also fails with this, so that go test's summary names them.
		fmt.Fprintf(os.Stderr, "integration setup failed: %v\n", setupErr)
	}
	return m.Run()
}

// requireCluster skips the test when no control plane is configured and
// fails it when one is configured but unusable.
func requireCluster(t *testing.T) *controlPlane {
	t.Helper()
	if cluster == nil && setupErr == nil {
		t.Skip("no control plane: run through make test, which starts one")
	}
	if setupErr != nil {
		t.Fatalf("%s=%s: %v", envVar, os.Getenv(envVar), setupErr)
	}
	return cluster
}

// testContext bounds a whole test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// connect reads the control plane's env file, checks the cluster is on
// loopback (these tests create and delete namespaces) and waits, bounded,
// until its API server answers /readyz.
func connect(envPath string) (*controlPlane, error) {
	env, err := envfile.Read(envPath)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"KUBECONFIG", "KUBE_APISERVER_URL"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s sets no %s", envPath, k)
		}
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
		_, err = client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			_, err = client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ledgerNamespace}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("create namespace %s: %w", ledgerNamespace, err)
			}
			return &controlPlane{env: env, config: cfg, client: client}, nil
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
	return fmt.Errorf("refusing to run against %s: the integration tests create and delete namespaces, and only run against a loopback control plane", host)
}

// buildProvider builds ./cmd/action-provider from the module root to out.
func buildProvider(out string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/action-provider")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/action-provider: %w\n%s", err, b)
	}
	return out, nil
}

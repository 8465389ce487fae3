package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
	"github.com/keptn-action-provider/action-provider/internal/testsupport/controlplane"
)

// envVar names the env file of a running control plane.
const envVar = controlplane.EnvVar

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
	client kubernetes.Interface // the tests' own, for fixtures
	api    kube.Interface       // the provider's, as its composition root builds it
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
		providerBin, setupErr = testsupport.BuildProvider(filepath.Join(tmp, "action-provider"), buildTimeout)
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
		testsupport.Skip(t, "no control plane: "+envVar+" is not set (the env file of test/controlplane/controlplane.sh start DIR)")
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

// connect connects to the control plane of the env file and creates the
// namespace of the providers' records.
func connect(envPath string) (*controlPlane, error) {
	c, err := controlplane.Connect(envPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ledgerNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", ledgerNamespace, err)
	}
	api, err := kube.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	return &controlPlane{env: c.Env, config: c.Config, client: c.Client, api: api}, nil
}

package kube

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster:
    server: https://demo.example:6443
users:
- name: demo
  user:
    token: secret
contexts:
- name: demo
  context:
    cluster: demo
    user: demo
current-context: demo
`

// env returns a lookupEnv backed by a map, so tests never see the real
// environment (which, in CI running in a pod, has KUBERNETES_SERVICE_HOST).
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRESTConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "good"), kubeconfig)
	broken := writeFile(t, filepath.Join(dir, "broken"), "current-context: nowhere\n")
	missing := filepath.Join(dir, "missing")

	home := t.TempDir()
	homeConfig := writeFile(t, filepath.Join(home, ".kube", "config"), kubeconfig)
	emptyHome := t.TempDir()

	tests := []struct {
		name       string
		env        map[string]string
		home       string
		wantSource string
		wantHost   string
		wantErr    error // checked with errors.Is when set
		wantAnyErr bool
	}{
		{
			name:       "KUBECONFIG single file",
			env:        map[string]string{"KUBECONFIG": good},
			home:       emptyHome,
			wantSource: "KUBECONFIG=" + good,
			wantHost:   "https://demo.example:6443",
		},
		{
			name:       "KUBECONFIG list skips missing files",
			env:        map[string]string{"KUBECONFIG": missing + string(filepath.ListSeparator) + good},
			home:       emptyHome,
			wantSource: "KUBECONFIG=" + missing + string(filepath.ListSeparator) + good,
			wantHost:   "https://demo.example:6443",
		},
		{
			name:       "KUBECONFIG wins over in-cluster and home",
			env:        map[string]string{"KUBECONFIG": good, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			home:       home,
			wantSource: "KUBECONFIG=" + good,
			wantHost:   "https://demo.example:6443",
		},
		{
			name:       "KUBECONFIG naming only missing files is an error, not ErrNoCluster",
			env:        map[string]string{"KUBECONFIG": missing},
			home:       home,
			wantSource: "KUBECONFIG=" + missing,
			wantErr:    fs.ErrNotExist,
		},
		{
			name:       "KUBECONFIG with an unknown context",
			env:        map[string]string{"KUBECONFIG": broken},
			home:       emptyHome,
			wantSource: "KUBECONFIG=" + broken,
			wantAnyErr: true,
		},
		{
			name:       "empty KUBECONFIG is unset",
			env:        map[string]string{"KUBECONFIG": ""},
			home:       home,
			wantSource: homeConfig,
			wantHost:   "https://demo.example:6443",
		},
		{
			// Outside a pod there is no service account token, so the
			// in-cluster loader fails; what matters is that it was chosen.
			name:       "in-cluster",
			env:        map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			home:       home,
			wantSource: "in-cluster",
			wantAnyErr: true,
		},
		{
			name:       "host without port is not in-cluster",
			env:        map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			home:       home,
			wantSource: homeConfig,
			wantHost:   "https://demo.example:6443",
		},
		{
			name:       "home config",
			env:        map[string]string{},
			home:       home,
			wantSource: homeConfig,
			wantHost:   "https://demo.example:6443",
		},
		{
			name:    "nothing configured",
			env:     map[string]string{},
			home:    emptyHome,
			wantErr: ErrNoCluster,
		},
		{
			name:    "no home",
			env:     map[string]string{},
			home:    "",
			wantErr: ErrNoCluster,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantSource == "in-cluster" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
				t.Skip("running in a pod: the in-cluster loader would succeed")
			}
			cfg, source, err := RESTConfig(env(tt.env), tt.home)
			if source != tt.wantSource {
				t.Errorf("source = %q, want %q", source, tt.wantSource)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.wantAnyErr:
				if err == nil {
					t.Fatal("err = nil, want an error")
				}
				if errors.Is(err, ErrNoCluster) {
					t.Fatalf("err = %v, must not be ErrNoCluster when a source was configured", err)
				}
				if !strings.Contains(err.Error(), tt.wantSource) {
					t.Errorf("err = %q, want it to name the source %q", err, tt.wantSource)
				}
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			if cfg.Host != tt.wantHost {
				t.Errorf("Host = %q, want %q", cfg.Host, tt.wantHost)
			}
			if cfg.BearerToken != "secret" {
				t.Errorf("BearerToken = %q, want the kubeconfig's token", cfg.BearerToken)
			}
			if cfg.UserAgent != userAgent || cfg.QPS != qps || cfg.Burst != burst {
				t.Errorf("UserAgent, QPS, Burst = %q, %v, %d; want %q, %v, %d",
					cfg.UserAgent, cfg.QPS, cfg.Burst, userAgent, float32(qps), burst)
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".kube", "config"), kubeconfig)
	// A directory where the config file should be is not a config.
	dirHome := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dirHome, ".kube", "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	emptyHome := t.TempDir()

	tests := []struct {
		name string
		env  map[string]string
		home string
		want bool
	}{
		{"nothing", map[string]string{}, emptyHome, false},
		{"no home", map[string]string{}, "", false},
		{"home config", map[string]string{}, home, true},
		{"home config is a directory", map[string]string{}, dirHome, false},
		{"in-cluster", map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, emptyHome, true},
		{"in-cluster host only", map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, emptyHome, false},
		// Set on purpose, so RESTConfig reports the broken path rather than
		// the caller silently falling back to the sandbox.
		{"KUBECONFIG to a missing file", map[string]string{"KUBECONFIG": filepath.Join(emptyHome, "missing")}, emptyHome, true},
		{"empty KUBECONFIG", map[string]string{"KUBECONFIG": ""}, emptyHome, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Available(env(tt.env), tt.home); got != tt.want {
				t.Errorf("Available() = %v, want %v", got, tt.want)
			}
		})
	}
}

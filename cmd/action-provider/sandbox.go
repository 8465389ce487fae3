//go:build !nosandbox

package main

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/action/job"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
)

const sandboxBuild = "with sandbox"

// startSandbox builds the in-memory cluster, and says so loudly: nothing a
// sandboxed action does reaches a real cluster.
func startSandbox(cfg config.Config, log logrus.FieldLogger, why string) (kube.Interface, dynamic.Interface, error) {
	var seed fs.FS = sandboxseed.FS
	from := "built-in examples/sandbox"
	if cfg.SandboxSeed != "" {
		seed, from = os.DirFS(cfg.SandboxSeed), cfg.SandboxSeed
	}
	client, err := sandbox.New(seed)
	if err != nil {
		return nil, nil, fmt.Errorf("start sandbox from %s (SANDBOX_SEED): %w", from, err)
	}
	log.WithFields(logrus.Fields{"reason": why, "seed": from}).
		Warn("SANDBOX MODE: actions change an in-memory cluster, not a real one. Set KUBECONFIG, or SANDBOX=false to require a cluster")
	return client, sandbox.NewDynamic(), nil
}

// jobLogs is the sandbox's stand-in for a kubelet's logs: it says what a
// job's container would have run. Outside the sandbox, nil: the API server.
func jobLogs(client kube.Interface, sandboxed bool) job.LogReader {
	if !sandboxed {
		return nil
	}
	return sandbox.JobLogs{Client: client}
}

//go:build nosandbox

package main

import (
	"context"
	"errors"
	"io"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action/job"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/kube"
)

const sandboxBuild = "without sandbox"

var errNoSandbox = errors.New("this binary was built without the sandbox (-tags nosandbox); configure a cluster with KUBECONFIG or run in a pod")

func startSandbox(config.Config, logrus.FieldLogger, string) (kube.Interface, dynamic.Interface, error) {
	return nil, nil, errNoSandbox
}

func demo(context.Context, io.Writer, io.Writer) error { return errNoSandbox }

func jobLogs(kube.Interface, bool) job.LogReader { return nil }

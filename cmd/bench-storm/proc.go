package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/childproc"
)

// proc is the provider as a child process (childproc), its output in a file.
type proc struct{ *childproc.Proc }

func startProc(logPath, bin string, env []string) (*proc, error) {
	p, err := childproc.Start(logPath, bin, nil, env)
	if err != nil {
		return nil, err
	}
	return &proc{p}, nil
}

// stop sends SIGTERM and waits up to grace for the exit, then kills.
// It reports whether the process exited by itself, with status 0.
func (p *proc) stop(grace time.Duration) (clean bool) {
	return !p.Stop(grace) && p.Err() == nil
}

// tail is the last n lines of the process's output.
func (p *proc) tail(n int) string { return p.Tail(filepath.Base(p.LogPath), n) }

// awaitReady polls url until it answers 200, the process exits or ctx ends.
func (p *proc) awaitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		if p.Exited() {
			return fmt.Errorf("the provider exited (%v)\n%s", p.Err(), p.tail(20))
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the provider is not ready: %w\n%s", ctx.Err(), p.tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// clientLimits are the provider's client-side limits of requests to the
// API server. A build with KUBE_API_QPS and KUBE_API_BURST lists them,
// with their defaults, in --help.
type clientLimits struct {
	qps          float64
	burst        int
	configurable bool
	version      string // what --version prints
}

// Without those variables, internal/kube sets these, fixed.
const fixedQPS, fixedBurst = 50, 100

func inspectBinary(ctx context.Context, bin string) (clientLimits, error) {
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		return clientLimits{}, fmt.Errorf("%s --help: %w", bin, err)
	}
	l := clientLimits{qps: fixedQPS, burst: fixedBurst}
	found := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "KUBE_API_QPS":
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				l.qps, found = v, found+1
			}
		case "KUBE_API_BURST":
			if v, err := strconv.Atoi(f[1]); err == nil {
				l.burst, found = v, found+1
			}
		}
	}
	l.configurable = found == 2
	v, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return clientLimits{}, fmt.Errorf("%s --version: %w", bin, err)
	}
	l.version = strings.TrimSpace(string(v))
	return l, nil
}

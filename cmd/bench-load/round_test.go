package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

// TestMain lets a round re-run the test binary as the floor, as it re-runs
// bench-load.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		os.Exit(floorMain())
	}
	os.Exit(m.Run())
}

func TestFloorRound(t *testing.T) {
	for _, mode := range []string{modePooled, modeDistributor} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o := options{mode: mode, concurrency: 4, warmup: 100 * time.Millisecond, duration: 400 * time.Millisecond}
			r, err := measureRound(ctx, o, targetFloor, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", r)
			if r.Finished == 0 || r.StartedEvents != r.FinishedEvents || r.StartedEvents < r.Finished {
				t.Errorf("measured %d, started %d, finished %d", r.Finished, r.StartedEvents, r.FinishedEvents)
			}
			if r.ProviderCPUMicros <= 0 || r.ToolCPUMicros <= 0 {
				t.Errorf("CPU per event: target %.0f us, tool %.0f us", r.ProviderCPUMicros, r.ToolCPUMicros)
			}
			if r.IdleRSSAnonMiB <= 0 || r.IdleRSSFileMiB <= 0 || r.IdleRSSAnonMiB+r.IdleRSSFileMiB > r.IdleRSSMiB+0.01 || r.PeakRSSMiB < r.IdleRSSMiB {
				t.Errorf("memory: idle %.1f MiB (anon %.1f, file %.1f), peak %.1f", r.IdleRSSMiB, r.IdleRSSAnonMiB, r.IdleRSSFileMiB, r.PeakRSSMiB)
			}
			conns := r.ReceiverConnections
			if mode == modePooled && conns > int64(o.concurrency) {
				t.Errorf("pooled: %d connections to the floor for %d senders", conns, o.concurrency)
			}
			// One per forward; each sender's last may have been cut short
			// by the end of the round before the floor answered it.
			if mode == modeDistributor && (conns < r.StartedEvents || conns > r.StartedEvents+int64(o.concurrency)) {
				t.Errorf("distributor: %d connections for %d events", conns, r.StartedEvents)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestTargets(t *testing.T) {
	for _, c := range []struct {
		o    options
		want []string
		err  bool
	}{
		{o: options{target: targetBoth}, want: []string{targetFloor, targetProvider}},
		{o: options{target: targetAll, templateBin: "/bin/true"}, want: []string{targetFloor, targetTemplate, targetProvider}},
		{o: options{target: targetTemplate, templateBin: "/bin/true"}, want: []string{targetTemplate}},
		{o: options{target: targetAll}, err: true},
		{o: options{target: targetTemplate}, err: true},
		{o: options{target: "floors"}, err: true},
		{o: options{target: targetBoth, templateBin: "/bin/true"}, err: true},
		{o: options{target: targetProvider, templateBin: "/bin/true"}, err: true},
	} {
		o := c.o
		o.transport, o.mode, o.rounds, o.concurrency, o.duration, o.replicas = "http", modePooled, 1, 1, time.Second, 1
		err := o.validate(map[string]bool{})
		if (err != nil) != c.err {
			t.Errorf("validate(-target %s, -template-binary %q) = %v, want error %v", o.target, o.templateBin, err, c.err)
		}
		if err == nil && !slices.Equal(targetsOf(o), c.want) {
			t.Errorf("targetsOf(-target %s) = %v, want %v", o.target, targetsOf(o), c.want)
		}
	}
}

func TestRatios(t *testing.T) {
	m := map[string]map[string]float64{
		targetFloor:    {"events_per_second": 6000},
		targetProvider: {"events_per_second": 4500},
	}
	if got := ratios(m, targetFloor)["events_per_second"]; got != 0.75 {
		t.Errorf("provider÷floor = %v, want 0.75", got)
	}
	if got := ratios(m, targetTemplate); got != nil {
		t.Errorf("provider÷template without a template round = %v, want nil", got)
	}
}

func TestTriggerTemplate(t *testing.T) {
	for target, action := range map[string]string{targetProvider: `"action":"scale"`, targetFloor: `"action":"scale"`, targetTemplate: `"action":"action-xyz"`} {
		if b := triggerTemplate(target); !bytes.Contains(b, []byte(action)) || !json.Valid(b) {
			t.Errorf("%s: %s, want valid JSON with %s", target, b, action)
		}
	}
}

// TestGOGCAsDeployed: bench-load runs the provider with the GOGC that the
// chart and deploy/ give it, or its figures are not the deployed ones.
func TestGOGCAsDeployed(t *testing.T) {
	for file, want := range map[string]string{
		"../../chart/values.yaml":        "\ngoGC: " + providerGOGC + "\n",
		"../../deploy/service.yaml":      "- name: GOGC\n              value: \"" + providerGOGC + "\"\n",
		"../../deploy/service-nats.yaml": "- name: GOGC\n              value: \"" + providerGOGC + "\"\n",
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s does not set GOGC=%s, which bench-load measures with", file, providerGOGC)
		}
	}
}

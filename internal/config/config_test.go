package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatalf("Load with no environment: %v", err)
	}
	if c.RcvPort != 8080 || c.RcvPath != "/" || c.EventBroker != "http://localhost:8081/event" ||
		c.Sandbox != SandboxAuto || c.DryRun || c.LogLevel != "info" || c.LogFormat != FormatJSON {
		t.Errorf("defaults differ from the documented ones: %+v", c)
	}
	if c.ActionTimeout != 5*time.Minute || c.ShutdownGrace != time.Minute || c.DeliveryRetryTime != 2*time.Minute {
		t.Errorf("durations: %v %v %v", c.ActionTimeout, c.ShutdownGrace, c.DeliveryRetryTime)
	}
}

func TestValidateReportsEveryProblemByName(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	c.RcvPath = "events"
	c.Workers = 0
	c.LogFormat = "xml"
	c.ShutdownGrace = 0
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken configuration")
	}
	for _, want := range []string{
		`invalid RCV_PATH=events: must start with "/"`,
		"invalid MAX_CONCURRENT_ACTIONS=0: must be at least 1",
		"invalid LOG_FORMAT=xml: must be json or text",
		"invalid SHUTDOWN_GRACE=0s: must be a positive duration",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLoadParsesTypedValues(t *testing.T) {
	t.Setenv("ACTION_TIMEOUT", "90s")
	t.Setenv("VERIFY_TIMEOUT", "60s")
	t.Setenv("DRY_RUN", "true")
	t.Setenv("SCALE_MAX_REPLICAS", "12")
	t.Setenv("ALLOWED_NAMESPACES", "sockshop-*,podtato-production")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ActionTimeout != 90*time.Second || !c.DryRun || c.ScaleMaxReplicas != 12 {
		t.Errorf("got %v %v %v", c.ActionTimeout, c.DryRun, c.ScaleMaxReplicas)
	}
	if got := strings.Join(c.AllowedNamespaces, "|"); got != "sockshop-*|podtato-production" {
		t.Errorf("ALLOWED_NAMESPACES read as %q", got)
	}
}

func TestValidateGuardrails(t *testing.T) {
	t.Setenv("ALLOWED_NAMESPACES", "sockshop-[")
	t.Setenv("POD_NAMESPACE", "Keptn")
	t.Setenv("VERIFY_TIMEOUT", "10m")
	t.Setenv("ACTION_COOLDOWN", "-1s")
	_, err := Load()
	for _, want := range []string{
		`invalid ALLOWED_NAMESPACES=sockshop-[: "sockshop-[" is not a valid glob`,
		"invalid POD_NAMESPACE=Keptn",
		"invalid VERIFY_TIMEOUT=10m0s: must be below ACTION_TIMEOUT (5m0s)",
		"invalid ACTION_COOLDOWN=-1s: must not be negative",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// Settings that would break the provider's promises to Keptn are refused:
// a shutdown the kubelet cuts short, a dedup window shorter than an event
// may still be running, a queue wait that leaves the distributor no time
// to re-POST.
func TestValidateLifecycleBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" means valid
	}{
		{"defaults", nil, ""},
		{"shutdown longer than the pod's grace", map[string]string{"SHUTDOWN_GRACE": "85s"},
			"invalid TERMINATION_GRACE_PERIOD=1m30s: must exceed the shutdown's bound, 1m35s (SHUTDOWN_GRACE + SHUTDOWN_FLUSH)"},
		{"nats flushes twice", map[string]string{"TRANSPORT": "nats", "SHUTDOWN_GRACE": "70s"},
			"(SHUTDOWN_GRACE + 2 × SHUTDOWN_FLUSH, with TRANSPORT=nats)"},
		{"nats defaults fit", map[string]string{"TRANSPORT": "nats"}, ""},
		{"dedup window too short", map[string]string{"DEDUP_TTL": "6m"},
			"invalid DEDUP_TTL=6m0s: must be at least ACTION_TIMEOUT + EVENTBROKER_RETRY_TIMEOUT (7m0s)"},
		{"queue wait too long", map[string]string{"QUEUE_WAIT": "2s"}, "invalid QUEUE_WAIT=2s: must be at most 1.9s"},
		{"queue wait at the bound", map[string]string{"QUEUE_WAIT": "1.9s"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Load: %v; want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Load: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

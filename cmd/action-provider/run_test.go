package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHelpListsEveryVariableAndTheREADMEAgrees(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil {
		t.Fatalf("--help: %v", err)
	}
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile(`(?m)^([A-Z_]+)\s+(\S+)\s+(.+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(rows) < 20 {
		t.Fatalf("--help lists %d variables:\n%s", len(rows), out.String())
	}
	for _, r := range rows {
		name, def, meaning := r[1], r[2], strings.TrimSpace(r[3])
		if name == "VARIABLE" {
			continue
		}
		if def != "(empty)" {
			def = "`" + def + "`"
		}
		row := "| `" + name + "` | " + def + " | " + meaning + " |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README's configuration table lacks or differs from:\n%s", row)
		}
	}
}

func TestMakeHelpAndREADMEAgree(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.Command("make", "-s", "-C", "../..", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	readme, _ := os.ReadFile("../../README.md")
	for _, m := range regexp.MustCompile(`make (\S+)`).FindAllStringSubmatch(string(out), -1) {
		if !strings.Contains(string(readme), "`make "+m[1]+"`") {
			t.Errorf("README does not mention `make %s`", m[1])
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "action-provider dev (go") {
		t.Errorf("--version printed %q", out.String())
	}
}

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	for _, tc := range []struct{ name, value, says string }{
		{"RCV_PORT", "eighty", `invalid RCV_PORT="eighty": expected a int`},
		{"RCV_PORT", "70000", "invalid RCV_PORT=70000: must be a port number"},
		{"ACTION_TIMEOUT", "5", `invalid ACTION_TIMEOUT="5"`},
		{"EVENTBROKER", "localhost:8081", "invalid EVENTBROKER=localhost:8081: must be an http:// or https:// URL"},
		{"SANDBOX", "maybe", "invalid SANDBOX=maybe: must be auto, true or false"},
		{"LOG_LEVEL", "loud", "invalid LOG_LEVEL=loud"},
		{"SCALE_MAX_REPLICAS", "0", "invalid SCALE_MAX_REPLICAS=0: must not be below SCALE_MIN_REPLICAS (1)"},
		{"DRY_RUN", "perhaps", `invalid DRY_RUN="perhaps"`},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, nil, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("run = %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	err := run(context.Background(), []string{"frobnicate"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Fatalf("run = %v", err)
	}
}

func TestLintExamplesAndABrokenFile(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"lint", "../../examples/keptn/remediation.yaml"}, &out, io.Discard); err != nil {
		t.Fatalf("lint of the example: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "remediation.yaml: ok (checked against the built-in catalog)") {
		t.Errorf("lint output: %s", out.String())
	}

	broken := filepath.Join(t.TempDir(), "remediation.yaml")
	if err := os.WriteFile(broken, []byte(`apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata: {name: carts}
spec:
  remediations:
    - problemType: Failure rate increase
      actionsOnOpen:
        - {action: scale, name: up, value: {replicas: "many"}}
        - {action: restartt, name: typo}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"lint", broken}, &out, io.Discard)
	if err == nil || err.Error() != "lint: 2 problem(s) in 1 file(s)" {
		t.Errorf("lint of a broken file: %v", err)
	}
	for _, want := range []string{
		`actionsOnOpen[0] "scale": the handler would refuse this value: "replicas": "many" is not a whole number of replicas`,
		`actionsOnOpen[1] "restartt": no catalog entry answers to action "restartt"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lint output lacks %q:\n%s", want, out.String())
		}
	}
}

// Package promtool unit-tests the chart's alert rules with Prometheus's
// promtool: chart/files/prometheus-rules.yaml, rendered as the chart's
// PrometheusRule renders it (with the chart's default values, release
// keptn-action-provider in namespace keptn), is checked with `promtool check
// rules` and run against the series in *.test.yaml with `promtool test
// rules`. test/deploy.sh runs the same tests on helm's own render.
//
// promtool comes from test/promtool/promtool.sh (built once with go
// install, cached); make test passes it in PROMTOOL_BIN.
package promtool

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"

	"sigs.k8s.io/yaml"

	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

const (
	chartDir  = "../../chart"
	rulesFile = "files/prometheus-rules.yaml"
	// What test/deploy.sh installs, and *.test.yaml's series carry.
	release   = "keptn-action-provider"
	namespace = "keptn"
)

// promtool is PROMTOOL_BIN; without it the test skips (fails under make
// test).
func promtool(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PROMTOOL_BIN")
	if bin == "" {
		testsupport.Skip(t, "no promtool: PROMTOOL_BIN is not set (PROMTOOL_BIN=$(test/promtool/promtool.sh) go test ./test/promtool)")
	}
	return bin
}

// Render renders the chart's rule file as the chart's
// templates/prometheusrule.yaml does, with tpl: the rule file may use only
// what this renderer offers too (.Values, .Release, printf and include
// "ap.fullname"), and so renders the same under both.
func Render(values map[string]any) (string, error) {
	raw, err := os.ReadFile(filepath.Join(chartDir, rulesFile))
	if err != nil {
		return "", err
	}
	tpl, err := template.New(rulesFile).Option("missingkey=error").Funcs(template.FuncMap{
		"include": func(name string, _ any) (string, error) {
			if name != "ap.fullname" {
				return "", fmt.Errorf("include %q: the rule file may include only ap.fullname", name)
			}
			return release, nil // release name contains the chart's name
		},
	}).Parse(string(raw))
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	err = tpl.Execute(&out, map[string]any{
		"Values":  values,
		"Release": map[string]any{"Name": release, "Namespace": namespace},
	})
	return out.String(), err
}

// defaults are chart/values.yaml.
func defaults(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("chart/values.yaml: %v", err)
	}
	return v
}

// ruleFile is the part of a rule file the tests look at.
type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestAlertRulesWithPromtool(t *testing.T) {
	bin := promtool(t)
	rules, err := Render(defaults(t))
	if err != nil {
		t.Fatalf("render %s: %v", rulesFile, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := filepath.Glob("*.test.yaml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in test/promtool (%v)", err)
	}
	// The tests name rules.yaml beside them: copies go where it is.
	var args []string
	for _, f := range tests {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}

	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s\nthe rules, rendered:\n%s", strings.Join(args, " "), err, out, rules)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), bytes.TrimSpace(out))
	}
	run("check", "rules", "rules.yaml")
	run(append([]string{"test", "rules"}, args...)...)

	// Every alert has a test that expects it to fire, and a runbook.
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(rules), &rf); err != nil {
		t.Fatal(err)
	}
	var tested strings.Builder
	for _, f := range tests {
		raw, _ := os.ReadFile(f)
		tested.Write(raw)
	}
	doc, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			firing := regexp.MustCompile(`(?m)^\s+- exp_labels:\s*\n(\s+\S.*\n)*?\s+alertname: ` + regexp.QuoteMeta(r.Alert) + `\s*$`)
			if !firing.Match([]byte(tested.String())) {
				t.Errorf("alert %s: no test in test/promtool/*.test.yaml expects it to fire", r.Alert)
			}
			if !strings.Contains(tested.String(), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s: no test in test/promtool/*.test.yaml evaluates it", r.Alert)
			}
			anchor := strings.ToLower(r.Alert)
			if want := "#" + anchor; !strings.HasSuffix(r.Annotations["runbook_url"], want) {
				t.Errorf("alert %s: runbook_url %q does not end in %s", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(r.Alert) + `\s*$`).Match(doc) {
				t.Errorf("alert %s: docs/observability.md has no heading %q for its runbook_url", r.Alert, r.Alert)
			}
			for _, k := range []string{"severity"} {
				if r.Labels[k] == "" {
					t.Errorf("alert %s: no %s label", r.Alert, k)
				}
			}
			for _, k := range []string{"summary", "description"} {
				if r.Annotations[k] == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, k)
				}
			}
		}
	}
	sort.Strings(alerts)
	t.Logf("%d alerts: %s", len(alerts), strings.Join(alerts, ", "))
}

// The values reach the rules: a changed for, window, threshold and
// severity show in the render (and promtool still accepts it).
func TestAlertRulesFollowTheValues(t *testing.T) {
	bin := promtool(t)
	v := defaults(t)
	a := v["prometheusRule"].(map[string]any)["alerts"].(map[string]any)
	a["queueFull"].(map[string]any)["for"] = "17m"
	a["actionsFailing"].(map[string]any)["failures"] = 7
	a["actionsFailing"].(map[string]any)["window"] = "2h"
	a["noReplicaReady"].(map[string]any)["severity"] = "page"
	rules, err := Render(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"for: 17m", `status="errored"}[2h])) >= 7`, "severity: page"} {
		if !strings.Contains(rules, want) {
			t.Errorf("the render lacks %q:\n%s", want, rules)
		}
	}
	f := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

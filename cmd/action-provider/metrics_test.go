//go:build !nosandbox

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/eventsink"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

// The chart's Grafana dashboard and alert rules name metrics; each must be
// one the provider serves on /metrics (or, for the few listed in external,
// one that another exporter serves), so that no panel stays empty and no
// alert waits forever on a series nobody writes. The provider runs in
// sandbox mode with every gate configured (examples/catalog/gates.yaml), so
// that the budget's metrics exist too, and is sent a scale event (its
// started event refused once by the broker, so that a retry is counted)
// and the same scale again, which a rule refuses (the budget, max 1): the
// labelled families, which appear with their first sample, are then all
// there.
func TestDashboardAndAlertsNameOnlyServedMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var refusedOnce atomic.Bool
	sink := &eventsink.Sink{Refuse: func() int {
		if refusedOnce.CompareAndSwap(false, true) {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	rcvPort, opsPort := testsupport.FreePort(t), testsupport.FreePort(t)
	for k, v := range map[string]string{
		"SANDBOX": "true", "ACTIONS_CONFIG": "../../examples/catalog/gates.yaml",
		"RCV_HOST": "127.0.0.1", "RCV_PORT": strconv.Itoa(rcvPort),
		"OPS_HOST": "127.0.0.1", "OPS_PORT": strconv.Itoa(opsPort),
		"EVENTBROKER": testsupport.ServeSink(t, sink), "LOG_FORMAT": "json",
		"ALLOWED_NAMESPACES": "", "NAMESPACE_OPT_IN_LABEL": "",
	} {
		t.Setenv(k, v)
	}
	var logs testsupport.SyncBuffer
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(serveCtx, &logs) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	ops := fmt.Sprintf("http://127.0.0.1:%d", opsPort)
	if !testsupport.Poll(ctx, 30*time.Second, func() bool { return testsupport.HTTPStatus(ctx, ops+"/readyz") == http.StatusOK }) {
		t.Fatalf("the provider did not become ready\n%s", logs.String())
	}

	// A scale, and the same scale again: refused by the cooldown.
	for i, name := range []string{"01-scale-up.json", "01-scale-up.json"} {
		ev := testsupport.Example(t, name)
		id := fmt.Sprintf("metrics-test-%d-%d", i, time.Now().UnixNano())
		ev["id"], ev["shkeptncontext"] = id, "ctx-"+id
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", rcvPort), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %s\n%s", name, resp.Status, logs.String())
		}
		fin, err := sink.AwaitFinished(ctx, id)
		if err != nil {
			t.Fatalf("no finished event for %s: %v\n%s", name, err, logs.String())
		}
		t.Logf("%s: finished %s/%s: %s", name, fin.Data.Status, fin.Data.Result, fin.Data.Message)
	}

	have := families(t, ctx, ops+"/metrics")
	for _, must := range []string{"action_provider_refusals_total", "action_provider_delivery_retries_total", "action_provider_budget_spent"} {
		if !have[must] {
			t.Fatalf("the run did not make %s appear; the test's events no longer do what it needs", must)
		}
	}

	// kube-state-metrics' Deployment metrics, for ActionProviderNoReplicaReady.
	external := map[string]bool{
		"kube_deployment_spec_replicas":             true,
		"kube_deployment_status_replicas_available": true,
	}
	named := map[string][]string{} // metric -> where
	for _, src := range []struct{ file, what string }{
		{"../../chart/dashboards/keptn-action-provider.json", "dashboard"},
		{"../../chart/files/prometheus-rules.yaml", "rules"},
	} {
		raw, err := os.ReadFile(src.file)
		if err != nil {
			t.Fatal(err)
		}
		var queries []string
		if src.what == "dashboard" {
			queries = dashboardQueries(t, raw)
		} else {
			queries = ruleExprs(raw)
		}
		if len(queries) < 5 {
			t.Fatalf("%s: found only %d queries", src.file, len(queries))
		}
		for _, q := range queries {
			for _, m := range metricNames(q) {
				named[m] = append(named[m], src.what)
			}
		}
	}
	var names []string
	for m := range named {
		names = append(names, m)
	}
	sort.Strings(names)
	if len(names) < 15 {
		t.Fatalf("the dashboard and rules name only %d metrics: %v", len(names), names)
	}
	for _, m := range names {
		switch {
		case have[m]:
		case external[m]:
			t.Logf("%s (%s): from kube-state-metrics, not the provider", m, strings.Join(uniq(named[m]), ", "))
		default:
			t.Errorf("%s (named by the %s) is not served on /metrics", m, strings.Join(uniq(named[m]), " and "))
		}
	}
	t.Logf("%d metrics named by the dashboard and rules, all served or external: %s", len(names), strings.Join(names, " "))
}

// families are the metric names /metrics serves: each family's name from
// its # TYPE line, with _bucket, _sum and _count for histograms and
// summaries.
func families(t *testing.T, ctx context.Context, url string) map[string]bool {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s", url, err, resp.Status)
	}
	got := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		got[f[2]] = true
		if f[3] == "histogram" || f[3] == "summary" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				got[f[2]+s] = true
			}
		}
	}
	return got
}

// dashboardQueries are every PromQL expression of the dashboard: the
// panels' targets and the template variables' queries.
func dashboardQueries(t *testing.T, raw []byte) []string {
	t.Helper()
	var d any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				out = append(out, v)
			}
		}
	}
	walk(d, "")
	return out
}

var (
	exprBlock  = regexp.MustCompile(`(?ms)^\s+expr: \|\n(.*?)^\s+(?:for|labels):`)
	tmplAction = regexp.MustCompile(`(?s)\{\{.*?\}\}`)
	// A selector (a name before { or [), or a name of the provider's or
	// client_golang's prefixes wherever it stands.
	selector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	prefixed = regexp.MustCompile(`\b((?:action_provider|go|process|promhttp)_[a-zA-Z0-9_:]+)`)
)

// ruleExprs are the expr blocks of the rule template, without its template
// actions.
func ruleExprs(raw []byte) []string {
	var out []string
	for _, m := range exprBlock.FindAllSubmatch(raw, -1) {
		out = append(out, tmplAction.ReplaceAllString(string(m[1]), ""))
	}
	return out
}

func metricNames(q string) []string {
	var out []string
	for _, m := range selector.FindAllStringSubmatch(q, -1) {
		out = append(out, m[1])
	}
	for _, m := range prefixed.FindAllStringSubmatch(q, -1) {
		out = append(out, m[1])
	}
	return out
}

func uniq(s []string) []string {
	sort.Strings(s)
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

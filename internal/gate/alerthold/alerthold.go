// Package alerthold is the gate that holds every action while named
// Prometheus alerts fire, as Kured holds reboots: a remediation on top of
// an outage (the API server down, the cluster out of capacity) tends to
// make it worse.
//
// It asks Prometheus's HTTP API, GET /api/v1/alerts, at each action. That
// endpoint lists the alerts of the rules Prometheus evaluates, each with
// its state and since when it is active, which is exactly the question;
// the ALERTS series of /api/v1/query say the state too but not since when,
// and need a PromQL selector built from the names. Thanos Query and
// Thanos Ruler serve the same endpoint.
//
// Not knowing is not a pass: a Prometheus that does not answer in time,
// answers an error or something that is not its API refuses the action.
package alerthold

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// Rule names the gate in refusals.
const Rule = "alert hold"

// DefaultTimeout bounds a query when the configuration sets none.
const DefaultTimeout = 5 * time.Second

// maxBody bounds the answer read: a cluster's active alerts, with their
// labels and annotations, fit in far less.
const maxBody = 4 << 20

// Config is the gate's configuration.
type Config struct {
	// Prometheus is the base URL of Prometheus's HTTP API, with its route
	// prefix if any: http://prometheus.monitoring:9090.
	Prometheus string
	// Alerts are the names (label alertname) that hold actions while
	// firing.
	Alerts []string
	// Timeout bounds each query; zero is DefaultTimeout.
	Timeout time.Duration
	// Namespaces are globs (path.Match) on the action's namespace that the
	// hold applies to; none means every namespace.
	Namespaces []string
	// MatchNamespace makes a firing alert with a namespace label hold only
	// the actions in that namespace. Off, any listed alert holds every
	// action: the namespace label of many cluster-wide alerts is the
	// exporter's (node-exporter's in monitoring), not the one they are
	// about.
	MatchNamespace bool
	// Client makes the queries; nil is a client of its own.
	Client *http.Client
}

// Gate holds actions while listed alerts fire.
type Gate struct {
	cfg      Config
	endpoint string
	base     string // for messages
	client   *http.Client
}

// New checks cfg and makes the gate; the errors name the field.
func New(cfg Config) (*Gate, error) {
	if cfg.Prometheus == "" {
		return nil, errors.New("prometheus: missing; the base URL of Prometheus's HTTP API, such as http://prometheus.monitoring:9090")
	}
	u, err := url.Parse(cfg.Prometheus)
	switch {
	case err != nil:
		return nil, fmt.Errorf("prometheus: %q is not a URL: %w", cfg.Prometheus, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("prometheus: %q is not an http or https URL such as http://prometheus.monitoring:9090", cfg.Prometheus)
	case u.User != nil:
		// They would show in refusals, and sit in the catalog's ConfigMap.
		return nil, errors.New("prometheus: the URL carries credentials; the alert hold supports no authentication")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("prometheus: %q has a query or a fragment; give the base URL only", cfg.Prometheus)
	}
	if len(cfg.Alerts) == 0 {
		return nil, errors.New("alerts: none; list the alert names that hold actions, or remove the alertHold section")
	}
	for i, a := range cfg.Alerts {
		if strings.TrimSpace(a) == "" {
			return nil, fmt.Errorf("alerts[%d]: empty", i)
		}
		if slices.Contains(cfg.Alerts[:i], a) {
			return nil, fmt.Errorf("alerts[%d]: %q is listed twice", i, a)
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	for _, ns := range cfg.Namespaces {
		if _, err := path.Match(ns, ""); err != nil || ns == "" {
			return nil, fmt.Errorf("namespaces: %q is not a valid glob", ns)
		}
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{}
	}
	return &Gate{cfg: cfg, endpoint: u.JoinPath("api/v1/alerts").String(), base: u.String(), client: client}, nil
}

// Alert is one alert as /api/v1/alerts lists it.
type Alert struct {
	Labels map[string]string `json:"labels"`
	// State is pending or firing.
	State string `json:"state"`
	// ActiveAt is when the alert became pending; it fires once its rule's
	// "for" has passed.
	ActiveAt time.Time `json:"activeAt"`
}

// Admit refuses while a listed alert fires, or when Prometheus cannot
// say; a dry run asks alike, its refusal being its report.
func (g *Gate) Admit(ctx context.Context, s gate.Subject) (gate.Admission, error) {
	if len(g.cfg.Namespaces) > 0 && !matchAny(g.cfg.Namespaces, s.Namespace) {
		return gate.Admission{}, nil
	}
	alerts, err := g.Alerts(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// The action itself ended (its deadline, a shutdown): that is
			// its error to report, not Prometheus's.
			return gate.Admission{}, fmt.Errorf("alert hold: %w", err)
		}
		return gate.Admission{}, action.Refuse(Rule, "could not ask Prometheus at %s whether %s is firing: %v; actions resume when it answers, or remove the catalog's alertHold section",
			g.base, orList(g.cfg.Alerts), err)
	}
	firing := g.firing(alerts, s.Namespace)
	if len(firing) == 0 {
		return gate.Admission{}, nil
	}
	return gate.Admission{}, action.Refuse(Rule, "%s %s %s firing; actions resume when %s, or remove %s from alertHold.alerts",
		plural(len(firing), "alert", "alerts"), andList(firing), plural(len(firing), "is", "are"),
		plural(len(firing), "it resolves", "they resolve"), plural(len(firing), "it", "them"))
}

// firing describes the listed alerts that fire and hold ns, in the
// configuration's order, each once with its earliest activeAt.
func (g *Gate) firing(alerts []Alert, ns string) []string {
	var out []string
	for _, name := range g.cfg.Alerts {
		var since time.Time
		where := ""
		found := false
		for _, a := range alerts {
			if a.State != "firing" || a.Labels["alertname"] != name {
				continue
			}
			if alertNS := a.Labels["namespace"]; g.cfg.MatchNamespace && alertNS != "" {
				if alertNS != ns {
					continue
				}
				where = " in namespace " + ns
			}
			if !found || (!a.ActiveAt.IsZero() && (since.IsZero() || a.ActiveAt.Before(since))) {
				since = a.ActiveAt
			}
			found = true
		}
		if !found {
			continue
		}
		d := name + where
		if !since.IsZero() {
			d += " (active since " + since.UTC().Format(time.RFC3339) + ")"
		}
		out = append(out, d)
	}
	return out
}

// Alerts asks Prometheus for its active alerts, within the timeout.
func (g *Gate) Alerts(parent context.Context) ([]Alert, error) {
	ctx, cancel := context.WithTimeout(parent, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("make the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, g.transportError(parent, ctx, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		_ = resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of GET %s: %w", g.endpoint, g.transportError(parent, ctx, err))
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("GET %s: the answer is larger than %d MiB", g.endpoint, maxBody>>20)
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   *struct {
			Alerts []Alert `json:"alerts"`
		} `json:"data"`
	}
	jsonErr := json.Unmarshal(body, &r)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if jsonErr == nil && r.Error != "" {
			return nil, fmt.Errorf("GET %s answered %s: %s", g.endpoint, resp.Status, r.Error)
		}
		return nil, fmt.Errorf("GET %s answered %s", g.endpoint, resp.Status)
	}
	switch {
	case jsonErr != nil:
		return nil, fmt.Errorf("GET %s: the answer is not Prometheus's JSON: %w", g.endpoint, jsonErr)
	case r.Status != "success":
		return nil, fmt.Errorf("GET %s: status %q, not success: %s", g.endpoint, r.Status, r.Error)
	case r.Data == nil:
		return nil, fmt.Errorf("GET %s: the answer has no data", g.endpoint)
	}
	return r.Data.Alerts, nil
}

// transportError says a timeout in terms of the setting that bounds it.
func (g *Gate) transportError(parent, ctx context.Context, err error) error {
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s (alertHold.timeout): %w", g.cfg.Timeout, context.DeadlineExceeded)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("GET %s: %w", g.endpoint, uerr.Err)
	}
	return err
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func andList(s []string) string { return list(s, "and") }
func orList(s []string) string  { return list(s, "or") }

func list(s []string, conj string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " " + conj + " " + s[len(s)-1]
}

// Package togglefeature implements the "toggle-feature" remediation action:
// turn feature flags on or off in Unleash, for the environment that matches
// the event's stage. It replaces keptn-contrib's unleash-service and reads
// the same value, {"PromotionCampaign": "off", "NewCheckout": "on"}, so
// existing remediation.yaml files keep working.
//
// Several flags in one action are one change: the action reads every flag
// first and changes nothing when one is missing; if a write fails part-way
// it puts back the flags it already changed, and its message says what state
// each flag is in afterwards.
package togglefeature

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// Name is the action's name in a remediation.yaml.
const Name = "toggle-feature"

// Aliases are the other names the action answers to: "featuretoggle" is
// what some remediation.yaml files written for unleash-service use.
var Aliases = []string{"featuretoggle"}

// Defaults of Config.
const (
	DefaultProject = "default"
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
)

// maxRetries keeps a typo such as 200 from holding a worker for an hour.
const maxRetries = 10

// Config is the action's entry in the action catalog.
type Config struct {
	// URL is Unleash's base URL, e.g. http://unleash:4242; the API paths
	// are appended to it, so a path prefix is kept.
	URL string `json:"url"`
	// Token is an admin API token. It goes in the Authorization header as
	// it is, as Unleash expects, and is masked in every message.
	Token secret.Ref `json:"token"`
	// Project is the Unleash project the flags belong to; default "default".
	Project string `json:"project,omitempty"`
	// Environments maps a Keptn stage to an Unleash environment. A stage
	// not in the map uses the environment of the same name.
	Environments map[string]string `json:"environments,omitempty"`
	// Legacy uses the API of Unleash 3 and 4, which toggles a flag in all
	// environments at once: GET /api/admin/features/{name} and
	// POST /api/admin/features/{name}/toggle/on|off. Unleash 5 and later
	// no longer have it.
	Legacy bool `json:"legacy,omitempty"`
	// Timeout bounds each request; default 10s.
	Timeout action.Duration `json:"timeout,omitempty"`
	// Retries is how many times a request is repeated after no answer, a
	// 5xx or a 429; default 2.
	Retries *int `json:"retries,omitempty"`
}

// Options are what the action needs besides its configuration.
type Options struct {
	// Source reads the token; the zero value reads the environment and
	// files.
	Source secret.Source
	// Masker is told the token, so that the provider's logs and finished
	// messages hide it too; nil means the action masks its own messages
	// only.
	Masker *secret.Masker
	// HTTPClient sends the requests; nil means a new client with a
	// transport of its own (proxy settings from the environment).
	HTTPClient *http.Client
	// WrapTransport, if set, wraps the transport of the client New makes
	// when HTTPClient is nil: tracing makes each request a client span.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Handler is the toggle-feature action.
type Handler struct {
	client  client
	tokenOf string // where the token came from, for messages: "env UNLEASH_TOKEN"
	project string
	envs    map[string]string
	legacy  bool
	mask    *secret.Masker
}

var (
	_ action.Handler   = (*Handler)(nil)
	_ action.Validator = (*Handler)(nil)
)

// New checks cfg, reads the token and returns the action. Its errors name
// the setting at fault.
func New(cfg Config, opts Options) (*Handler, error) {
	base, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%s action: \"url\": %w", Name, err)
	}
	token, err := opts.Source.Resolve(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("%s action: \"token\": %w", Name, err)
	}
	if strings.ContainsAny(token, "\r\n") {
		return nil, fmt.Errorf("%s action: \"token\": the token (%s) spans more than one line", Name, cfg.Token)
	}
	mask := opts.Masker
	if mask == nil {
		mask = &secret.Masker{}
	}
	mask.Add(token)

	project := cfg.Project
	if project == "" {
		project = DefaultProject
	}
	envs := make(map[string]string, len(cfg.Environments))
	for stage, env := range cfg.Environments {
		if stage == "" || env == "" {
			return nil, fmt.Errorf("%s action: \"environments\": %q: %q: neither stage nor environment may be empty", Name, stage, env)
		}
		envs[stage] = env
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("%s action: \"timeout\": %s is negative", Name, timeout)
	}
	retries := DefaultRetries
	if cfg.Retries != nil {
		retries = *cfg.Retries
	}
	if retries < 0 || retries > maxRetries {
		return nil, fmt.Errorf("%s action: \"retries\": %d is not between 0 and %d", Name, retries, maxRetries)
	}
	hc := opts.HTTPClient
	if hc == nil {
		var rt http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
		if opts.WrapTransport != nil {
			rt = opts.WrapTransport(rt)
		}
		hc = &http.Client{Transport: rt}
	}
	const initial, maxWait = 250 * time.Millisecond, 2 * time.Second
	return &Handler{
		client: client{
			base: base, token: token, http: hc, timeout: timeout, retries: retries,
			// The bound only backs up the count of retries: every attempt
			// and every wait fits in it.
			backoff: retry.Backoff{Initial: initial, Max: maxWait, Bound: time.Duration(retries+1) * (timeout + maxWait)},
		},
		tokenOf: cfg.Token.String(),
		project: project,
		envs:    envs,
		legacy:  cfg.Legacy,
		mask:    mask,
	}, nil
}

// parseURL checks Unleash's base URL and returns it without a trailing
// slash. Credentials in it are refused: they would be shown in messages.
func parseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("is empty; want Unleash's base URL, e.g. http://unleash:4242")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q is not an http or https URL, e.g. http://unleash:4242", raw)
	case u.Host == "":
		return "", fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return "", errors.New("has a user or password in it; the admin token goes in \"token\"")
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q has a query or fragment; want the base URL only", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Validate checks an action value without any request to Unleash.
func (h *Handler) Validate(value json.RawMessage) error {
	if _, err := parseValue(value); err != nil {
		return fmt.Errorf("%w; %s", err, acceptedForms)
	}
	return nil
}

// flag is the state of one toggle through the action.
type flag struct {
	toggle
	was     bool  // the state read before any change
	changed bool  // the action changed it, and it has not been put back
	err     error // the write failed
	// after a failed write: what a fresh read says
	now     bool
	gone    bool  // the flag no longer exists
	readErr error // the fresh read failed: the state is unknown
	// rollback
	restored     bool
	restoreErr   error
	notAttempted bool
}

// Run reads every flag, then changes those not yet in the wanted state.
// A value error, an unreadable flag or a rollback that failed is an error
// (status errored); a missing flag or environment, or a write that failed
// and was rolled back, is a failed outcome; anything else passes.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	out, err := h.run(ctx, req)
	out.Message = h.mask.String(out.Message)
	return out, h.mask.Error(err)
}

func (h *Handler) run(ctx context.Context, req action.Request) (action.Outcome, error) {
	name := req.Action
	if name == "" {
		name = Name
	}
	toggles, err := parseValue(req.Value)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w; %s", name, err, acceptedForms)
	}
	env, where, err := h.environment(req.Stage)
	if err != nil {
		return action.Outcome{}, err
	}

	// Read everything first: a missing flag must stop the action before
	// anything changes.
	flags := make([]*flag, len(toggles))
	var missing, noEnv []string
	for i, t := range toggles {
		f := &flag{toggle: t}
		flags[i] = f
		was, err := h.client.get(ctx, h.legacy, h.project, t.flag, env)
		var ne *noEnvError
		switch {
		case errors.Is(err, errNoFlag):
			missing = append(missing, t.flag)
		case errors.As(err, &ne):
			noEnv = append(noEnv, fmt.Sprintf("%s (it has %s)", t.flag, list(ne.have)))
		case err != nil:
			return action.Outcome{}, h.readError(err, t.flag, where)
		}
		f.was = was
	}
	if len(missing) > 0 || len(noEnv) > 0 {
		var problems []string
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s %s %s not exist in %s",
				plural(len(missing), "feature flag", "feature flags"), strings.Join(missing, ", "),
				plural(len(missing), "does", "do"), h.projectAt()))
		}
		if len(noEnv) > 0 {
			problems = append(problems, fmt.Sprintf("environment %q is not enabled for %s in %s; map stage %q to another environment with the action's \"environments\" setting, or add the environment to the project",
				env, strings.Join(noEnv, ", "), h.projectAt(), req.Stage))
		}
		return action.Fail(strings.Join(problems, "; ") + "; nothing was changed"), nil
	}

	if req.DryRun {
		return action.Pass("dry run, nothing changed: " + summary(flags, where, true)), nil
	}

	for i, f := range flags {
		if f.was == f.on {
			continue
		}
		if err := h.client.set(ctx, h.legacy, h.project, f.flag, env, f.on); err != nil {
			f.err = err
			h.recheck(ctx, f, env)
			for _, later := range flags[i+1:] {
				later.notAttempted = later.was != later.on
			}
			return h.rollBack(ctx, flags, env, where)
		}
		f.changed = true
	}
	return action.Pass(summary(flags, where, false)), nil
}

// environment returns the Unleash environment for a stage, and how
// messages name where the flags are: "in production (project default)".
func (h *Handler) environment(stage string) (env, where string, err error) {
	if h.legacy {
		return "", "in all environments (legacy API)", nil
	}
	env = stage
	if mapped, ok := h.envs[stage]; ok {
		env = mapped
	}
	if env == "" {
		return "", "", errors.New("the event names no stage, so the Unleash environment to toggle flags in is unknown")
	}
	return env, fmt.Sprintf("in %s (project %s)", env, h.project), nil
}

// projectAt names the project and server: "project default of Unleash at
// http://unleash:4242", so that a flag missing on the wrong server is
// recognised as such.
func (h *Handler) projectAt() string {
	if h.legacy {
		return "Unleash at " + h.client.base
	}
	return fmt.Sprintf("project %s of Unleash at %s", h.project, h.client.base)
}

// readError is the error of a flag that could not be read.
func (h *Handler) readError(err error, flag, where string) error {
	switch statusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("read feature flag %s: Unleash at %s refused the admin token from %s: %w; nothing was changed",
			flag, h.client.base, h.tokenOf, err)
	}
	return fmt.Errorf("read feature flag %s %s from Unleash at %s: %w; nothing was changed", flag, where, h.client.base, err)
}

// recheck reads f again after its write failed: a write that timed out may
// still have been applied, and the message must say the state the flag is
// really in.
func (h *Handler) recheck(ctx context.Context, f *flag, env string) {
	ctx, cancel := cleanupContext(ctx, h.client, 1)
	defer cancel()
	now, err := h.client.get(ctx, h.legacy, h.project, f.flag, env)
	switch {
	case errors.Is(err, errNoFlag):
		f.gone = true
	case err != nil:
		f.readErr = err
	default:
		f.now = now
		// Applied after all: roll it back with the others.
		f.changed = now == f.on
	}
}

// rollBack puts the flags that were changed back, newest first, and
// reports the state of each.
func (h *Handler) rollBack(ctx context.Context, flags []*flag, env, where string) (action.Outcome, error) {
	n := 0
	for _, f := range flags {
		if f.changed {
			n++
		}
	}
	ctx, cancel := cleanupContext(ctx, h.client, n)
	defer cancel()
	var rollbackFailed, unknown bool
	for i := len(flags) - 1; i >= 0; i-- {
		f := flags[i]
		if !f.changed {
			continue
		}
		if err := h.client.set(ctx, h.legacy, h.project, f.flag, env, f.was); err != nil {
			f.restoreErr = err
			rollbackFailed = true
			continue
		}
		f.restored = true
	}

	var states, rolled, stuck []string
	for _, f := range flags {
		switch {
		case f.err != nil:
			s := fmt.Sprintf("%s: failed to turn %s (%v), ", f.flag, state(f.on), f.err)
			switch {
			case f.gone:
				s += "and it no longer exists"
			case f.readErr != nil:
				s += fmt.Sprintf("state unknown (reading it again failed: %v)", f.readErr)
				unknown = true
			case f.now == f.on:
				s += fmt.Sprintf("yet it was %s when read again", state(f.now))
			default:
				s += "left " + state(f.now)
			}
			states = append(states, s)
		case f.notAttempted:
			states = append(states, fmt.Sprintf("%s: not attempted, still %s", f.flag, state(f.was)))
		case f.was == f.on:
			states = append(states, fmt.Sprintf("%s: already %s", f.flag, state(f.on)))
		case f.changed || f.restored || f.restoreErr != nil:
			states = append(states, fmt.Sprintf("%s: turned %s", f.flag, state(f.on)))
		}
		if f.restored {
			rolled = append(rolled, fmt.Sprintf("%s back to %s", f.flag, state(f.was)))
		}
		if f.restoreErr != nil {
			stuck = append(stuck, fmt.Sprintf("%s is still %s (turning it back %s failed: %v)", f.flag, state(f.on), state(f.was), f.restoreErr))
		}
	}
	msg := fmt.Sprintf("toggling feature flags %s failed part-way: %s", where, strings.Join(states, "; "))
	if len(rolled) > 0 {
		msg += "; rolled back: " + strings.Join(rolled, ", ")
	}
	if rollbackFailed {
		return action.Outcome{}, errors.New(msg + "; ROLLBACK FAILED, fix by hand: " + strings.Join(stuck, "; "))
	}
	if unknown {
		return action.Outcome{}, errors.New(msg + "; check that flag in Unleash by hand")
	}
	return action.Fail(msg), nil
}

// cleanupContext bounds n requests after a failure, retries included.
// They run even when ctx has ended (the action's deadline, a shutdown),
// because leaving half the flags changed is worse than overrunning a
// little.
func cleanupContext(ctx context.Context, c client, n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Duration(max(n, 1))*c.backoff.Bound)
}

// summary says what was done, or with wouldDo what would be done:
// "turned off PromotionCampaign in production (project default);
// NewCheckout already on".
func summary(flags []*flag, where string, wouldDo bool) string {
	var changed, already []string
	for _, f := range flags {
		switch {
		case f.was == f.on:
			already = append(already, fmt.Sprintf("%s already %s", f.flag, state(f.on)))
		case wouldDo:
			changed = append(changed, fmt.Sprintf("would turn %s %s", state(f.on), f.flag))
		default:
			changed = append(changed, fmt.Sprintf("turned %s %s", state(f.on), f.flag))
		}
	}
	if len(changed) == 0 {
		return strings.Join(already, ", ") + " " + where
	}
	s := strings.Join(changed, ", ") + " " + where
	if len(already) > 0 {
		s += "; " + strings.Join(already, ", ")
	}
	return s
}

func list(names []string) string {
	if len(names) == 0 {
		return "no environment"
	}
	names = append([]string(nil), names...)
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

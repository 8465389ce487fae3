// Package webhook implements the "webhook" kind of action: one HTTP request,
// described in the action catalog and templated over the event, for the
// remediations that are a call to another system (page someone, open a
// ticket, flip a switch behind an API) rather than a change to a workload.
//
// The request is configuration, not event data: an event chooses which
// catalog entry runs and fills in its templates, but never the method, the
// secrets or where the request may go. A catalog entry looks like
//
//	actions:
//	  - name: page-oncall
//	    kind: webhook
//	    settings:
//	      url: https://events.pagerduty.com/v2/enqueue
//	      headers:
//	        Authorization: Token token={{secret "pager"}}
//	      body: |
//	        {"routing_key": {{json (secret "routingKey")}},
//	         "event_action": "trigger",
//	         "payload": {"summary": {{.Problem.ProblemTitle}},
//	                     "source": "{{.Project}}/{{.Stage}}/{{.Service}}",
//	                     "severity": {{.Labels.severity}}}}
//	      secrets:
//	        pager: {env: PAGER_TOKEN}
//	        routingKey: {file: /etc/secrets/pager/routing-key}
//	      allowHosts: [events.pagerduty.com]
//
// # Templates
//
// url, every header value and body are Go text/templates over Data:
// .Project, .Stage, .Service, .Labels (a map), .Action (the action name),
// .Value (the action's value decoded from JSON, nil if none), .Problem
// (.Problem.ProblemTitle, .Problem.RootCause), .KeptnContext and
// .TriggeredID. Besides text/template's builtins (printf, index, ...)
// there are {{secret "name"}}, the value of a secret declared under
// settings.secrets, {{json X}}, X as JSON, {{pathSegment X}} and
// {{urlquery X}}. Templates run with missingkey=error: a label or value key
// the event lacks fails the action with the field named, rather than
// sending "<no value>".
//
// What a template writes is escaped for where it lands, the literal text
// of the template never (see escape.go): in the url's path, as one path
// segment ("../" and "/" cannot change the path, and a "." or ".." segment
// is refused); in its query, as a query component ("&admin=true" stays a
// value); in its host, only what a host name can hold; in a header,
// anything but control characters; in a JSON body (a JSON Content-Type, or
// none), inside a string as the string's contents and outside one as a
// JSON value, so {"summary": {{.Problem.ProblemTitle}}} is valid JSON and
// "source" above cannot be closed by the event; in a form body, as a query
// component; in any other body, as it is. json, pathSegment and urlquery
// are not escaped again where their result belongs. A url whose scheme,
// host or port comes from event data (.Labels, .Value, ...) can send the
// request anywhere: with a secret in it, New refuses the entry unless
// settings.allowHosts pins the host.
//
// New checks each template before any event arrives: it parses it, checks
// every field it names against Data and every {{secret "..."}} against
// settings.secrets, and runs it once on a sample request (unless it reads
// .Value, whose shape only the event knows; `action-provider lint` runs
// those too, through Validate, with the values remediation.yaml gives).
//
// # Sending
//
// Each attempt has settings.timeout (10s). Connection errors, timeouts, 429
// and 5xx answers are tried again settings.retries times (2), with the
// back-off of package retry, waiting at least as long as a Retry-After
// header asks, up to a cap; any other answer is final. The action's
// deadline bounds it all. An answer in settings.successStatus (any 2xx by
// default) passes the action; any other final answer fails it, and
// retries that run out are an error. Messages quote the method, the URL
// (without user information) and at most 256 bytes (Options.MaxExcerpt, at
// most 512) of the answer's body, with every secret masked in any form a
// server may echo it in (package secret), before the body is cut.
//
// # Where requests may go
//
// Package egress refuses, unless settings.allow names the rule, requests to
// the Kubernetes API, cluster-local names, and loopback, link-local
// (including the cloud metadata service) and private addresses, also
// when written as an IPv6 address that embeds them, checked
// after DNS on every connection and every redirect (at most 5); and, when
// settings.allowHosts is set, to any host not on it. A refusal is an
// *action.Refusal of rule "webhook egress" whose reason says what was
// refused, by which rule, and what to add to allow it.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/webhook/egress"
	"github.com/keptn-action-provider/action-provider/internal/retry"
	"github.com/keptn-action-provider/action-provider/internal/secret"
)

// Kind is the catalog kind of the action.
const Kind = "webhook"

// Defaults and bounds of the settings.
const (
	DefaultMethod  = http.MethodPost
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
	MaxRetries     = 10
	// DefaultMaxExcerpt and MaxExcerpt bound how much of an answer a
	// message quotes: a server may echo what it was sent, and less echoed
	// is less to mask.
	DefaultMaxExcerpt = 256
	MaxExcerpt        = 512
	// MaxRedirects is how many redirects one attempt follows.
	MaxRedirects = 5
	// DefaultMaxRetryAfter caps the wait a Retry-After header asks for.
	DefaultMaxRetryAfter = 30 * time.Second
	// maxMessage keeps a finished message readable, and small enough for
	// the event that carries it.
	maxMessage = 2048
	// maxURL is how much of a URL a message quotes.
	maxURL = 300
)

// RefusalRule is the rule of the webhook's refusals.
const RefusalRule = "webhook egress"

// Config is one catalog entry's settings. The caller decodes it from YAML
// with sigs.k8s.io/yaml and refuses unknown fields.
type Config struct {
	// Method is POST (the default), PUT, PATCH or GET.
	Method string `json:"method,omitempty"`
	// URL is a template of an absolute http or https URL.
	URL string `json:"url"`
	// Headers are header names and templates of their values.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is a template of the request body. Without a Content-Type
	// header, a body is sent as application/json.
	Body string `json:"body,omitempty"`
	// Secrets name the secrets the templates use with {{secret "name"}},
	// and where their values are read from at start-up.
	Secrets map[string]secret.Ref `json:"secrets,omitempty"`
	// Timeout bounds each attempt, the answer's excerpt included; 10s by
	// default.
	Timeout action.Duration `json:"timeout,omitempty"`
	// Retries is how many more attempts follow one that failed with a
	// connection error, a timeout, 429 or 5xx: 2 by default, at most 10.
	Retries *int `json:"retries,omitempty"`
	// SuccessStatus lists the statuses that pass the action; by default
	// any 2xx. A 3xx listed here is not followed.
	SuccessStatus []int `json:"successStatus,omitempty"`
	// AllowHosts, when set, is the only hosts requests and redirects may
	// go to: names, "*.example.com", addresses and CIDR prefixes.
	AllowHosts []string `json:"allowHosts,omitempty"`
	// Allow lifts egress rules by name: "loopback", "link-local",
	// "private", "kubernetes-api", "cluster-local".
	Allow []string `json:"allow,omitempty"`
}

// Options are the provider-wide dependencies of every webhook.
type Options struct {
	// MaxExcerpt is how many bytes of an answer's body a message quotes;
	// 0 means DefaultMaxExcerpt, and more than the constant MaxExcerpt
	// means that.
	MaxExcerpt int
	// Resolver looks up host names; nil is net.DefaultResolver.
	Resolver *net.Resolver
	// KubernetesServiceHost is the API server's service address, from
	// KUBERNETES_SERVICE_HOST, refused like kubernetes.default.
	KubernetesServiceHost string
	// Masker learns every secret the webhook resolves, and masks the
	// webhook's messages and errors; nil masks them with a Masker of the
	// webhook's own.
	Masker *secret.Masker
	// Source is where secrets are read from; the zero value is the process
	// environment and the file system.
	Source secret.Source
	// Backoff spaces attempts; the zero value waits 500ms, then twice as
	// long each time, at most 5s. Its Bound is ignored: the number of
	// attempts and the action's deadline bound the retries.
	Backoff retry.Backoff
	// MaxRetryAfter caps the wait a Retry-After header asks for; 0 means
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// WrapTransport, if set, wraps the egress-checked transport: tracing
	// makes each request a client span of the event's trace.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Handler is one webhook of the catalog. It is safe for concurrent use.
type Handler struct {
	name    string
	method  string
	url     *field
	headers []*field // sorted by name
	body    *field   // nil without a body

	secrets map[string]string
	// own masks this webhook's secrets only: it tells which headers and
	// bodies carry one. masker, maybe shared, masks messages.
	own *secret.Masker

	timeout       time.Duration
	retries       int
	success       []int // nil: any 2xx
	policy        *egress.Policy
	transport     http.RoundTripper
	masker        *secret.Masker
	maxExcerpt    int
	backoff       retry.Backoff
	maxRetryAfter time.Duration
}

var (
	_ action.Handler   = (*Handler)(nil)
	_ action.Validator = (*Handler)(nil)
)

// New checks cfg, resolves its secrets and returns the webhook. Errors
// name the setting: `url: template: url:1: function "secrt" not defined`,
// `secrets.pagerToken: environment variable PAGER_TOKEN is not set`.
func New(name string, cfg Config, opts Options) (*Handler, error) {
	h := &Handler{
		name: name, masker: opts.Masker, maxExcerpt: opts.MaxExcerpt,
		backoff: opts.Backoff, maxRetryAfter: opts.MaxRetryAfter,
		timeout: DefaultTimeout, retries: DefaultRetries,
	}
	if h.masker == nil {
		h.masker = &secret.Masker{}
	}
	if h.maxExcerpt <= 0 {
		h.maxExcerpt = DefaultMaxExcerpt
	}
	h.maxExcerpt = min(h.maxExcerpt, MaxExcerpt)
	if h.maxRetryAfter <= 0 {
		h.maxRetryAfter = DefaultMaxRetryAfter
	}
	if h.backoff.Initial <= 0 {
		h.backoff.Initial = 500 * time.Millisecond
	}
	if h.backoff.Max <= 0 {
		h.backoff.Max = 5 * time.Second
	}
	// Attempts and the context bound the retries; Backoff's own bound
	// would only add a second, confusing, limit.
	h.backoff.Bound = 24 * time.Hour
	if err := h.configure(cfg, opts); err != nil {
		return nil, h.masker.Error(err)
	}
	return h, nil
}

func (h *Handler) configure(cfg Config, opts Options) error {
	switch m := strings.ToUpper(strings.TrimSpace(cfg.Method)); m {
	case "":
		h.method = DefaultMethod
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodGet:
		h.method = m
	default:
		return fmt.Errorf("method: %q is not supported; use POST (the default), PUT, PATCH or GET", cfg.Method)
	}
	if cfg.Timeout > 0 {
		h.timeout = time.Duration(cfg.Timeout)
	}
	if cfg.Retries != nil {
		if *cfg.Retries < 0 || *cfg.Retries > MaxRetries {
			return fmt.Errorf("retries: %d is out of range; it is how many more attempts follow a failed one, 0 to %d", *cfg.Retries, MaxRetries)
		}
		h.retries = *cfg.Retries
	}
	for i, s := range cfg.SuccessStatus {
		if s < 200 || s > 599 {
			return fmt.Errorf("successStatus[%d]: %d is not a final HTTP status (200 to 599)", i, s)
		}
	}
	h.success = cfg.SuccessStatus

	if err := h.resolveSecrets(cfg.Secrets, opts.Source); err != nil {
		return err
	}
	policy, err := egress.New(egress.Config{
		Allow: cfg.Allow, AllowHosts: cfg.AllowHosts,
		KubernetesServiceHost: opts.KubernetesServiceHost, Resolver: opts.Resolver,
	})
	if err != nil {
		return err
	}
	h.policy = policy

	if strings.TrimSpace(cfg.URL) == "" {
		return errors.New(`url: missing; it is where the request goes, e.g. "https://hooks.example.com/{{.Project}}"`)
	}
	if h.url, err = h.parseField("url", cfg.URL, urlStart); err != nil {
		return err
	}
	seen := map[string]string{}
	contentType := ""
	for _, k := range sortedKeys(cfg.Headers) {
		canonical := http.CanonicalHeaderKey(k)
		if err := checkHeaderName(k); err != nil {
			return fmt.Errorf("headers.%s: %w", k, err)
		}
		if prev, dup := seen[canonical]; dup {
			return fmt.Errorf("headers.%s: the same header as headers.%s; header names ignore case", k, prev)
		}
		seen[canonical] = k
		f, err := h.parseField("headers."+k, cfg.Headers[k], header)
		if err != nil {
			return err
		}
		h.headers = append(h.headers, f)
		if canonical == "Content-Type" {
			contentType = strings.TrimSpace(cfg.Headers[k])
		}
	}
	if cfg.Body != "" {
		if h.body, err = h.parseField("body", cfg.Body, bodyPlace(contentType)); err != nil {
			return err
		}
	}
	if err := h.checkSecretsStay(cfg.AllowHosts); err != nil {
		return err
	}
	if err := h.tryOnSample(); err != nil {
		return err
	}
	h.transport = h.policy.Transport()
	if opts.WrapTransport != nil {
		h.transport = opts.WrapTransport(h.transport)
	}
	return nil
}

// checkSecretsStay refuses a webhook whose host an event chooses, when
// its request carries a secret and no allowHosts pins where it may go:
// the event could send the secret anywhere.
func (h *Handler) checkSecretsStay(allowHosts []string) error {
	if h.url.hostFrom == "" || len(allowHosts) > 0 {
		return nil
	}
	for _, f := range h.fields() {
		if f.usesSecret || f.userinfo {
			return fmt.Errorf("webhook %q: url: %s puts event data into the scheme or host, and %s carries a secret, which the event could send to any host; pin the host with settings.allowHosts, or write the scheme and host out",
				h.name, h.url.hostFrom, f.name)
		}
	}
	return nil
}

// resolveSecrets reads every secret, in name order, and teaches the
// maskers each value; they know the forms a URL, a JSON body or an answer
// may carry it in.
func (h *Handler) resolveSecrets(refs map[string]secret.Ref, src secret.Source) error {
	h.secrets, h.own = map[string]string{}, &secret.Masker{}
	for _, name := range sortedKeys(refs) {
		if strings.TrimSpace(name) == "" {
			return errors.New("secrets: a secret needs a name, which templates use as {{secret \"name\"}}")
		}
		v, err := src.Resolve(refs[name])
		if err != nil {
			return fmt.Errorf("secrets.%s: %w", name, err)
		}
		h.secrets[name] = v
		h.masker.Add(v)
		h.own.Add(v)
	}
	return nil
}

// checkHeaderName refuses a name that is not an HTTP token, and the
// headers the client sets itself.
func checkHeaderName(k string) error {
	if k == "" {
		return errors.New("a header needs a name")
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return fmt.Errorf("%q is not a valid header name", k)
		}
	}
	switch http.CanonicalHeaderKey(k) {
	case "Host":
		return errors.New("the host comes from url, and the egress rules check that one")
	case "Content-Length", "Transfer-Encoding", "Connection":
		return errors.New("the HTTP client sets this header itself")
	}
	return nil
}

// fields lists the templated settings in the order they are rendered.
func (h *Handler) fields() []*field {
	fs := append([]*field{h.url}, h.headers...)
	if h.body != nil {
		fs = append(fs, h.body)
	}
	return fs
}

// tryOnSample runs each template that does not read .Value on a sample
// request, and checks the url and headers that come out.
func (h *Handler) tryOnSample() error {
	d, err := h.sample(nil)
	if err != nil {
		return err
	}
	for _, f := range h.fields() {
		if f.usesValue {
			continue
		}
		out, err := f.execute(d)
		if err != nil {
			return err
		}
		if err := h.checkRendered(f, out); err != nil {
			return err
		}
	}
	return nil
}

// checkRendered checks the url or a header value a template produced.
func (h *Handler) checkRendered(f *field, out string) error {
	switch {
	case f == h.url:
		_, err := parseURL(out)
		return err
	case f != h.body:
		if strings.ContainsAny(strings.TrimSpace(out), "\r\n") {
			return fmt.Errorf("%s: the value has a line break, which a header cannot carry", f.name)
		}
	}
	return nil
}

// parseURL parses a rendered url.
func parseURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("url: %q is not a URL: %w", s, errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("url: %q is not an absolute http or https URL", s)
	}
	if err := checkPath(u); err != nil {
		return nil, err
	}
	return u, nil
}

// rendered is a request, its templates executed.
type rendered struct {
	url    *url.URL
	header http.Header
	body   string
}

// render executes every template on d.
func (h *Handler) render(d Data) (*rendered, error) {
	raw, err := h.url.execute(d)
	if err != nil {
		return nil, err
	}
	u, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	r := &rendered{url: u, header: http.Header{}}
	for _, f := range h.headers {
		v, err := f.execute(d)
		if err != nil {
			return nil, err
		}
		if err := h.checkRendered(f, v); err != nil {
			return nil, err
		}
		r.header.Set(strings.TrimPrefix(f.name, "headers."), strings.TrimSpace(v))
	}
	if h.body != nil {
		if r.body, err = h.body.execute(d); err != nil {
			return nil, err
		}
		if r.header.Get("Content-Type") == "" {
			r.header.Set("Content-Type", "application/json")
		}
	}
	if r.header.Get("User-Agent") == "" {
		r.header.Set("User-Agent", "keptn-action-provider (webhook "+h.name+")")
	}
	return r, nil
}

// Run renders the request for req and sends it; see the package
// documentation. A dry run renders it and checks the egress rules, DNS
// included, without sending anything.
func (h *Handler) Run(ctx context.Context, req action.Request) (action.Outcome, error) {
	out, err := h.run(ctx, req)
	out.Message = h.clipMasked(out.Message, maxMessage)
	return out, h.finish(err)
}

func (h *Handler) run(ctx context.Context, req action.Request) (action.Outcome, error) {
	d, err := newData(h.name, req)
	if err != nil {
		name := req.Action
		if name == "" {
			name = h.name
		}
		return action.Outcome{}, fmt.Errorf("invalid value for action %q: %w", name, err)
	}
	r, err := h.render(d)
	if err != nil {
		return action.Outcome{}, fmt.Errorf("webhook %q: %w", h.name, err)
	}
	line := h.method + " " + h.show(r.url)
	if err := h.policy.CheckURL(r.url); err != nil {
		return action.Outcome{}, h.refusal(line, nil, err)
	}
	if req.DryRun {
		if _, err := h.policy.Resolve(ctx, "tcp", r.url.Hostname()); err != nil {
			return action.Outcome{}, h.refusal(line, nil, err)
		}
		size := ""
		if h.body != nil {
			size = fmt.Sprintf(" with a %d-byte body", len(r.body))
		}
		return action.Pass(fmt.Sprintf("dry run: would %s%s; the egress rules allow it", line, size)), nil
	}
	return h.send(ctx, r, line)
}

// Validate checks the templates against an action value from
// remediation.yaml, as Run would, without sending anything: the value must
// be JSON (or empty), and the templates must run on it. Labels are made
// up, with every key the templates use.
func (h *Handler) Validate(value json.RawMessage) error {
	d, err := h.sample(value)
	if err != nil {
		return h.masker.Error(fmt.Errorf("invalid value: %w", err))
	}
	_, err = h.render(d)
	return h.masker.Error(err)
}

// show is how a message quotes u: without user information, secrets
// masked, and not too long.
func (h *Handler) show(u *url.URL) string {
	c := *u
	c.User = nil
	return h.clipMasked(c.String(), maxURL)
}

// finish masks and clips an error's text for the person who reads it. A
// refusal stays an *action.Refusal, its reason masked.
func (h *Handler) finish(err error) error {
	if err == nil {
		return nil
	}
	var r *action.Refusal
	if errors.As(err, &r) && r == err {
		r.Reason = h.clipMasked(r.Reason, maxMessage)
		return r
	}
	text := h.clipMasked(err.Error(), maxMessage)
	if text == err.Error() {
		return err
	}
	return &finishedError{text: text, err: err}
}

// finishedError is an error whose text was masked or clipped; it still
// wraps the original for errors.Is and errors.As.
type finishedError struct {
	text string
	err  error
}

func (e *finishedError) Error() string { return e.text }
func (e *finishedError) Unwrap() error { return e.err }

// clipMasked masks s and cuts it to at most n bytes, as clip does, but
// without leaving a secret's start at the cut.
func (h *Handler) clipMasked(s string, n int) string {
	s = h.masker.String(s)
	if len(s) <= n {
		return s
	}
	return h.masker.TrimPartial(prefix(s, n-len("…"))) + "…"
}

// clip cuts s to at most n bytes, on a character boundary, marking the
// cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return prefix(s, n-len("…")) + "…"
}

// prefix is the longest start of s of at most n bytes that does not cut
// a character.
func prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

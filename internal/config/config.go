// Package config holds the provider's configuration: every setting comes
// from the environment, is parsed once at start-up by envconfig into Config,
// and is validated before anything starts.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the provider's whole configuration. The struct tags are the
// single source of truth for names, defaults and the --help text.
type Config struct {
	RcvHost string `envconfig:"RCV_HOST" default:"127.0.0.1" desc:"address the event receiver binds to; only the distributor sidecar in the same pod should reach it"`
	RcvPort int    `envconfig:"RCV_PORT" default:"8080" desc:"event receiver port (0 picks a free port)"`
	RcvPath string `envconfig:"RCV_PATH" default:"/" desc:"event receiver path"`
	OpsHost string `envconfig:"OPS_HOST" desc:"address /healthz, /readyz and /metrics bind to (default: every interface, for the kubelet's probes and Prometheus)"`
	OpsPort int    `envconfig:"OPS_PORT" default:"8090" desc:"port for /healthz, /readyz and /metrics (0 picks a free port)"`

	Transport       string `envconfig:"TRANSPORT" default:"http" desc:"http: events come from the distributor sidecar (RCV_*) and go to EVENTBROKER; nats: straight from and to NATS (NATS_*), no sidecar"`
	NATSURL         string `envconfig:"NATS_URL" default:"nats://keptn-nats" desc:"TRANSPORT=nats: the NATS server(s), comma-separated"`
	NATSQueueGroup  string `envconfig:"NATS_QUEUE_GROUP" default:"action-provider" desc:"TRANSPORT=nats: replicas in one queue group split the triggered events"`
	NATSCredentials string `envconfig:"NATS_CREDENTIALS" desc:"TRANSPORT=nats: a NATS .creds file"`
	NATSTLSCA       string `envconfig:"NATS_TLS_CA" desc:"TRANSPORT=nats: PEM CA file to verify the server"`
	NATSTLSCert     string `envconfig:"NATS_TLS_CERT" desc:"TRANSPORT=nats: PEM client certificate (with NATS_TLS_KEY)"`
	NATSTLSKey      string `envconfig:"NATS_TLS_KEY" desc:"TRANSPORT=nats: PEM client key (with NATS_TLS_CERT)"`
	NATSBufferBytes int    `envconfig:"NATS_BUFFER_BYTES" default:"8388608" desc:"TRANSPORT=nats: events kept for publishing while NATS is unreachable"`

	EventBroker       string        `envconfig:"EVENTBROKER" default:"http://localhost:8081/event" desc:"where started/finished events are POSTed (the distributor)"`
	DeliveryRetryTime time.Duration `envconfig:"EVENTBROKER_RETRY_TIMEOUT" default:"2m" desc:"how long one event is retried when the event broker refuses, times out or answers 5xx"`
	MaxEventBytes     int           `envconfig:"MAX_EVENT_BYTES" default:"65536" desc:"largest event sent; longer messages are truncated (the distributor's default cap is 64 KiB)"`
	EventSource       string        `envconfig:"EVENT_SOURCE" default:"action-provider" desc:"CloudEvents source of the events sent"`

	MaxBodyBytes int64         `envconfig:"MAX_BODY_BYTES" default:"1048576" desc:"largest triggered event accepted; larger bodies are rejected, with a 200 whose body says why"`
	Workers      int           `envconfig:"MAX_CONCURRENT_ACTIONS" default:"64" desc:"actions run at the same time"`
	QueueSize    int           `envconfig:"QUEUE_SIZE" default:"256" desc:"accepted events waiting for a worker; when full, a new event waits up to QUEUE_WAIT for room"`
	QueueWait    time.Duration `envconfig:"QUEUE_WAIT" default:"1500ms" desc:"how long an event waits for room in a full queue before the receiver answers 503; at most 1.9s, so that the distributor's re-POST still fits its 5 s"`

	ActionTimeout    time.Duration `envconfig:"ACTION_TIMEOUT" default:"5m" desc:"deadline of one action"`
	ShutdownGrace    time.Duration `envconfig:"SHUTDOWN_GRACE" default:"60s" desc:"on SIGTERM, how long running actions may go on before they are cancelled"`
	ShutdownFlush    time.Duration `envconfig:"SHUTDOWN_FLUSH" default:"10s" desc:"after the grace period, how long the last finished events may take to deliver and be recorded"`
	TerminationGrace time.Duration `envconfig:"TERMINATION_GRACE_PERIOD" default:"90s" desc:"the pod's terminationGracePeriodSeconds (the chart sets it): SHUTDOWN_GRACE + SHUTDOWN_FLUSH must end before it"`
	DedupTTL         time.Duration `envconfig:"DEDUP_TTL" default:"10m" desc:"a triggered event id seen again within this time is not run twice"`
	HeartbeatPeriod  time.Duration `envconfig:"HEARTBEAT_PERIOD" default:"10s" desc:"how often a replica records that it is alive; after three missed, another replica reports its running actions as interrupted"`
	KubeAPIQPS       float32       `envconfig:"KUBE_API_QPS" default:"50" desc:"requests per second to the Kubernetes API server, all of the provider's clients together (a client-side limit, as kubectl's)"`
	KubeAPIBurst     int           `envconfig:"KUBE_API_BURST" default:"100" desc:"requests that may go at once above KUBE_API_QPS"`
	DedupCapacity    int           `envconfig:"DEDUP_CAPACITY" default:"100000" desc:"triggered ids remembered at most; the oldest are forgotten first"`
	DryRun           bool          `envconfig:"DRY_RUN" default:"false" desc:"decide and report everything, mutate nothing"`
	Sandbox          string        `envconfig:"SANDBOX" default:"auto" desc:"true: in-memory cluster; false: a real cluster is required; auto: sandbox when no in-cluster config, KUBECONFIG or ~/.kube/config exists"`
	SandboxSeed      string        `envconfig:"SANDBOX_SEED" desc:"directory of YAML manifests seeding the sandbox (default: the built-in examples/sandbox)"`
	ScaleMinReplicas int32         `envconfig:"SCALE_MIN_REPLICAS" default:"1" desc:"scale never goes below this many replicas (0 allows scaling to zero)"`
	ScaleMaxReplicas int32         `envconfig:"SCALE_MAX_REPLICAS" default:"50" desc:"scale never goes above this many replicas"`
	ScaleMaxStep     int32         `envconfig:"SCALE_MAX_STEP" default:"10" desc:"scale never changes the replica count by more than this at once (0: no limit)"`
	DeletePodsMax    int           `envconfig:"DELETE_PODS_MAX" default:"10" desc:"delete-pods never evicts more pods than this in one action"`

	ActionsConfig     string        `envconfig:"ACTIONS_CONFIG" desc:"YAML file of the action catalog: names, kinds, settings, guardrails (default: the built-in scale, restart, rollback, delete-pods)"`
	AllowedNamespaces []string      `envconfig:"ALLOWED_NAMESPACES" desc:"comma-separated globs of the namespaces actions may change (empty: none, unless NAMESPACE_OPT_IN_LABEL lets one in); kube-system, kube-public, kube-node-lease and POD_NAMESPACE only when named exactly"`
	NamespaceOptIn    string        `envconfig:"NAMESPACE_OPT_IN_LABEL" desc:"a label key=value, e.g. keptn-action-provider.io/remediation=enabled: a namespace carrying it may be changed too (needs get on namespaces; never a protected one); empty: off"`
	PodNamespace      string        `envconfig:"POD_NAMESPACE" default:"keptn" desc:"the provider's own namespace: it holds the provider's Leases (locks, cooldowns, claimed events) and is protected from actions"`
	PodName           string        `envconfig:"POD_NAME" desc:"this replica's name in locks and audit events (default: the host name)"`
	Cooldown          time.Duration `envconfig:"ACTION_COOLDOWN" default:"5m" desc:"least time between two runs of the same action on the same workload, across replicas (0 disables)"`
	VerifyTimeout     time.Duration `envconfig:"VERIFY_TIMEOUT" default:"2m" desc:"how long a changed workload's rollout may take to converge before the action fails; below ACTION_TIMEOUT"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"logrus level: trace, debug, info, warn, error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json or text"`
	AuditLog  string `envconfig:"AUDIT_LOG" desc:"one JSON line per finished action (docs/observability-audit.md): stdout, stderr or a file path (appended to, mode 0600); empty: off"`
}

// Sandbox and transport settings.
const (
	TransportHTTP = "http"
	TransportNATS = "nats"

	SandboxAuto  = "auto"
	SandboxOn    = "true"
	SandboxOff   = "false"
	FormatJSON   = "json"
	FormatText   = "text"
	usageHeading = "VARIABLE\tDEFAULT\tMEANING"
)

// MaxQueueWait is the longest QUEUE_WAIT: (5 s − 1.125 s) / 2, so that a
// POST refused after waiting, the distributor's longest first pause and a
// re-POST that waits as long all fit the distributor's single 5 s.
const MaxQueueWait = 1900 * time.Millisecond

// shutdownMargin is what the process needs, besides its shutdown's bound,
// between SIGTERM and the kubelet's SIGKILL: start-up of the shutdown, the
// intake's stop, the last log lines.
const shutdownMargin = 5 * time.Second

// shutdownFlushes is how many SHUTDOWN_FLUSH periods a shutdown may take:
// with NATS, the connection's own flush follows the lifecycle's.
func (c Config) shutdownFlushes() time.Duration {
	if c.Transport == TransportNATS {
		return 2
	}
	return 1
}

func (c Config) shutdownFlushesText() string {
	if c.Transport == TransportNATS {
		return "2 × SHUTDOWN_FLUSH, with TRANSPORT=nats"
	}
	return "SHUTDOWN_FLUSH"
}

// Load reads the process environment into a Config and validates it. The
// error names the offending variable.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		var perr *envconfig.ParseError
		if errors.As(err, &perr) {
			return Config{}, fmt.Errorf("invalid %s=%q: expected a %s", perr.KeyName, perr.Value, perr.TypeName)
		}
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	return c, c.Validate()
}

// Validate checks what envconfig's types cannot: ranges, enumerations and
// URLs. All problems are reported at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, value any, why string) {
		errs = append(errs, fmt.Errorf("invalid %s=%v: %s", name, value, why))
	}
	port := func(name string, p int) {
		if p < 0 || p > 65535 {
			bad(name, p, "must be a port number from 0 to 65535")
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad(name, d, "must be a positive duration such as 30s or 5m")
		}
	}
	port("RCV_PORT", c.RcvPort)
	port("OPS_PORT", c.OpsPort)
	if !strings.HasPrefix(c.RcvPath, "/") {
		bad("RCV_PATH", c.RcvPath, `must start with "/"`)
	}
	switch c.Transport {
	case TransportHTTP:
	case TransportNATS:
		for _, server := range strings.Split(c.NATSURL, ",") {
			if u, err := url.Parse(strings.TrimSpace(server)); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
				bad("NATS_URL", c.NATSURL, "must be nats:// or tls:// URLs with a host, comma-separated")
				break
			}
		}
		if c.NATSQueueGroup == "" {
			bad("NATS_QUEUE_GROUP", `""`, "must not be empty: replicas must share a queue group")
		}
		if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
			bad("NATS_TLS_CERT", c.NATSTLSCert, "and NATS_TLS_KEY go together")
		}
		if c.NATSBufferBytes < 1024 {
			bad("NATS_BUFFER_BYTES", c.NATSBufferBytes, "must be at least 1024")
		}
	default:
		bad("TRANSPORT", c.Transport, "must be http or nats")
	}
	if u, err := url.Parse(c.EventBroker); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("EVENTBROKER", c.EventBroker, "must be an http:// or https:// URL with a host")
	}
	if c.MaxEventBytes < 4096 {
		bad("MAX_EVENT_BYTES", c.MaxEventBytes, "must be at least 4096")
	}
	if c.MaxBodyBytes < 1024 {
		bad("MAX_BODY_BYTES", c.MaxBodyBytes, "must be at least 1024")
	}
	if c.Workers < 1 {
		bad("MAX_CONCURRENT_ACTIONS", c.Workers, "must be at least 1")
	}
	if c.KubeAPIQPS <= 0 {
		bad("KUBE_API_QPS", c.KubeAPIQPS, "must be positive")
	}
	if c.KubeAPIBurst < 1 {
		bad("KUBE_API_BURST", c.KubeAPIBurst, "must be at least 1")
	}
	if c.QueueSize < 0 {
		bad("QUEUE_SIZE", c.QueueSize, "must not be negative")
	}
	if c.DedupCapacity < 1 {
		bad("DEDUP_CAPACITY", c.DedupCapacity, "must be at least 1")
	}
	positive("EVENTBROKER_RETRY_TIMEOUT", c.DeliveryRetryTime)
	positive("ACTION_TIMEOUT", c.ActionTimeout)
	positive("SHUTDOWN_GRACE", c.ShutdownGrace)
	positive("SHUTDOWN_FLUSH", c.ShutdownFlush)
	positive("DEDUP_TTL", c.DedupTTL)
	positive("HEARTBEAT_PERIOD", c.HeartbeatPeriod)
	positive("QUEUE_WAIT", c.QueueWait)
	if c.QueueWait > MaxQueueWait {
		bad("QUEUE_WAIT", c.QueueWait, fmt.Sprintf("must be at most %s: the distributor gives all its attempts at one event 5 s, and pauses up to 1.125 s before its first re-POST; "+
			"two waits and that pause must fit", MaxQueueWait))
	}
	if need := c.ActionTimeout + c.DeliveryRetryTime; c.DedupTTL > 0 && c.DedupTTL < need {
		bad("DEDUP_TTL", c.DedupTTL, fmt.Sprintf("must be at least ACTION_TIMEOUT + EVENTBROKER_RETRY_TIMEOUT (%s): a redelivery while the first run may still be going on must be recognised", need))
	}
	if need := c.ShutdownGrace + c.ShutdownFlush*c.shutdownFlushes(); c.TerminationGrace < need+shutdownMargin {
		bad("TERMINATION_GRACE_PERIOD", c.TerminationGrace, fmt.Sprintf("must exceed the shutdown's bound, %s (SHUTDOWN_GRACE + %s), by at least %s, or the kubelet kills the provider before its last finished events are sent",
			need, c.shutdownFlushesText(), shutdownMargin))
	}
	if c.EventSource == "" {
		bad("EVENT_SOURCE", `""`, "must not be empty")
	}
	switch c.Sandbox {
	case SandboxAuto, SandboxOn, SandboxOff:
	default:
		bad("SANDBOX", c.Sandbox, "must be auto, true or false")
	}
	if c.ScaleMinReplicas < 0 {
		bad("SCALE_MIN_REPLICAS", c.ScaleMinReplicas, "must not be negative")
	}
	if c.ScaleMaxReplicas < c.ScaleMinReplicas {
		bad("SCALE_MAX_REPLICAS", c.ScaleMaxReplicas, fmt.Sprintf("must not be below SCALE_MIN_REPLICAS (%d)", c.ScaleMinReplicas))
	}
	if c.ScaleMaxStep < 0 {
		bad("SCALE_MAX_STEP", c.ScaleMaxStep, "must not be negative")
	}
	if c.DeletePodsMax < 1 {
		bad("DELETE_PODS_MAX", c.DeletePodsMax, "must be at least 1")
	}
	for _, g := range c.AllowedNamespaces {
		if _, err := path.Match(g, ""); err != nil {
			bad("ALLOWED_NAMESPACES", strings.Join(c.AllowedNamespaces, ","), fmt.Sprintf("%q is not a valid glob", g))
		}
	}
	if c.NamespaceOptIn != "" {
		k, v, ok := strings.Cut(c.NamespaceOptIn, "=")
		if !ok || len(validation.IsQualifiedName(k)) > 0 || v == "" || len(validation.IsValidLabelValue(v)) > 0 {
			bad("NAMESPACE_OPT_IN_LABEL", c.NamespaceOptIn, "must be a label key=value, such as keptn-action-provider.io/remediation=enabled")
		}
	}
	if errs := validation.IsDNS1123Label(c.PodNamespace); len(errs) > 0 {
		bad("POD_NAMESPACE", c.PodNamespace, strings.Join(errs, "; "))
	}
	if c.Cooldown < 0 {
		bad("ACTION_COOLDOWN", c.Cooldown, "must not be negative")
	}
	positive("VERIFY_TIMEOUT", c.VerifyTimeout)
	if c.VerifyTimeout >= c.ActionTimeout {
		bad("VERIFY_TIMEOUT", c.VerifyTimeout, fmt.Sprintf("must be below ACTION_TIMEOUT (%s), so that a slow rollout is reported as such", c.ActionTimeout))
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", c.LogLevel, "must be one of trace, debug, info, warn, error")
	}
	if c.LogFormat != FormatJSON && c.LogFormat != FormatText {
		bad("LOG_FORMAT", c.LogFormat, "must be json or text")
	}
	return errors.Join(errs...)
}

// Usage writes one line per variable: name, default and meaning. It is what
// --help prints, and docs/configuration.md's table is checked against it by a test.
// It reads the struct tags itself rather than through envconfig.Usagef,
// whose text/template would keep the linker from dropping unused methods
// (docs/performance.md#binary-size).
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, usageHeading)
	for f := range reflect.TypeFor[Config]().Fields() {
		key := f.Tag.Get("envconfig")
		if key == "" {
			continue
		}
		def := f.Tag.Get("default")
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", key, def, f.Tag.Get("desc"))
	}
	return tw.Flush()
}

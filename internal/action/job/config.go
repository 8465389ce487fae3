package job

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	template "github.com/DataDog/datadog-agent/pkg/template/text"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// Config is one catalog entry's settings. The caller decodes it strictly
// from YAML: an unknown field is refused.
type Config struct {
	// Image is the container image, e.g. curlimages/curl:8.11.1. Required.
	Image string `json:"image"`
	// ImagePullPolicy is IfNotPresent by default.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Command and Args are the container's; $(NAME) expands a variable of
	// the container's environment, as in any pod spec.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// WorkingDir is the container's working directory.
	WorkingDir string `json:"workingDir,omitempty"`
	// Env are variables whose values are templates over the event.
	Env []EnvVar `json:"env,omitempty"`
	// Secrets reach the container as references to Kubernetes Secrets in
	// the Job's namespace, never as values in the Job.
	Secrets []SecretEnv `json:"secrets,omitempty"`
	// Files are mounted from a ConfigMap in the Job's namespace.
	Files *Files `json:"files,omitempty"`
	// Namespace is where the Job runs; by default the target's namespace,
	// "<project>-<stage>". Either way it must be allowed.
	Namespace string `json:"namespace,omitempty"`
	// ServiceAccount the pod runs as. None by default, and then no token
	// is mounted.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Resources of the container; DefaultResources when absent.
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Timeout is the Job's activeDeadlineSeconds: DefaultTimeout, bounded
	// by the action's deadline.
	Timeout action.Duration `json:"timeout,omitempty"`
	// BackoffLimit is 0 by default: a remediation is not retried blindly.
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// TTLSecondsAfterFinished lets Kubernetes delete a finished Job;
	// DefaultTTL (a day) by default, so that a person can still look.
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// LogLines is how many of the last log lines finished carries;
	// DefaultLogLines by default, at most MaxLogLines.
	LogLines *int `json:"logLines,omitempty"`
	// RunAsUser and RunAsGroup are the non-root user and group the
	// container runs as; DefaultUser by default.
	RunAsUser  *int64 `json:"runAsUser,omitempty"`
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
}

// EnvVar is one variable; Value is a text/template over Data.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SecretEnv references a Kubernetes Secret. With Key, the variable Env
// (the key upper-cased by default) gets that key's value; without, every
// key of the Secret becomes a variable, as the job executor's
// "valueFrom: secret" does.
type SecretEnv struct {
	SecretName string `json:"secretName"`
	Key        string `json:"key,omitempty"`
	Env        string `json:"env,omitempty"`
}

// Files mounts a ConfigMap's keys as files, read-only and executable.
type Files struct {
	ConfigMap string `json:"configMap"`
	// MountPath is /keptn by default, where the job executor puts files.
	MountPath string `json:"mountPath,omitempty"`
}

// Defaults and bounds.
const (
	DefaultTimeout   = 5 * time.Minute
	DefaultTTL       = 24 * 60 * 60
	DefaultLogLines  = 20
	MaxLogLines      = 200
	DefaultMountPath = "/keptn"
	DefaultUser      = 1000
	// GracePeriod is the pod's terminationGracePeriodSeconds: when the
	// Job's deadline passes, Kubernetes says Failed only once its pod has
	// stopped, and a script that ignores SIGTERM is killed after it.
	GracePeriod = 5 * time.Second
	// Reserve is the part of the action's deadline kept for after the
	// Job's: its pod's grace period, then reading its log, deleting it,
	// recording the outcome.
	Reserve = GracePeriod + cleanupTimeout + recordTimeout + 3*time.Second
	// MinTTL keeps a finished Job for as long as a redelivery of its event
	// may come: one that found it gone would run the remediation again.
	MinTTL = 60 * 60
	// ContainerName is the name of the Job's one container.
	ContainerName = "job"
)

// DefaultResources are the container's when the entry sets none: small,
// and bounded, so that a runaway script cannot starve the namespace.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("1"),
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		},
	}
}

// builtIn are the variables every container gets. The first three and
// LABELS_<KEY> are the job executor's names, so that its users' scripts
// run unchanged.
var builtIn = []string{
	"KEPTN_PROJECT", "KEPTN_STAGE", "KEPTN_SERVICE",
	"KEPTN_CONTEXT", "KEPTN_TRIGGERED_ID", "KEPTN_ACTION", "KEPTN_ACTION_VALUE",
	"KEPTN_PROBLEM_TITLE", "JOB_ACTION",
}

// eventText are the built-in variables that hold the event's free text:
// a $(NAME) reference in a command or argument may not name them. The
// project, stage and service are DNS labels, checked on every event.
var eventText = []string{"KEPTN_CONTEXT", "KEPTN_TRIGGERED_ID", "KEPTN_ACTION", "KEPTN_ACTION_VALUE", "KEPTN_PROBLEM_TITLE"}

// envName is a portable variable name: what a shell can read.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// varRef is a $(NAME) reference in a command or an argument; $$(NAME) is
// an escaped one.
var varRef = regexp.MustCompile(`\$+\(([^)]*)\)`)

// spec is a checked Config.
type spec struct {
	Config
	env       []envTemplate
	resources corev1.ResourceRequirements
	timeout   time.Duration
	backoff   int32
	ttl       int32
	logLines  int
	user      int64
	group     int64
	// declared are the variables the container surely has, for checking
	// $(NAME) references; open is set when a Secret adds unknown names.
	declared map[string]bool
	open     bool
	// eventText are the variables whose value is the event's free text.
	eventText map[string]bool
}

type envTemplate struct {
	name string
	tmpl *template.Template
}

// check validates c and fills in the defaults. deadline is the action's.
func check(c Config, deadline time.Duration) (*spec, error) {
	s := &spec{Config: c, declared: map[string]bool{}, eventText: map[string]bool{}}
	if strings.TrimSpace(c.Image) == "" {
		return nil, errors.New(`"image" is missing: a job runs the image its entry names, never one an event names`)
	}
	if strings.ContainsAny(c.Image, " \t\r\n") {
		return nil, fmt.Errorf(`"image": %q is not an image reference`, c.Image)
	}
	switch c.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf(`"imagePullPolicy": %q is not Always, IfNotPresent or Never`, c.ImagePullPolicy)
	}
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.Namespace != "" {
		if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
			return nil, fmt.Errorf(`"namespace": %q: %s`, c.Namespace, strings.Join(errs, "; "))
		}
	}
	if c.ServiceAccount != "" {
		if errs := validation.IsDNS1123Subdomain(c.ServiceAccount); len(errs) > 0 {
			return nil, fmt.Errorf(`"serviceAccount": %q: %s`, c.ServiceAccount, strings.Join(errs, "; "))
		}
	}
	for _, n := range builtIn {
		s.declared[n] = true
	}
	for _, n := range eventText {
		s.eventText[n] = true
	}
	for i, e := range c.Env {
		where := fmt.Sprintf(`"env[%d]"`, i)
		if err := s.declare(e.Name, where); err != nil {
			return nil, err
		}
		t, err := template.New(e.Name).Option("missingkey=error").Funcs(funcs).Parse(e.Value)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", where, e.Name, err)
		}
		if strings.Contains(e.Value, "{{") {
			s.eventText[e.Name] = true
		}
		s.env = append(s.env, envTemplate{name: e.Name, tmpl: t})
	}
	for i, r := range c.Secrets {
		where := fmt.Sprintf(`"secrets[%d]"`, i)
		if errs := validation.IsDNS1123Subdomain(r.SecretName); len(errs) > 0 {
			return nil, fmt.Errorf(`%s: "secretName" %q: %s`, where, r.SecretName, strings.Join(errs, "; "))
		}
		if r.Key == "" {
			if r.Env != "" {
				return nil, fmt.Errorf(`%s: "env" needs "key": without a key every key of Secret %s is a variable of its own name`, where, r.SecretName)
			}
			s.open = true
			continue
		}
		if errs := validation.IsConfigMapKey(r.Key); len(errs) > 0 {
			return nil, fmt.Errorf(`%s: "key" %q: %s`, where, r.Key, strings.Join(errs, "; "))
		}
		if err := s.declare(r.variable(), where); err != nil {
			return nil, err
		}
	}
	if f := c.Files; f != nil {
		if errs := validation.IsDNS1123Subdomain(f.ConfigMap); len(errs) > 0 {
			return nil, fmt.Errorf(`"files.configMap" %q: %s`, f.ConfigMap, strings.Join(errs, "; "))
		}
		mp := f.MountPath
		if mp == "" {
			mp = DefaultMountPath
		}
		if !strings.HasPrefix(mp, "/") || mp == "/" || mp == "/tmp" || strings.Contains(mp, "..") {
			return nil, fmt.Errorf(`"files.mountPath" %q: an absolute directory other than / and /tmp`, mp)
		}
		s.Files = &Files{ConfigMap: f.ConfigMap, MountPath: mp}
	}
	for i, list := range [][]string{c.Command, c.Args} {
		field := [...]string{"command", "args"}[i]
		for _, a := range list {
			if err := s.references(a); err != nil {
				return nil, fmt.Errorf(`%q: %w`, field, err)
			}
		}
	}

	s.resources = DefaultResources()
	if c.Resources != nil {
		s.resources = *c.Resources
	}
	s.timeout = DefaultTimeout
	if c.Timeout > 0 {
		s.timeout = time.Duration(c.Timeout)
		if s.timeout < time.Second {
			return nil, fmt.Errorf(`"timeout": %s is below 1s, the least activeDeadlineSeconds`, s.timeout)
		}
	}
	limit := deadline - Reserve
	if limit < time.Second {
		return nil, fmt.Errorf("the action's deadline (%s) leaves no time for a job: it must be above %s, which the job keeps to stop its pod, read its log and clean up", deadline, Reserve+time.Second)
	}
	if s.timeout > limit {
		if c.Timeout > 0 {
			return nil, fmt.Errorf(`"timeout": %s leaves less than %s of the action's deadline (%s) to stop the pod, read its log and clean up; make it at most %s`, s.timeout, Reserve, deadline, limit.Truncate(time.Second))
		}
		s.timeout = limit
	}
	s.timeout = s.timeout.Truncate(time.Second)
	if c.BackoffLimit != nil {
		if *c.BackoffLimit < 0 || *c.BackoffLimit > 10 {
			return nil, fmt.Errorf(`"backoffLimit": %d is not between 0 and 10`, *c.BackoffLimit)
		}
		s.backoff = *c.BackoffLimit
	}
	s.ttl = DefaultTTL
	if c.TTLSecondsAfterFinished != nil {
		if *c.TTLSecondsAfterFinished < MinTTL {
			return nil, fmt.Errorf(`"ttlSecondsAfterFinished": %d is below %d: a redelivered event that found its job gone would run it again`, *c.TTLSecondsAfterFinished, MinTTL)
		}
		s.ttl = *c.TTLSecondsAfterFinished
	}
	s.logLines = DefaultLogLines
	if c.LogLines != nil {
		if *c.LogLines < 0 || *c.LogLines > MaxLogLines {
			return nil, fmt.Errorf(`"logLines": %d is not between 0 and %d`, *c.LogLines, MaxLogLines)
		}
		s.logLines = *c.LogLines
	}
	s.user, s.group = DefaultUser, DefaultUser
	if c.RunAsUser != nil {
		if *c.RunAsUser <= 0 {
			return nil, fmt.Errorf(`"runAsUser": %d: a job never runs as root`, *c.RunAsUser)
		}
		s.user = *c.RunAsUser
	}
	if c.RunAsGroup != nil {
		if *c.RunAsGroup <= 0 {
			return nil, fmt.Errorf(`"runAsGroup": %d: a job never runs in the root group`, *c.RunAsGroup)
		}
		s.group = *c.RunAsGroup
	}
	return s, nil
}

// declare adds a variable of the entry's, refusing a clash.
func (s *spec) declare(name, where string) error {
	switch {
	case !envName.MatchString(name):
		return fmt.Errorf(`%s: %q is not a variable name: letters, digits and "_", not starting with a digit`, where, name)
	case strings.HasPrefix(name, "LABELS_"):
		return fmt.Errorf(`%s: %s: LABELS_ is the prefix of the event's labels`, where, name)
	case s.declared[name]:
		return fmt.Errorf(`%s: %s is declared twice or is a built-in (%s)`, where, name, strings.Join(builtIn, ", "))
	}
	s.declared[name] = true
	return nil
}

// references checks the $(NAME) references of an argument: Kubernetes
// leaves an unknown one as it is, which a script then gets as text.
func (s *spec) references(arg string) error {
	for _, m := range varRef.FindAllStringSubmatch(arg, -1) {
		dollars := len(m[0]) - len(m[1]) - 2
		if dollars%2 == 0 {
			continue // $$(NAME) is the literal text $(NAME)
		}
		name := m[1]
		if s.eventText[name] || strings.HasPrefix(name, "LABELS_") {
			return fmt.Errorf(`$(%s) would paste the event's text into the command line, where it could add arguments, options or shell code; read it from the environment instead ("$%s" in a script, quoted)`, name, name)
		}
		if s.declared[name] || s.open {
			continue
		}
		known := make([]string, 0, len(s.declared))
		for n := range s.declared {
			known = append(known, n)
		}
		sort.Strings(known)
		return fmt.Errorf(`$(%s) names no variable of the container; declare it under "env" or "secrets" (known: %s)`, name, strings.Join(known, ", "))
	}
	return nil
}

// variable is the name of the variable a keyed SecretEnv sets.
func (r SecretEnv) variable() string {
	if r.Env != "" {
		return r.Env
	}
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(r.Key))
}

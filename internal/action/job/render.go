package job

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	template "github.com/DataDog/datadog-agent/pkg/template/text"
	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// Data is what env templates see: {{.Service}}, {{.Labels.owner}},
// {{.Value.cache}}, {{json .Value}}.
type Data struct {
	Project, Stage, Service string
	Labels                  map[string]string
	// Action is the action name as the event carried it.
	Action string
	// Value is the action's value decoded from JSON: nil when there is
	// none, else a map[string]any, []any, string, bool or json.Number.
	Value                     any
	Problem                   keptnv2.ProblemDetails
	KeptnContext, TriggeredID string
}

var funcs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

func newData(req action.Request) (Data, error) {
	d := Data{
		Project: req.Project, Stage: req.Stage, Service: req.Service, Labels: req.Labels,
		Action: req.Action, Problem: req.Problem, KeptnContext: req.KeptnContext, TriggeredID: req.TriggeredID,
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if len(bytes.TrimSpace(req.Value)) > 0 {
		if err := action.Decode(req.Value, &d.Value, false); err != nil {
			return Data{}, fmt.Errorf("the action's value: %w", err)
		}
	}
	return d, nil
}

// Labels and annotations of the Jobs. The keptn.sh ones are the job
// executor's, so that its users' selectors find ours too.
const (
	managedBy       = "app.kubernetes.io/managed-by"
	manager         = "keptn-action-provider"
	labelAction     = action.AnnotationPrefix + "action"
	labelContext    = "keptn.sh/context"
	labelEventID    = "keptn.sh/event-id"
	annotTriggered  = action.AnnotationPrefix + "triggeredid"
	annotContext    = action.AnnotationPrefix + "shkeptncontext"
	annotProblem    = action.AnnotationPrefix + "problem"
	maxProblemAnnot = 256
)

// Name is the Job's name for one run of an entry: the entry's name and a
// hash of the triggered event's id, so that a redelivered event finds the
// Job of its first delivery instead of starting a second one.
func Name(entry, triggeredID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(entry) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	prefix := strings.Trim(b.String(), "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	if prefix == "" {
		prefix = "remediation"
	}
	sum := sha256.Sum256([]byte(triggeredID))
	return prefix + "-" + hex.EncodeToString(sum[:5])
}

// render makes the Job of one run. It is pure: the same entry and event
// render the same Job, which is what makes the name safe to reuse.
func (h *Handler) render(ns string, req action.Request) (*batchv1.Job, error) {
	s := h.spec
	d, err := newData(req)
	if err != nil {
		return nil, err
	}
	env, err := h.environment(d, req)
	if err != nil {
		return nil, err
	}
	var envFrom []corev1.EnvFromSource
	for _, r := range s.Secrets {
		if r.Key == "" {
			envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.SecretName},
			}})
			continue
		}
		env = append(env, corev1.EnvVar{Name: r.variable(), ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.SecretName}, Key: r.Key,
			},
		}})
	}

	tmpSize := resource.MustParse("64Mi")
	mounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	volumes := []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &tmpSize}}}}
	if f := s.Files; f != nil {
		mode := int32(0o555) // scripts run as they are, and cannot be changed
		mounts = append(mounts, corev1.VolumeMount{Name: "files", MountPath: f.MountPath, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "files", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: f.ConfigMap}, DefaultMode: &mode,
		}}})
	}

	yes, no := true, false
	automount := s.ServiceAccount != ""
	deadline := int64(s.timeout.Seconds())
	grace := int64(GracePeriod.Seconds())
	backoff, ttl := s.backoff, s.ttl
	user, group := s.user, s.group
	podLabels := map[string]string{managedBy: manager, labelAction: labelValue(h.name)}
	labels := map[string]string{managedBy: manager, labelAction: labelValue(h.name)}
	if v := req.KeptnContext; v != "" && len(validation.IsValidLabelValue(v)) == 0 {
		labels[labelContext] = v
	}
	if v := req.TriggeredID; v != "" && len(validation.IsValidLabelValue(v)) == 0 {
		labels[labelEventID] = v
	}
	annotations := map[string]string{annotTriggered: req.TriggeredID, annotContext: req.KeptnContext}
	if t := req.Problem.ProblemTitle; t != "" {
		annotations[annotProblem] = truncate(t, maxProblemAnnot)
	}

	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: Name(h.name, req.TriggeredID), Namespace: ns, Labels: labels, Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            &backoff,
			ActiveDeadlineSeconds:   &deadline,
			TTLSecondsAfterFinished: &ttl,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: &grace,
					ServiceAccountName:            s.ServiceAccount,
					AutomountServiceAccountToken:  &automount,
					EnableServiceLinks:            &no,
					// The restricted Pod Security profile, whatever the
					// namespace enforces.
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &yes, RunAsUser: &user, RunAsGroup: &group, FSGroup: &group,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            ContainerName,
						Image:           s.Image,
						ImagePullPolicy: s.ImagePullPolicy,
						Command:         s.Command,
						Args:            s.Args,
						WorkingDir:      s.WorkingDir,
						Env:             env,
						EnvFrom:         envFrom,
						Resources:       s.resources,
						VolumeMounts:    mounts,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             &yes,
							AllowPrivilegeEscalation: &no,
							Privileged:               &no,
							ReadOnlyRootFilesystem:   &yes,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: volumes,
				},
			},
		},
	}, nil
}

// environment is the built-in variables, the event's labels and the
// entry's templates, in that order. Every value that comes from the event
// has its "$" doubled: Kubernetes expands $(NAME) in values, and an event
// must not be able to copy a secret's variable into one it controls.
func (h *Handler) environment(d Data, req action.Request) ([]corev1.EnvVar, error) {
	value := ""
	if len(bytes.TrimSpace(req.Value)) > 0 {
		value = string(req.Value)
	}
	env := []corev1.EnvVar{
		{Name: "KEPTN_PROJECT", Value: req.Project},
		{Name: "KEPTN_STAGE", Value: req.Stage},
		{Name: "KEPTN_SERVICE", Value: req.Service},
		{Name: "KEPTN_CONTEXT", Value: req.KeptnContext},
		{Name: "KEPTN_TRIGGERED_ID", Value: req.TriggeredID},
		{Name: "KEPTN_ACTION", Value: req.Action},
		{Name: "KEPTN_ACTION_VALUE", Value: value},
		{Name: "KEPTN_PROBLEM_TITLE", Value: req.Problem.ProblemTitle},
		{Name: "JOB_ACTION", Value: h.name},
	}
	keys := make([]string, 0, len(req.Labels))
	for k := range req.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	labels := strings.NewReplacer("-", "_", " ", "_")
	for _, k := range keys {
		// The job executor's naming: build-id is LABELS_BUILD_ID.
		name := "LABELS_" + strings.ToUpper(labels.Replace(k))
		if len(validation.IsEnvVarName(name)) > 0 {
			continue // not a name a pod may have; templates still see it in .Labels
		}
		env = append(env, corev1.EnvVar{Name: name, Value: req.Labels[k]})
	}
	for _, t := range h.spec.env {
		var b strings.Builder
		if err := t.tmpl.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("env %s: %w", t.name, err)
		}
		env = append(env, corev1.EnvVar{Name: t.name, Value: b.String()})
	}
	for i := range env {
		env[i].Value = strings.ReplaceAll(env[i].Value, "$", "$$")
	}
	return env, nil
}

// labelValue makes s a valid label value, or "" if it cannot be.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	v := b.String()
	if len(v) > validation.LabelValueMaxLength {
		v = v[:validation.LabelValueMaxLength]
	}
	return strings.Trim(v, "-_.")
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

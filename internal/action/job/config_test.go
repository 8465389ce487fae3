package job

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }
func num(v int) *int     { return &v }

func TestCheckRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no image", Config{}, `"image" is missing`},
		{"blank image", Config{Image: " "}, `"image" is missing`},
		{"image with spaces", Config{Image: "busybox; rm -rf /"}, `is not an image reference`},
		{"pull policy", Config{Image: "i", ImagePullPolicy: "Sometimes"}, `"imagePullPolicy"`},
		{"namespace", Config{Image: "i", Namespace: "Bad_NS"}, `"namespace": "Bad_NS"`},
		{"service account", Config{Image: "i", ServiceAccount: "A B"}, `"serviceAccount"`},
		{"env name", Config{Image: "i", Env: []EnvVar{{Name: "1X", Value: "v"}}}, `"env[0]": "1X" is not a variable name`},
		{"env built-in", Config{Image: "i", Env: []EnvVar{{Name: "KEPTN_SERVICE", Value: "v"}}}, `KEPTN_SERVICE is declared twice or is a built-in`},
		{"env twice", Config{Image: "i", Env: []EnvVar{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}}, `"env[1]": A is declared twice`},
		{"env labels prefix", Config{Image: "i", Env: []EnvVar{{Name: "LABELS_X", Value: "1"}}}, `LABELS_ is the prefix`},
		{"env template", Config{Image: "i", Env: []EnvVar{{Name: "A", Value: "{{.Service"}}}, `"env[0]" A: template`},
		{"env unknown field", Config{Image: "i", Env: []EnvVar{{Name: "A", Value: "{{.Nope}}"}}}, `env A:`},
		{"secret name", Config{Image: "i", Secrets: []SecretEnv{{SecretName: "Bad Name"}}}, `"secrets[0]": "secretName"`},
		{"secret env without key", Config{Image: "i", Secrets: []SecretEnv{{SecretName: "s", Env: "X"}}}, `"env" needs "key"`},
		{"secret clashes with env", Config{Image: "i", Env: []EnvVar{{Name: "TOKEN", Value: "x"}}, Secrets: []SecretEnv{{SecretName: "s", Key: "token"}}}, `"secrets[0]": TOKEN is declared twice`},
		{"files configmap", Config{Image: "i", Files: &Files{}}, `"files.configMap"`},
		{"files over tmp", Config{Image: "i", Files: &Files{ConfigMap: "c", MountPath: "/tmp"}}, `"files.mountPath" "/tmp"`},
		{"files relative", Config{Image: "i", Files: &Files{ConfigMap: "c", MountPath: "keptn"}}, `"files.mountPath" "keptn"`},
		{"undeclared reference", Config{Image: "i", Args: []string{"--token=$(API_TOKEN)"}}, `"args": $(API_TOKEN) names no variable of the container`},
		{"undeclared in command", Config{Image: "i", Command: []string{"$(SCRIPT)"}}, `"command": $(SCRIPT) names no variable`},
		{"timeout too long", Config{Image: "i", Timeout: action.Duration(5 * time.Minute)}, `"timeout": 5m0s leaves less than 15s of the action's deadline (5m0s) to stop the pod, read its log and clean up; make it at most 4m45s`},
		{"timeout below a second", Config{Image: "i", Timeout: action.Duration(500 * time.Millisecond)}, `"timeout": 500ms is below 1s`},
		{"label in args", Config{Image: "i", Command: []string{"sh", "-c", "curl $(LABELS_HOST)"}}, `"command": $(LABELS_HOST) would paste the event's text into the command line`},
		{"value in args", Config{Image: "i", Args: []string{"$(KEPTN_ACTION_VALUE)"}}, `"args": $(KEPTN_ACTION_VALUE) would paste`},
		{"templated env in args", Config{Image: "i", Env: []EnvVar{{Name: "HOST", Value: "{{.Value.host}}"}}, Args: []string{"--host=$(HOST)"}}, `"args": $(HOST) would paste the event's text`},
		{"ttl too short", Config{Image: "i", TTLSecondsAfterFinished: i32(60)}, `"ttlSecondsAfterFinished": 60 is below 3600`},
		{"backoff", Config{Image: "i", BackoffLimit: i32(11)}, `"backoffLimit": 11`},
		{"log lines", Config{Image: "i", LogLines: num(201)}, `"logLines": 201 is not between 0 and 200`},
		{"root", Config{Image: "i", RunAsUser: i64(0)}, `"runAsUser": 0: a job never runs as root`},
		{"root group", Config{Image: "i", RunAsGroup: i64(0)}, `"runAsGroup": 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New("e", tc.cfg, Options{Client: adapt.Clientset(newCluster().cs), Deadline: 5 * time.Minute})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckAcceptsReferences(t *testing.T) {
	for _, args := range [][]string{
		{"$(KEPTN_SERVICE)", "$(KEPTN_PROJECT)-$(KEPTN_STAGE)", "$(JOB_ACTION)", "$(TOKEN)", "$(X)"},
		{"$$(NOT_A_VARIABLE)", "$$(LABELS_OWNER)", "cost: $5"},
	} {
		_, err := New("e", Config{Image: "i", Args: args, Env: []EnvVar{{Name: "X", Value: "1"}},
			Secrets: []SecretEnv{{SecretName: "s", Key: "token"}}}, Options{Client: adapt.Clientset(newCluster().cs), Deadline: time.Minute})
		if err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
	// A whole Secret brings names no one can check.
	if _, err := New("e", Config{Image: "i", Args: []string{"$(ANYTHING)"}, Secrets: []SecretEnv{{SecretName: "s"}}},
		Options{Client: adapt.Clientset(newCluster().cs), Deadline: time.Minute}); err != nil {
		t.Error(err)
	}
}

func TestTimeoutDefaultsWithinTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		deadline time.Duration
		want     time.Duration
	}{
		{10 * time.Minute, DefaultTimeout},
		{5 * time.Minute, 4*time.Minute + 45*time.Second},
		{21 * time.Second, 6 * time.Second},
	} {
		s, err := check(Config{Image: "i"}, tc.deadline)
		if err != nil || s.timeout != tc.want {
			t.Errorf("deadline %s: timeout %v, %v; want %s", tc.deadline, s, err, tc.want)
		}
	}
	if _, err := check(Config{Image: "i"}, 15*time.Second); err == nil || !strings.Contains(err.Error(), "it must be above 16s") {
		t.Errorf("a deadline within the reserve: %v", err)
	}
}

func TestRenderIsRestrictedAndNamedForTheEvent(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "busybox:1.37", Files: &Files{ConfigMap: "scripts"}})
	j, err := h.render(ns, request())
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != Name("flush-cache", "trig-1") || len(validation.IsDNS1123Label(j.Name)) > 0 {
		t.Errorf("name %q", j.Name)
	}
	again, _ := h.render(ns, request())
	if again.Name != j.Name {
		t.Error("the same event rendered two names")
	}
	other := request()
	other.TriggeredID = "trig-2"
	if o, _ := h.render(ns, other); o.Name == j.Name {
		t.Error("two events rendered one name")
	}
	p := j.Spec.Template.Spec
	ctr := p.Containers[0]
	sc := ctr.SecurityContext
	switch {
	case *p.SecurityContext.RunAsNonRoot != true, *p.SecurityContext.RunAsUser != DefaultUser,
		p.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault,
		*sc.RunAsNonRoot != true, *sc.AllowPrivilegeEscalation, *sc.Privileged, !*sc.ReadOnlyRootFilesystem,
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL",
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("not restricted: pod %+v container %+v", p.SecurityContext, sc)
	}
	if *p.AutomountServiceAccountToken || p.ServiceAccountName != "" {
		t.Error("a service account token is mounted by default")
	}
	if p.RestartPolicy != corev1.RestartPolicyNever || *j.Spec.BackoffLimit != 0 || *j.Spec.ActiveDeadlineSeconds != 285 || *j.Spec.TTLSecondsAfterFinished != DefaultTTL {
		t.Errorf("spec: restart %s backoff %d deadline %d ttl %d", p.RestartPolicy, *j.Spec.BackoffLimit, *j.Spec.ActiveDeadlineSeconds, *j.Spec.TTLSecondsAfterFinished)
	}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["tmp"] != "/tmp" || mounts["files"] != DefaultMountPath {
		t.Errorf("mounts %v", mounts)
	}
	if j.Annotations[annotTriggered] != "trig-1" || j.Labels[labelContext] != "ctx-1" || j.Labels[labelEventID] != "trig-1" || j.Labels[managedBy] != manager {
		t.Errorf("labels %v annotations %v", j.Labels, j.Annotations)
	}
	if ctr.Resources.Limits.Memory().String() != "256Mi" {
		t.Errorf("resources %v", ctr.Resources)
	}

	named := c.handler(t, Config{Image: "i", ServiceAccount: "remediator"})
	j, _ = named.render(ns, request())
	if !*j.Spec.Template.Spec.AutomountServiceAccountToken || j.Spec.Template.Spec.ServiceAccountName != "remediator" {
		t.Error("a named service account gets no token")
	}
}

func TestEnvironmentIsTheJobExecutorsAndEscaped(t *testing.T) {
	c := newCluster()
	h := c.handler(t, Config{Image: "i", Env: []EnvVar{
		{Name: "CACHE", Value: "{{.Value.cache}}"},
		{Name: "REASON", Value: "{{.Problem.ProblemTitle}} on {{.Service}}"},
		{Name: "VALUE", Value: "{{json .Value}}"},
	}})
	req := request()
	req.Labels["team name"] = "a $(ADMIN_TOKEN) b"
	req.Value = json.RawMessage(`{"cache":"$(ADMIN_TOKEN)"}`)
	j, err := h.render(ns, req)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	for _, e := range j.Spec.Template.Spec.Containers[0].Env {
		got[e.Name] = e.Value
		order = append(order, e.Name)
	}
	want := map[string]string{
		"KEPTN_PROJECT": "sockshop", "KEPTN_STAGE": "production", "KEPTN_SERVICE": "carts",
		"KEPTN_CONTEXT": "ctx-1", "KEPTN_TRIGGERED_ID": "trig-1", "KEPTN_ACTION": "flush-cache",
		"KEPTN_ACTION_VALUE": `{"cache":"$$(ADMIN_TOKEN)"}`, "KEPTN_PROBLEM_TITLE": "Response time degradation",
		"JOB_ACTION":      "flush-cache",
		"LABELS_BUILD_ID": "42", "LABELS_OWNER": "team-a", "LABELS_TEAM_NAME": "a $$(ADMIN_TOKEN) b",
		"CACHE": "$$(ADMIN_TOKEN)", "REASON": "Response time degradation on carts", "VALUE": `{"cache":"$$(ADMIN_TOKEN)"}`,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("env %v", order)
	}
	if order[len(order)-3] != "CACHE" {
		t.Errorf("the entry's variables come last, after the event's: %v", order)
	}
}

func TestValidateRunsTemplatesOnAValue(t *testing.T) {
	h := newCluster().handler(t, Config{Image: "i", Env: []EnvVar{{Name: "CACHE", Value: "{{.Value.cache}}"}}})
	if err := h.Validate(json.RawMessage(`{"cache":"sessions"}`)); err != nil {
		t.Error(err)
	}
	if err := h.Validate(json.RawMessage(`{"other":1}`)); err == nil || !strings.Contains(err.Error(), "env CACHE") {
		t.Errorf("got %v", err)
	}
}

func TestNameIsAValidJobName(t *testing.T) {
	for _, entry := range []string{"flush-cache", "Flush Cache!", "", "---", strings.Repeat("x", 100), "ümlaut"} {
		n := Name(entry, "some-id")
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 || len(n) > 52 {
			t.Errorf("%q → %q: %v", entry, n, errs)
		}
	}
}

func TestLogTailIsBoundedAndClean(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		lines     int
		want      func(string) bool
	}{
		{"last lines", "1\n2\n3\n4\n", 2, func(m string) bool { return strings.HasSuffix(m, "last 2 log lines of pod p:\n3\n4") }},
		{"control characters", "\x1b[31mred\x1b[0m\x00\n", 5, func(m string) bool { return strings.HasSuffix(m, ":\n[31mred[0m") }},
		{"invalid utf-8", "a\xffb\n", 5, func(m string) bool { return strings.HasSuffix(m, ":\na\uFFFDb") }},
		{"empty", "\n\n", 5, func(m string) bool { return m == "; its log is empty" }},
		{"bytes", strings.Repeat(strings.Repeat("x", 1000)+"\n", 50), 50, func(m string) bool {
			return len(m) <= maxLogBytes+64 && strings.Contains(m, "last 8 log lines")
		}},
		{"one huge line", strings.Repeat("é", maxLogBytes), 5, func(m string) bool {
			i := strings.Index(m, "\n")
			return len(m[i+1:]) <= maxLogBytes && strings.HasPrefix(m[i+1:], "…é")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.logs.text = tc.log
			h := c.handler(t, Config{Image: "i", LogLines: num(tc.lines)})
			m := h.podTail(t.Context(), &corev1.Pod{}, nil)
			m = strings.Replace(m, "of pod :", "of pod p:", 1)
			if !tc.want(m) {
				t.Errorf("%q", m)
			}
		})
	}
}

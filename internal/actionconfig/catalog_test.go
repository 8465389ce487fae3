package actionconfig

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes/fake"

	sandboxseed "github.com/keptn-action-provider/action-provider/examples/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/audit"
	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/guard"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/ledger"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
	"github.com/keptn-action-provider/action-provider/internal/testsupport"
)

func testConfig(t *testing.T, catalogYAML string) config.Config {
	t.Helper()
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if catalogYAML != "" {
		path := filepath.Join(t.TempDir(), "actions.yaml")
		if err := os.WriteFile(path, []byte(catalogYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.ActionsConfig = path
	}
	return cfg
}

// testDeps are the catalog's dependencies on client, as the composition
// root makes them.
func testDeps(t *testing.T, client kube.Interface, log logrus.FieldLogger) Deps {
	t.Helper()
	book, err := ledger.New(client, ledger.Config{Namespace: "keptn", Identity: "test", EventTTL: time.Hour, LockTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return Deps{Client: client, Ledger: book, Audit: audit.New(client, "test"), Log: log}
}

func load(t *testing.T, catalogYAML string) (*Catalog, error) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(os.Stderr)
	return Load(testConfig(t, catalogYAML), testDeps(t, adapt.Clientset(fake.NewSimpleClientset()), log))
}

func TestBuiltInCatalogKeepsTodaysActions(t *testing.T) {
	c, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Registry.Names(), ","); got != "delete-pods,restart,rollback,scale,scaling" {
		t.Errorf("built-in names %s", got)
	}
	if c.Source != "built-in catalog" {
		t.Errorf("source %q", c.Source)
	}
}

func TestCatalogFile(t *testing.T) {
	c, err := load(t, `
actions:
  - name: scale-carts
    kind: scale
    aliases: [scaling]
    settings: {minReplicas: 2, maxReplicas: 6, maxStep: 2}
    guardrails: {cooldown: 10m}
  - name: restart
    kind: restart
    guardrails: {timeout: 1m, dryRun: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Registry.Names(), ","); got != "restart,scale-carts,scaling" {
		t.Errorf("names %s", got)
	}
	// The entry's settings bound it: its refusal names the bound.
	h, _, _ := c.Registry.Lookup("scaling")
	err = h.(action.Validator).Validate([]byte(`{"replicas": "x"}`))
	if err == nil || !strings.Contains(err.Error(), `"x" is not a whole number of replicas`) {
		t.Errorf("Validate through the catalog: %v", err)
	}
}

func TestGuardrailsWrapTheHandler(t *testing.T) {
	var got action.Request
	slow := testsupport.Handler(func(ctx context.Context, req action.Request) (action.Outcome, error) {
		got = req
		<-ctx.Done()
		return action.Outcome{}, ctx.Err()
	})
	g := guarded{handler: slow, name: "restart", timeout: 20 * time.Millisecond, dryRun: true}
	_, err := g.Run(context.Background(), action.Request{Action: "restart"})
	if err == nil || !strings.HasPrefix(err.Error(), `timed out after 20ms (guardrails.timeout of "restart")`) {
		t.Errorf("error %v, want the entry's timeout named", err)
	}
	if !got.DryRun {
		t.Error("guardrails.dryRun did not reach the handler")
	}
}

func TestCatalogErrorsNameFileEntryAndField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown kind", "actions:\n  - {name: page, kind: pager}\n",
			`actions[0] "page": kind: "pager" is not a kind of action; known: delete-pods, job, restart, rollback, scale`},
		{"unknown setting", "actions:\n  - {name: scale, kind: scale, settings: {maxReplica: 3}}\n",
			`actions[0] "scale": settings: unknown field "maxReplica"`},
		{"settings of the wrong type", "actions:\n  - {name: scale, kind: scale, settings: {maxReplicas: many}}\n",
			`actions[0] "scale": settings: maxReplicas: a string where int32 is expected`},
		{"bounds that contradict", "actions:\n  - {name: scale, kind: scale, settings: {minReplicas: 5, maxReplicas: 3}}\n",
			`actions[0] "scale": settings: scale action: SCALE_MAX_REPLICAS (3) is below SCALE_MIN_REPLICAS (5)`},
		{"settings for a kind without any", "actions:\n  - {name: restart, kind: restart, settings: {force: true}}\n",
			`actions[0] "restart": settings: unknown field "force"`},
		{"no name", "actions:\n  - {kind: restart}\n", `actions[0]: "name" is missing`},
		{"a name twice", "actions:\n  - {name: restart, kind: restart}\n  - {name: bounce, kind: restart, aliases: [restart]}\n",
			`actions[1] "bounce": register action "bounce": name "restart" is already taken by "restart"`},
		{"timeout above ACTION_TIMEOUT", "actions:\n  - {name: restart, kind: restart, guardrails: {timeout: 1h}}\n",
			`actions[0] "restart": guardrails.timeout: 1h0m0s is above ACTION_TIMEOUT (5m0s)`},
		{"bad duration", "actions:\n  - {name: restart, kind: restart, guardrails: {cooldown: soon}}\n",
			`"soon" is not a duration`},
		{"a typo at the top", "action:\n  - {name: restart, kind: restart}\n", `unknown field "action"`},
		{"empty", "actions: []\n", "no actions"},
		{"not YAML", "actions: [", "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "ACTIONS_CONFIG /") {
				t.Errorf("error %v\nwant the file named and %q", err, tt.want)
			}
		})
	}
}

func TestToggleFeatureEntry(t *testing.T) {
	t.Setenv("UNLEASH_ADMIN_TOKEN", "*:*.0123456789abcdef")
	c, err := load(t, `
actions:
  - name: toggle-feature
    kind: toggle-feature
    aliases: [featuretoggle]
    settings:
      url: http://unleash.unleash:4242
      token: {env: UNLEASH_ADMIN_TOKEN}
      environments: {production: production, staging: development}
`)
	if err != nil {
		t.Fatal(err)
	}
	h, _, ok := c.Registry.Lookup("featuretoggle")
	if !ok {
		t.Fatal("the alias does not answer")
	}
	if err := h.(action.Validator).Validate([]byte(`{"PromotionCampaign": "maybe"}`)); err == nil {
		t.Error("a value the handler refuses passed Validate")
	}

	_, err = load(t, "actions:\n  - {name: flags, kind: toggle-feature, settings: {url: 'http://unleash:4242', token: {env: NOT_SET_ANYWHERE}}}\n")
	if err == nil || !strings.Contains(err.Error(), `actions[0] "flags": settings:`) || !strings.Contains(err.Error(), "NOT_SET_ANYWHERE") {
		t.Errorf("a missing token: %v", err)
	}
}

func TestWebhookEntry(t *testing.T) {
	t.Setenv("PAGER_TOKEN", "pager-s3cr3t")
	c, err := load(t, `
actions:
  - name: page-oncall
    kind: webhook
    settings:
      url: "https://hooks.example.com/{{.Project}}/{{.Service}}"
      headers: {Authorization: 'Bearer {{secret "token"}}'}
      body: '{"problem": {{json .Problem.ProblemTitle}}}'
      secrets: {token: {env: PAGER_TOKEN}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.Registry.Lookup("page-oncall"); !ok {
		t.Fatal("page-oncall is not registered")
	}
	_, err = load(t, "actions:\n  - {name: hook, kind: webhook, settings: {url: 'https://h/{{.Projet}}'}}\n")
	if err == nil || !strings.Contains(err.Error(), `actions[0] "hook": settings:`) || !strings.Contains(err.Error(), ".Projet") {
		t.Errorf("a template typo: %v", err)
	}
}

// loadOn loads the catalog against client, with edit applied to the
// configuration the environment gives.
func loadOn(t *testing.T, client kube.Interface, catalogYAML string, edit func(*config.Config)) *Catalog {
	t.Helper()
	cfg := testConfig(t, catalogYAML)
	cfg.Cooldown = 0
	if edit != nil {
		edit(&cfg)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := Load(cfg, testDeps(t, client, log))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSandbox(t *testing.T) kube.Interface {
	t.Helper()
	c, err := sandbox.New(sandboxseed.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func run(t *testing.T, c *Catalog, name, value string) (action.Outcome, error) {
	t.Helper()
	h, _, ok := c.Registry.Lookup(name)
	if !ok {
		t.Fatalf("no handler for %q", name)
	}
	req := action.Request{Action: name, Project: "sockshop", Stage: "production", Service: "carts", DryRun: true, TriggeredID: "t"}
	if value != "" {
		req.Value = json.RawMessage(value)
	}
	return h.Run(context.Background(), req)
}

// TestDenyByDefault: with no configuration the provider changes nothing
// anywhere, and the refusal says what would allow it; the built-in
// catalog lets no event choose the namespace.
func TestDenyByDefault(t *testing.T) {
	// Unset, so that the defaults apply (t.Setenv restores them after).
	for _, v := range []string{"ALLOWED_NAMESPACES", "NAMESPACE_OPT_IN_LABEL"} {
		t.Setenv(v, "")
		if err := os.Unsetenv(v); err != nil {
			t.Fatal(err)
		}
	}
	client := newSandbox(t)
	for _, tc := range []struct {
		name, action, value string
		edit                func(*config.Config)
		rule, want          string // "" rule: allowed
	}{
		{"no configuration: Keptn's namespace", "restart", "", nil, guard.RuleNamespace,
			"namespace sockshop-production is not allowed: it matches none of ALLOWED_NAMESPACES (now empty); add it there, or set NAMESPACE_OPT_IN_LABEL=keptn-action-provider.io/remediation=enabled and label it: kubectl label namespace sockshop-production keptn-action-provider.io/remediation=enabled"},
		{"allowlisted", "restart", "", func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-production"} }, "", ""},
		{"opted in by its label", "restart", "", func(c *config.Config) { c.NamespaceOptIn = guard.SuggestedOptInLabel }, "", ""},
		{"opted in by its label: scale", "scale", `{"replicas": "+1"}`,
			func(c *config.Config) { c.NamespaceOptIn = guard.SuggestedOptInLabel },
			"", ""},
		{"the value names another namespace", "scale", `{"replicas": "+1", "namespace": "monitoring", "name": "node-exporter"}`,
			func(c *config.Config) { c.AllowedNamespaces = []string{"*"} }, guard.RuleTarget,
			`the value sets "namespace": "monitoring", but catalog entry "scale" does not let events choose the namespace, which is always <project>-<stage> (sockshop-production); to allow it, add namespace to target.override of catalog entry "scale" (the built-in catalog; declare the action in an ACTIONS_CONFIG file to change it)`},
		{"the value names another workload in the namespace", "restart", `{"kind": "sts", "name": "carts-db"}`,
			func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-production"} }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(t, loadOn(t, client, "", tc.edit), tc.action, tc.value)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("Run = %v, want it allowed", err)
				}
				return
			}
			var r *action.Refusal
			if !errors.As(err, &r) || r.Rule != tc.rule || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %+v, %v; want a %s refusal containing %q", got, err, tc.rule, tc.want)
			}
		})
	}
	// monitoring carries no opt-in label.
	c := loadOn(t, client, `
actions:
  - name: restart
    kind: restart
    target: {override: [namespace, name, kind]}
`, func(c *config.Config) { c.NamespaceOptIn = guard.SuggestedOptInLabel })
	_, err := run(t, c, "restart", `{"namespace": "monitoring", "kind": "ds", "name": "node-exporter"}`)
	if err == nil || !strings.Contains(err.Error(), "refused (namespace allowlist): namespace monitoring is not allowed: add it to ALLOWED_NAMESPACES (now empty) or label it: kubectl label namespace monitoring keptn-action-provider.io/remediation=enabled") {
		t.Fatalf("Run in an unlabelled namespace = %v", err)
	}
}

func TestEntryTarget(t *testing.T) {
	client := newSandbox(t)
	c := loadOn(t, client, `
actions:
  - name: restart
    kind: restart
    target: {override: [namespace, name, kind], namespaces: ["sockshop-*", "monitoring"]}
  - name: scale
    kind: scale
    target: {override: []}
  - name: rollback
    kind: rollback
`, func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-*"} })
	for _, tc := range []struct {
		name, action, value, want string // want "": allowed
	}{
		{"namespace within target.namespaces and the allowlist", "restart", `{"namespace": "sockshop-staging", "name": "carts-primary"}`, ""},
		{"namespace within target.namespaces but not the allowlist", "restart", `{"namespace": "monitoring", "kind": "ds", "name": "node-exporter"}`,
			`refused (namespace allowlist): namespace monitoring is not allowed`},
		{"namespace outside target.namespaces", "restart", `{"namespace": "kube-system", "name": "coredns"}`,
			`refused (target override): the value sets "namespace": "kube-system", which matches none of target.namespaces of catalog entry "restart" (actions[0] in ACTIONS_CONFIG /`},
		{"pinned entry: the service only", "scale", `{"replicas": "+1"}`, ""},
		{"pinned entry: no name", "scale", `{"replicas": "+1", "name": "carts-db", "kind": "sts"}`,
			`to allow it, add name to target.override of catalog entry "scale" (actions[1] in ACTIONS_CONFIG /`},
		{"no target: name and kind", "rollback", `{"kind": "sts", "name": "carts-db"}`, ""},
		{"no target: no namespace", "rollback", `{"namespace": "sockshop-staging", "name": "carts-primary"}`,
			`to allow it, add namespace to target.override of catalog entry "rollback" (actions[2] in ACTIONS_CONFIG /`},
		{"keys in another case are the same keys", "rollback", `{"NAMESPACE": "sockshop-staging"}`, `refused (target override)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, c, tc.action, tc.value)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Run = %v, want it allowed", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLintFlagsDisallowedOverride: lint sees the target rule through the
// handler's Validate, without a cluster or an event.
func TestLintFlagsDisallowedOverride(t *testing.T) {
	c := loadOn(t, adapt.Clientset(fake.NewSimpleClientset()), "", nil)
	for value, want := range map[string]string{
		`{"replicas": "+1", "namespace": "ingress-nginx", "name": "controller"}`: `refused (target override): the value sets "namespace": "ingress-nginx"`,
		`{"replicas": "+1", "name": "carts-db", "kind": "sts"}`:                  "",
		`"-1"`: "",
	} {
		h, _, _ := c.Registry.Lookup("scaling")
		err := h.(action.Validator).Validate(json.RawMessage(value))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Validate(%s) = %v, want %q", value, err, want)
		}
	}
}

func TestEntryTargetErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "actions:\n  - {name: restart, kind: restart, target: {override: [labels]}}\n",
			`actions[0] "restart": target.override: "labels" is not a key that chooses the target`},
		{"namespaces without namespace", "actions:\n  - {name: restart, kind: restart, target: {override: [name], namespaces: [a-*]}}\n",
			`actions[0] "restart": target.namespaces: only with "namespace" in target.override`},
		{"a kind that changes no workload", "actions:\n  - {name: hook, kind: webhook, target: {override: [name]}, settings: {url: 'https://h/'}}\n",
			`actions[0] "hook": target: a webhook action changes no workload`},
		{"a typo", "actions:\n  - {name: restart, kind: restart, target: {overide: [name]}}\n", `unknown field "overide"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := load(t, tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestJobEntry(t *testing.T) {
	catalog := `
actions:
  - name: flush-cache
    kind: job
    settings:
      image: busybox:1.37
      command: [sh, /keptn/flush.sh, "$(ADMIN_TOKEN)"]
      env: [{name: CACHE, value: "{{.Value.cache}}"}]
      secrets: [{secretName: cache-admin, key: token, env: ADMIN_TOKEN}]
      files: {configMap: flush-scripts}
    guardrails: {timeout: 2m}
`
	c := loadOn(t, newSandbox(t), catalog, func(c *config.Config) { c.AllowedNamespaces = []string{"sockshop-*"} })
	out, err := run(t, c, "flush-cache", `{"cache": "sessions"}`)
	if err != nil {
		t.Fatal(err)
	}
	// The entry's timeout bounds the Job's deadline, less the reserve.
	if !strings.HasPrefix(out.Message, "dry run: would create job sockshop-production/flush-cache-") || !strings.HasSuffix(out.Message, "deadline 1m45s") {
		t.Errorf("got %q", out.Message)
	}
	h, _, _ := c.Registry.Lookup("flush-cache")
	if err := h.(action.Validator).Validate(json.RawMessage(`{"other": 1}`)); err == nil || !strings.Contains(err.Error(), "env CACHE") {
		t.Errorf("lint of a value the template cannot use: %v", err)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"actions:\n  - {name: j, kind: job, settings: {command: [x]}}\n", `actions[0] "j": settings: "image" is missing`},
		{"actions:\n  - {name: j, kind: job, settings: {image: i, args: ['$(TOKEN)']}}\n", `actions[0] "j": settings: "args": $(TOKEN) names no variable`},
		{"actions:\n  - {name: j, kind: job, settings: {image: i, privileged: true}}\n", `actions[0] "j": settings: unknown field "privileged"`},
		{"actions:\n  - {name: j, kind: job, target: {override: [name]}, settings: {image: i}}\n", `target: a job action changes no workload`},
	} {
		if _, err := load(t, tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant %q", err, tc.want)
		}
	}
}

func TestKEDAPausesAreMaintained(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.AllowedNamespaces = []string{"shop-prod", "shop-dev"}
	d := testDeps(t, adapt.Clientset(fake.NewSimpleClientset()), logrus.New())
	d.Dynamic = sandbox.NewDynamic()
	c, err := Load(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	var u *keda.Unpauser
	for _, m := range c.Maintainers {
		if k, ok := m.(*keda.Unpauser); ok {
			u = k
		}
	}
	if u == nil || strings.Join(u.Namespaces, ",") != "shop-prod,shop-dev" {
		t.Fatalf("maintainers %v", c.Maintainers)
	}
	if got := literal([]string{"shop-*", "x"}); got != nil {
		t.Errorf("a glob: %v, want every namespace", got)
	}
	c.Maintain(context.Background()) // nothing paused: nothing to do, nothing fails
}

package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/config"
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

func load(t *testing.T, catalogYAML string) (*Catalog, error) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(os.Stderr)
	return Load(testConfig(t, catalogYAML), Deps{Client: fake.NewSimpleClientset(), Log: log})
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
	slow := action.HandlerFunc(func(ctx context.Context, req action.Request) (action.Outcome, error) {
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
			`actions[0] "page": kind: "pager" is not a kind of action; known: delete-pods, restart, rollback, scale`},
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

package actionconfig

import (
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/config"
	"github.com/keptn-action-provider/action-provider/internal/gate/gitops"
	"github.com/keptn-action-provider/action-provider/internal/sandbox"
)

func TestGitOpsGateIsOnByDefault(t *testing.T) {
	g, err := buildGitOps(config.Config{}, nil, Deps{Dynamic: sandbox.NewDynamic()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g.(*gitops.Gate); !ok {
		t.Fatalf("without a gitops section: %T, want the gate with its defaults", g)
	}
	// Lint has no dynamic client and runs nothing: the section is only checked.
	if g, err := buildGitOps(config.Config{}, []byte(`{"policy": "warn"}`), Deps{}); err != nil || g != nil {
		t.Errorf("offline: %v %v", g, err)
	}
	for raw, want := range map[string]string{
		`{"policy": "ignore"}`: "policy",
		`{"polcy": "warn"}`:    `unknown field "polcy"`,
		`{"suspendFor": "0s"}`: "suspendFor",
	} {
		if _, err := buildGitOps(config.Config{}, []byte(raw), Deps{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", raw, err, want)
		}
	}
}

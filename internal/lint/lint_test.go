package lint

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// strict is a handler whose value must be {"replicas": ...}.
type strict struct{}

func (strict) Run(context.Context, action.Request) (action.Outcome, error) {
	return action.Outcome{}, nil
}
func (strict) Validate(v json.RawMessage) error {
	if !strings.Contains(string(v), `"replicas"`) {
		return errors.New(`"replicas" is missing; accepted forms: {"replicas": "+1"}`)
	}
	return nil
}

func TestCheck(t *testing.T) {
	var reg action.Registry
	if err := reg.Register("scale", strict{}, "scaling"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		want []string // problems, in order; none means clean
	}{
		{"clean", `
apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
metadata: {name: carts}
spec:
  remediations:
    - problemType: Response time degradation
      actionsOnOpen:
        - {action: scale, name: up, description: up, value: {replicas: "+1"}}
`, nil},
		{"every kind of problem", `
apiVersion: spec.keptn.sh/0.1.3
kind: Remediation
metadata: {name: carts}
spec:
  remediations:
    - problemType: Response time degradation
      actionsOnOpen:
        - {action: scale, name: up, value: {replica: "+1"}}
        - {action: page-oncall, name: page}
    - problemType: Response time degradation
      actionsOnOpen: []
`, []string{
			`r.yaml: apiVersion: "spec.keptn.sh/0.1.3": remediation-service accepts only spec.keptn.sh/0.1.4`,
			`r.yaml: remediations[0] "Response time degradation" actionsOnOpen[0] "scale": the handler would refuse this value: "replicas" is missing; accepted forms`,
			`r.yaml: remediations[0] "Response time degradation" actionsOnOpen[1] "page-oncall": no catalog entry answers to action "page-oncall"; its sequence would wait until it times out`,
			`r.yaml: remediations[1] "Response time degradation": problemType is repeated`,
			`r.yaml: remediations[1] "Response time degradation": no actionsOnOpen`,
		}},
		{"not YAML", "a: [", []string{"r.yaml: not valid YAML"}},
		{"a typo in a key", "apiVersion: spec.keptn.sh/0.1.4\nkind: Remediation\nspecs: {}\n", []string{`r.yaml: not a remediation file: json: unknown field "specs"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check("r.yaml", []byte(tt.yaml), &reg)
			if len(got) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(got), len(tt.want), got)
			}
			for i, p := range got {
				if !strings.HasPrefix(p.String(), tt.want[i]) {
					t.Errorf("problem %d:\n got %s\nwant %s…", i, p, tt.want[i])
				}
			}
		})
	}
}

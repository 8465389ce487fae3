// Package lint checks remediation.yaml files against the action catalog
// before Keptn does, so that a typo is found in review and not at 3 a.m.:
// an action no provider answers to leaves its sequence waiting until it
// times out, and a value the handler refuses fails the remediation.
package lint

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/keptn/go-utils/pkg/lib/v0_1_4"
	"sigs.k8s.io/yaml"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// APIVersion is the only version Keptn 1.x's remediation-service reads.
const APIVersion = "spec.keptn.sh/0.1.4"

// Problem is one finding, located in its file.
type Problem struct {
	File    string
	Where   string // "remediations[1] \"Failure rate increase\" actionsOnOpen[0] \"scaling\""
	Message string
}

func (p Problem) String() string {
	if p.Where == "" {
		return p.File + ": " + p.Message
	}
	return p.File + ": " + p.Where + ": " + p.Message
}

// Check reads one remediation.yaml and reports every problem in it.
func Check(file string, data []byte, reg *action.Registry) []Problem {
	var problems []Problem
	report := func(where, format string, args ...any) {
		problems = append(problems, Problem{File: file, Where: where, Message: fmt.Sprintf(format, args...)})
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		report("", "not valid YAML: %v", err)
		return problems
	}
	var r v0_1_4.Remediation
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		report("", "not a remediation file: %v", err)
		return problems
	}
	if r.ApiVersion != APIVersion {
		report("apiVersion", "%q: remediation-service accepts only %s, and ignores this file", r.ApiVersion, APIVersion)
	}
	if r.Kind != "Remediation" {
		report("kind", "%q: want Remediation", r.Kind)
	}
	if len(r.Spec.Remediations) == 0 {
		report("spec.remediations", "no remediations")
	}
	seen := map[string]bool{}
	for i, m := range r.Spec.Remediations {
		where := fmt.Sprintf("remediations[%d] %q", i, m.ProblemType)
		switch {
		case m.ProblemType == "":
			report(where, "problemType is empty")
		case seen[m.ProblemType]:
			report(where, "problemType is repeated; remediation-service uses the first")
		}
		seen[m.ProblemType] = true
		if len(m.ActionsOnOpen) == 0 {
			report(where, "no actionsOnOpen")
		}
		for j, a := range m.ActionsOnOpen {
			where := fmt.Sprintf("%s actionsOnOpen[%d] %q", where, j, a.Action)
			h, _, ok := reg.Lookup(a.Action)
			if !ok {
				report(where, "no catalog entry answers to action %q; its sequence would wait until it times out (10 minutes by default); known: %v",
					a.Action, reg.Names())
				continue
			}
			v, ok := h.(action.Validator)
			if !ok {
				continue
			}
			var value json.RawMessage
			if a.Value != nil {
				if value, err = json.Marshal(a.Value); err != nil {
					report(where, "value: %v", err)
					continue
				}
			}
			if err := v.Validate(value); err != nil {
				report(where, "the handler would refuse this value: %v", err)
			}
		}
	}
	return problems
}

package scale

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want value
	}{
		// Object form: a string is absolute unless signed.
		{"absolute string", `{"replicas": "3"}`, value{change: change{n: 3}}},
		{"absolute zero", `{"replicas": "0"}`, value{change: change{n: 0}}},
		{"plus", `{"replicas": "+1"}`, value{change: change{n: 1, relative: true}}},
		{"minus", `{"replicas": "-2"}`, value{change: change{n: -2, relative: true}}},
		{"leading zero", `{"replicas": "03"}`, value{change: change{n: 3}}},
		// A number is absolute.
		{"absolute number", `{"replicas": 3}`, value{change: change{n: 3}}},
		{"number zero", `{"replicas": 0}`, value{change: change{n: 0}}},
		{"selector and dry run", `{"replicas": "+1", "namespace": "ns", "name": "web", "kind": "sts", "dryRun": true}`,
			value{change: change{n: 1, relative: true}, Options: pipeline.Options{Selector: workload.Selector{Namespace: "ns", Name: "web", Kind: "sts"}, DryRun: true}}},
		{"dry run false", `{"replicas": "2", "dryRun": false}`, value{change: change{n: 2}}},
		{"white space", " \n{ \"replicas\" : \"2\" }\n", value{change: change{n: 2}}},
		// helm-service "scaling": a bare string or number is always relative.
		{"legacy string", `"1"`, value{change: change{n: 1, relative: true}}},
		{"legacy string plus", `"+2"`, value{change: change{n: 2, relative: true}}},
		{"legacy string minus", `"-1"`, value{change: change{n: -1, relative: true}}},
		{"legacy number", `2`, value{change: change{n: 2, relative: true}}},
		{"legacy negative number", `-1`, value{change: change{n: -1, relative: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseValue(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatalf("parseValue(%s): %v", tt.raw, err)
			}
			if got != tt.want {
				t.Errorf("parseValue(%s) = %+v, want %+v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestParseValueErrors(t *testing.T) {
	tests := []struct {
		name    string
		raw     string // empty means a nil value
		wantErr string
	}{
		{"nil", "", "the action has no value"},
		{"blank", "  \n", "the action has no value"},
		{"null", "null", "the action has no value"},
		{"empty string", `""`, `"" is not a whole number of replicas`},
		{"word", `"abc"`, `"abc" is not a whole number of replicas`},
		{"legacy zero", `"0"`, `"0" would change nothing`},
		{"legacy plus zero", `"+0"`, `"+0" would change nothing`},
		{"legacy number zero", `0`, `"0" would change nothing`},
		{"legacy fraction", `1.5`, `"1.5" is not a whole number of replicas`},
		{"legacy exponent", `1e2`, `"1e2" is not a whole number of replicas`},
		{"legacy space", `" 1"`, `" 1" is not a whole number of replicas`},
		{"legacy out of range", `"99999999999"`, `"99999999999" is out of range`},
		{"array", `["1"]`, "a value of type an array is not understood"},
		{"boolean", `true`, "a value of type a boolean is not understood"},
		{"not json", `replicas: 2`, "not valid JSON"},
		{"two values", `"1" "2"`, "more than one value"},
		{"truncated", `{"replicas": "2"`, "not valid JSON"},
		{"empty object", `{}`, `"replicas" is missing`},
		{"only dry run", `{"dryRun": true}`, `"replicas" is missing`},
		{"null replicas", `{"replicas": null}`, `"replicas" is missing`},
		{"typo", `{"replica": "2"}`, `unknown key "replica"`},
		{"unknown key", `{"replicas": "2", "force": true}`, `unknown key "force"`},
		{"replicas word", `{"replicas": "abc"}`, `"replicas": "abc" is not a whole number of replicas`},
		{"replicas plus zero", `{"replicas": "+0"}`, `"replicas": "+0" would change nothing`},
		{"replicas minus zero", `{"replicas": "-0"}`, `"replicas": "-0" would change nothing`},
		{"replicas fraction", `{"replicas": 1.5}`, `"replicas": 1.5 is not a whole number of replicas`},
		{"replicas string fraction", `{"replicas": "1.5"}`, `"replicas": "1.5" is not a whole number of replicas`},
		{"replicas negative number", `{"replicas": -1}`, `"replicas": -1 is negative; for a relative change write it as a string, "-1"`},
		{"replicas out of range", `{"replicas": 3000000000}`, `"replicas": 3000000000 is not a whole number of replicas`},
		{"replicas boolean", `{"replicas": true}`, `"replicas" is a boolean, not a string or a number`},
		{"replicas object", `{"replicas": {"n": 1}}`, `"replicas" is an object, not a string or a number`},
		{"dry run not boolean", `{"replicas": "1", "dryRun": "yes"}`, `"dryRun" is a JSON string, want bool`},
		{"name not string", `{"replicas": "1", "name": 5}`, `"name" is a JSON number, want string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			if tt.raw != "" {
				raw = json.RawMessage(tt.raw)
			}
			got, err := parseValue(raw)
			if err == nil {
				t.Fatalf("parseValue(%s) = %+v, want an error", tt.raw, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseValue(%s) error = %q, want it to contain %q", tt.raw, err, tt.wantErr)
			}
		})
	}
}

func TestChangeApply(t *testing.T) {
	tests := []struct {
		c       change
		current int32
		want    int64
	}{
		{change{n: 3}, 1, 3},
		{change{n: 0}, 5, 0},
		{change{n: 1, relative: true}, 1, 2},
		{change{n: -2, relative: true}, 1, -1},
		{change{n: 1<<31 - 1, relative: true}, 1<<31 - 1, 1<<32 - 2},
	}
	for _, tt := range tests {
		if got := tt.c.apply(tt.current); got != tt.want {
			t.Errorf("%+v.apply(%d) = %d, want %d", tt.c, tt.current, got, tt.want)
		}
	}
}

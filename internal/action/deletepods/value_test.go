package deletepods_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/deletepods"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		name string
		raw  string // empty means a nil value
		want deletepods.Value
	}{
		{"nil", "", deletepods.Value{}},
		{"blank", " \n", deletepods.Value{}},
		{"null", "null", deletepods.Value{}},
		{"empty object", "{}", deletepods.Value{}},
		{"count", `{"maxPods": 2}`, deletepods.Value{MaxPods: deletepods.Bound{N: 2}}},
		{"count as string", `{"maxPods": "2"}`, deletepods.Value{MaxPods: deletepods.Bound{N: 2}}},
		{"percentage", `{"maxPods": "25%"}`, deletepods.Value{MaxPods: deletepods.Bound{N: 25, Percent: true}}},
		{"whole", `{"maxPods": "100%"}`, deletepods.Value{MaxPods: deletepods.Bound{N: 100, Percent: true}}},
		{"large count", `{"maxPods": 1000}`, deletepods.Value{MaxPods: deletepods.Bound{N: 1000}}},
		{"null maxPods", `{"maxPods": null}`, deletepods.Value{}},
		{"all", `{"all": true}`, deletepods.Value{All: true}},
		{"all false", `{"all": false, "maxPods": 1}`, deletepods.Value{MaxPods: deletepods.Bound{N: 1}}},
		{"options", `{"namespace": "ns", "name": "carts-db", "kind": "sts", "dryRun": true, "timeout": "90s", "maxPods": "50%"}`,
			deletepods.Value{
				Options: pipeline.Options{
					Selector: workload.Selector{Namespace: "ns", Name: "carts-db", Kind: "sts"},
					DryRun:   true,
					Timeout:  action.Duration(90 * time.Second),
				},
				MaxPods: deletepods.Bound{N: 50, Percent: true},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			if tt.raw != "" {
				raw = json.RawMessage(tt.raw)
			}
			got, err := deletepods.ParseValue(raw)
			if err != nil {
				t.Fatalf("ParseValue(%s): %v", tt.raw, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseValue(%s) = %+v, want %+v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestParseValueErrors(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string // the whole error text
	}{
		{"string", `"2"`, "the value is a string; it must be empty or an object"},
		{"number", `2`, "the value is a number; it must be empty or an object"},
		{"array", `[]`, "the value is an array; it must be empty or an object"},
		{"boolean", `true`, "the value is a boolean; it must be empty or an object"},
		{"typo", `{"maxPod": 2}`, `unknown key "maxPod"`},
		{"zero", `{"maxPods": 0}`, `"maxPods": 0 is not a positive number of pods`},
		{"negative", `{"maxPods": -1}`, `"maxPods": -1 is not a positive number of pods`},
		{"zero string", `{"maxPods": "0"}`, `"maxPods": "0" is not a positive number of pods`},
		{"fraction", `{"maxPods": 1.5}`, `"maxPods": 1.5 is not a whole number of pods, nor a percentage such as "25%"`},
		{"exponent", `{"maxPods": 1e2}`, `"maxPods": 1e2 is not a whole number of pods, nor a percentage such as "25%"`},
		{"word", `{"maxPods": "two"}`, `"maxPods": "two" is not a whole number of pods, nor a percentage such as "25%"`},
		{"empty string", `{"maxPods": ""}`, `"maxPods": "" is not a whole number of pods, nor a percentage such as "25%"`},
		{"zero percent", `{"maxPods": "0%"}`, `"maxPods": "0%" is not a percentage from 1% to 100%`},
		{"over a hundred percent", `{"maxPods": "150%"}`, `"maxPods": "150%" is not a percentage from 1% to 100%`},
		{"negative percent", `{"maxPods": "-5%"}`, `"maxPods": "-5%" is not a percentage from 1% to 100%`},
		{"fractional percent", `{"maxPods": "2.5%"}`, `"maxPods": "2.5%" is not a percentage from 1% to 100%`},
		{"bare percent sign", `{"maxPods": "%"}`, `"maxPods": "%" is not a percentage from 1% to 100%`},
		{"boolean maxPods", `{"maxPods": true}`, `"maxPods" is a boolean, not a number such as 2 or a percentage such as "25%"`},
		{"array maxPods", `{"maxPods": [2]}`, `"maxPods" is an array, not a number such as 2 or a percentage such as "25%"`},
		{"all not boolean", `{"all": "yes"}`, `"all" is a JSON string, want bool`},
		{"timeout without unit", `{"timeout": 90}`, `a duration is a string such as "90s" or "5m", not 90`},
		{"not JSON", `maxPods: 2`, "not valid JSON: "},
		{"two values", `{} {}`, "not valid JSON: more than one value"},
		{"truncated", `{"maxPods": 2`, "not valid JSON: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deletepods.ParseValue(json.RawMessage(tt.raw))
			if err == nil {
				t.Fatalf("ParseValue(%s) = %+v, want an error", tt.raw, got)
			}
			// "not valid JSON: " ends with the decoder's own words.
			if strings.HasSuffix(tt.wantErr, ": ") {
				if !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("ParseValue(%s) error = %q, want it to start with %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err.Error() != tt.wantErr {
				t.Errorf("ParseValue(%s) error =\n%s\nwant\n%s", tt.raw, err, tt.wantErr)
			}
		})
	}
}

func TestAcceptedForms(t *testing.T) {
	// Every form the text offers must parse.
	for _, form := range []string{`{"maxPods": 2}`, `{"maxPods": "25%"}`, `{"all": true}`} {
		if !strings.Contains(deletepods.AcceptedForms, form) {
			t.Errorf("AcceptedForms does not offer %s", form)
		}
		if _, err := deletepods.ParseValue(json.RawMessage(form)); err != nil {
			t.Errorf("ParseValue(%s), a form AcceptedForms offers: %v", form, err)
		}
	}
	if !strings.HasSuffix(deletepods.AcceptedForms, pipeline.OptionKeys) {
		t.Errorf("AcceptedForms = %q, want it to end with the option keys", deletepods.AcceptedForms)
	}
}

func TestBoundOf(t *testing.T) {
	tests := []struct {
		b       deletepods.Bound
		desired int
		want    int
	}{
		{deletepods.Bound{N: 3}, 10, 3},
		{deletepods.Bound{N: 3}, 1, 3}, // a count is not limited by the replicas
		{deletepods.Bound{N: 50, Percent: true}, 4, 2},
		{deletepods.Bound{N: 50, Percent: true}, 5, 2}, // rounded down
		{deletepods.Bound{N: 50, Percent: true}, 1, 1}, // but at least one
		{deletepods.Bound{N: 50, Percent: true}, 0, 1},
		{deletepods.Bound{N: 100, Percent: true}, 7, 7},
		{deletepods.Bound{N: 1, Percent: true}, 250, 2},
	}
	for _, tt := range tests {
		if got := tt.b.Of(tt.desired); got != tt.want {
			t.Errorf("Bound %s .Of(%d) = %d, want %d", tt.b, tt.desired, got, tt.want)
		}
	}
}

func TestValueJSONRoundTrip(t *testing.T) {
	tests := []struct {
		v    deletepods.Value
		want string
	}{
		{deletepods.Value{}, `{}`},
		{deletepods.Value{MaxPods: deletepods.Bound{N: 2}}, `{"maxPods":2}`},
		{deletepods.Value{All: true, MaxPods: deletepods.Bound{N: 25, Percent: true}}, `{"all":true,"maxPods":"25%"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", tt.v, err)
		}
		if string(b) != tt.want {
			t.Errorf("Marshal(%+v) = %s, want %s", tt.v, b, tt.want)
		}
		back, err := deletepods.ParseValue(b)
		if err != nil {
			t.Fatalf("ParseValue(%s): %v", b, err)
		}
		if !reflect.DeepEqual(back, tt.v) {
			t.Errorf("ParseValue(%s) = %+v, want %+v", b, back, tt.v)
		}
	}
}

package rollback_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestParseValue(t *testing.T) {
	no := false
	tests := []struct {
		name string
		raw  string // empty means a nil value
		want rollback.Value
	}{
		{"nil", "", rollback.Value{}},
		{"blank", " \n", rollback.Value{}},
		{"null", "null", rollback.Value{}},
		{"empty string", `""`, rollback.Value{}},
		{"empty object", `{}`, rollback.Value{}},
		{"to revision", `{"toRevision": 3}`, rollback.Value{ToRevision: 3}},
		{"to revision zero", `{"toRevision": 0}`, rollback.Value{}},
		{"to revision null", `{"toRevision": null}`, rollback.Value{}},
		{"options", `{"toRevision": 2, "namespace": "ns", "name": "web", "kind": "sts", "dryRun": true, "wait": false, "timeout": "90s"}`,
			rollback.Value{ToRevision: 2, Options: pipeline.Options{
				Selector: workload.Selector{Namespace: "ns", Name: "web", Kind: "sts"},
				DryRun:   true, Wait: &no, Timeout: action.Duration(90 * time.Second),
			}}},
		{"options only", `{"name": "web"}`, rollback.Value{Options: pipeline.Options{Selector: workload.Selector{Name: "web"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw json.RawMessage
			if tt.raw != "" {
				raw = json.RawMessage(tt.raw)
			}
			got, err := rollback.ParseValue(raw)
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
		wantErr string // the whole error, as a person reads it
	}{
		{"wrong case key", `{"torevision": 3}`, `unknown key "torevision"`},
		{"unknown key", `{"toRevision": 3, "force": true}`, `unknown key "force"`},
		{"wrong case option", `{"dryrun": true}`, `unknown key "dryrun"`},
		{"wrong case repeated key", `{"toRevision": 3, "ToRevision": 4}`, `unknown key "ToRevision"`},
		{"string revision", `{"toRevision": "2"}`, `"toRevision" is the string "2"; write the revision as a number: {"toRevision": 2}`},
		{"word revision", `{"toRevision": "previous"}`, `"toRevision" is the string "previous", not a revision number such as 3`},
		{"negative", `{"toRevision": -1}`, `"toRevision": -1 is negative; revisions count up from 1, and 0 or no "toRevision" means the previous revision`},
		{"fraction", `{"toRevision": 1.5}`, `"toRevision": 1.5 is not a whole revision number`},
		{"exponent", `{"toRevision": 1e3}`, `"toRevision": 1e3 is not a whole revision number`},
		{"out of range", `{"toRevision": 99999999999999999999}`, `"toRevision": 99999999999999999999 is not a whole revision number`},
		{"boolean revision", `{"toRevision": true}`, `"toRevision" is a boolean, not a revision number such as 3`},
		{"bare number", `3`, "the value is a number; it must be empty or an object"},
		{"bare string", `"3"`, "the value is a string; it must be empty or an object"},
		{"array", `[3]`, "the value is an array; it must be empty or an object"},
		{"option of the wrong type", `{"dryRun": "yes"}`, `"dryRun" is a JSON string, want bool`},
		{"bad timeout", `{"timeout": 90}`, `a duration is a string such as "90s" or "5m", not 90`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rollback.ParseValue(json.RawMessage(tt.raw))
			if err == nil {
				t.Fatalf("ParseValue(%s) = %+v, want error %q", tt.raw, got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("ParseValue(%s) error:\n got %q\nwant %q", tt.raw, err, tt.wantErr)
			}
		})
	}
	for _, tt := range []struct{ name, raw, wantErr string }{
		{"not json", `toRevision: 2`, "not valid JSON"},
		{"truncated", `{"toRevision": 2`, "not valid JSON"},
		{"two values", `{} {}`, "not valid JSON: more than one value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rollback.ParseValue(json.RawMessage(tt.raw))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseValue(%s) error = %v, want one containing %q", tt.raw, err, tt.wantErr)
			}
		})
	}
}

func TestAcceptedFormsNamesTheOptions(t *testing.T) {
	for _, key := range []string{`"toRevision"`, `"dryRun"`, `"namespace"`, `"timeout"`} {
		if !strings.Contains(rollback.AcceptedForms, key) {
			t.Errorf("AcceptedForms does not mention %s: %s", key, rollback.AcceptedForms)
		}
	}
}

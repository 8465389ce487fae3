package action

import (
	"fmt"
	"reflect"
	"testing"
)

// scalarInputs are values whose decode into an any may take scalar's
// short path, or must not.
var scalarInputs = []string{
	`"3"`, ` "+1" `, `"-1"`, `""`, `"a\u00e9\n"`, `"\ud800"`, `5`, `-2`, `0`, `1.5`, `1e3`, `-0.0`, "\t7\n",
	`"x" "y"`, `"x" garbage`, `1 2`, `-`, `01`, `1.`, `"unterminated`, `"bad \x escape"`, `null`, `true`, `{}`, `[1]`, ``, ` `,
	`{"replicas": "+1"}`, `1}`,
}

// TestScalarAsDecoder: the short path gives what the Decoder gives, value
// and error alike.
func TestScalarAsDecoder(t *testing.T) {
	for _, in := range scalarInputs {
		checkScalar(t, in)
	}
}

func FuzzScalarAsDecoder(f *testing.F) {
	for _, in := range scalarInputs {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) { checkScalar(t, in) })
}

func checkScalar(t *testing.T, in string) {
	t.Helper()
	var got, want any
	gotErr := Decode([]byte(in), &got, false)
	wantErr := decode([]byte(in), &want, false)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(%q) = %#v, %v; the Decoder gives %#v, %v", in, got, gotErr, want, wantErr)
	}
}

func TestHasKey(t *testing.T) {
	type embedded struct {
		Wait bool `json:"wait"`
	}
	type value struct {
		embedded
		Replicas string `json:"replicas,omitempty"`
		Skipped  string `json:"-"`
		Plain    int
		hidden   int
	}
	_ = value{}.hidden
	for key, want := range map[string]bool{"wait": true, "replicas": true, "Plain": true, "Skipped": false, "-": false,
		"hidden": false, "Replicas": false, "plain": false, "embedded": false} {
		if got := hasKey(reflect.TypeFor[value](), key); got != want {
			t.Errorf("hasKey(%q) = %v, want %v", key, got, want)
		}
	}
}

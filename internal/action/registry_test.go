package action

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// passes is a handler that always passes with its message.
type passes string

func (p passes) Run(context.Context, Request) (Outcome, error) { return Pass(string(p)), nil }

func named(msg string) Handler { return passes(msg) }

func TestRegistry(t *testing.T) {
	var r Registry // the zero value is ready to use
	if _, _, ok := r.Lookup("scale"); ok {
		t.Fatal("an empty registry found an action")
	}
	if err := r.Register("scale", named("scale"), "scaling"); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("restart", named("restart")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, canonical, runs string
		ok                    bool
	}{
		{"scale", "scale", "scale", true},
		{"scaling", "scale", "scale", true},
		{"restart", "restart", "restart", true},
		{"Scale", "", "", false}, // Keptn action names are case-sensitive
		{"page-oncall", "", "", false},
		{"", "", "", false},
	} {
		h, canonical, ok := r.Lookup(tc.name)
		if ok != tc.ok || canonical != tc.canonical {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.name, canonical, ok, tc.canonical, tc.ok)
			continue
		}
		if ok {
			out, _ := h.Run(context.Background(), Request{})
			if out.Message != tc.runs {
				t.Errorf("Lookup(%q) ran %q, want %q", tc.name, out.Message, tc.runs)
			}
		}
	}
	if got := r.Names(); !slices.Equal(got, []string{"restart", "scale", "scaling"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestRegisterRefusesWiringMistakes(t *testing.T) {
	var r Registry
	if err := r.Register("scale", named("a"), "scaling"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		h       Handler
		aliases []string
		says    string
	}{
		{"scale", named("b"), nil, `name "scale" is already taken by "scale"`},
		{"resize", named("b"), []string{"scaling"}, `name "scaling" is already taken by "scale"`},
		{"", named("b"), nil, "empty name"},
		{"restart", nil, nil, "nil handler"},
	} {
		err := r.Register(tc.name, tc.h, tc.aliases...)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Register(%q, %v) = %v, want an error saying %q", tc.name, tc.aliases, err, tc.says)
		}
	}
	// A refused registration leaves nothing half-registered.
	if _, _, ok := r.Lookup("resize"); ok {
		t.Error(`"resize" was registered although its alias clashed`)
	}
}

func TestOutcomeConstructors(t *testing.T) {
	for _, tc := range []struct {
		got  Outcome
		want string
	}{{Pass("p"), "pass"}, {Warning("w"), "warning"}, {Fail("f"), "fail"}} {
		if string(tc.got.Result) != tc.want {
			t.Errorf("%q has result %q, want %q", tc.got.Message, tc.got.Result, tc.want)
		}
	}
}

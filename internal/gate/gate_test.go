package gate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// fake admits with warning, or refuses, and records what it was told.
type fake struct {
	name    string
	refuse  bool
	warning string
	log     *[]string
}

func (f fake) Admit(_ context.Context, s Subject) (Admission, error) {
	*f.log = append(*f.log, "admit "+f.name)
	if f.refuse {
		return Admission{}, action.Refuse(f.name, "no")
	}
	return Admission{Warning: f.warning, Done: func(_ context.Context, changed bool) {
		*f.log = append(*f.log, f.name+" done changed="+map[bool]string{true: "true", false: "false"}[changed])
	}}, nil
}

func TestChainRunsInOrderAndReleasesOnRefusal(t *testing.T) {
	var log []string
	c := Chain{fake{name: "a", warning: "w1", log: &log}, fake{name: "b", log: &log}, fake{name: "c", refuse: true, log: &log}, fake{name: "d", log: &log}}
	_, err := c.Admit(context.Background(), Subject{})
	var r *action.Refusal
	if !errors.As(err, &r) || r.Rule != "c" {
		t.Fatalf("got %v, want c's refusal", err)
	}
	if got := strings.Join(log, ", "); got != "admit a, admit b, admit c, b done changed=false, a done changed=false" {
		t.Errorf("got %s", got)
	}
}

func TestChainJoinsWarningsAndFinishes(t *testing.T) {
	var log []string
	c := Chain{fake{name: "a", warning: "w1", log: &log}, fake{name: "b", warning: "w2", log: &log}}
	a, err := c.Admit(context.Background(), Subject{})
	if err != nil || a.Warning != "w1; w2" {
		t.Fatalf("got %+v %v", a, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.Finish(ctx, true)
	if got := strings.Join(log, ", "); got != "admit a, admit b, b done changed=true, a done changed=true" {
		t.Errorf("got %s", got)
	}
	var zero Chain
	if a, err := zero.Admit(context.Background(), Subject{}); err != nil || a.Done != nil || a.Warning != "" {
		t.Errorf("the zero chain: %+v %v", a, err)
	}
	Admission{}.Finish(ctx, true) // no Done: nothing to call
}

package deletepods

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
)

// AcceptedForms is what a value error should be followed by: the person
// reading it in the Keptn Bridge has a remediation.yaml to fix.
const AcceptedForms = `no value (evict the unhealthy pods, at most half of the replicas), ` +
	`or {"maxPods": 2}, {"maxPods": "25%"}, {"all": true}; an object may also set ` + pipeline.OptionKeys

// Value is the decoded value of the delete-pods action.
type Value struct {
	pipeline.Options
	// All evicts every pod of the workload, healthy or not: a clean sweep
	// when the pods share a bad state that readiness does not show.
	All bool `json:"all,omitempty"`
	// MaxPods bounds this one action; the zero Bound means the default,
	// half of the desired replicas. Options.MaxPods caps it either way.
	MaxPods Bound `json:"maxPods,omitzero"`
}

// ParseValue decodes data.action.value. No value, or null, is the zero
// Value: evict the unhealthy pods within the default bound. An object is
// decoded strictly, so that a typo such as "maxPod" is an error rather than
// an eviction with the default bound. Errors do not repeat AcceptedForms;
// the caller appends it.
func ParseValue(raw json.RawMessage) (Value, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Value{}, nil
	}
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return Value{}, err
	}
	switch v.(type) {
	case nil:
		return Value{}, nil
	case map[string]any:
		var val Value
		if err := action.Decode(raw, &val, true); err != nil {
			return Value{}, err
		}
		return val, nil
	}
	return Value{}, fmt.Errorf("the value is %s; it must be empty or an object", action.JSONType(v))
}

// Bound is the most pods one action evicts: a count, or a percentage of the
// workload's desired replicas. The zero Bound is unset.
type Bound struct {
	// N is the number of pods, or with Percent the percentage (1 to 100).
	N       int
	Percent bool
}

// IsZero reports whether the bound is unset.
func (b Bound) IsZero() bool { return b.N == 0 }

// String writes the bound as a value would: "2" or "25%".
func (b Bound) String() string {
	if b.Percent {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// Of returns the number of pods the bound allows for a workload of desired
// replicas: a percentage is rounded down, but never to fewer than one pod,
// or the action could never do anything to a small workload.
func (b Bound) Of(desired int) int {
	if !b.Percent {
		return b.N
	}
	return max(desired*b.N/100, 1)
}

// MarshalJSON writes a count as a number and a percentage as a string, the
// forms UnmarshalJSON reads.
func (b Bound) MarshalJSON() ([]byte, error) {
	if b.Percent {
		return json.Marshal(b.String())
	}
	return json.Marshal(b.N)
}

// UnmarshalJSON reads 2, "2" or "25%". Zero is refused rather than read as
// "unset", since whoever wrote it meant something; so is a fraction, rather
// than rounded.
func (b *Bound) UnmarshalJSON(raw []byte) error {
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return fmt.Errorf(`"maxPods": %w`, err)
	}
	switch v := v.(type) {
	case nil:
		*b = Bound{}
		return nil
	case json.Number:
		n, err := count(v.String())
		if err != nil {
			return fmt.Errorf(`"maxPods": %s %w`, v, err)
		}
		*b = Bound{N: n}
		return nil
	case string:
		if pct, ok := strings.CutSuffix(v, "%"); ok {
			n, err := strconv.Atoi(pct)
			if err != nil || n < 1 || n > 100 {
				return fmt.Errorf(`"maxPods": %q is not a percentage from 1%% to 100%%`, v)
			}
			*b = Bound{N: n, Percent: true}
			return nil
		}
		n, err := count(v)
		if err != nil {
			return fmt.Errorf(`"maxPods": %q %w`, v, err)
		}
		*b = Bound{N: n}
		return nil
	}
	return fmt.Errorf(`"maxPods" is %s, not a number such as 2 or a percentage such as "25%%"`, action.JSONType(v))
}

// count reads a positive whole number of pods. Its errors read after the
// number they refuse.
func count(s string) (int, error) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return 0, errors.New(`is not a whole number of pods, nor a percentage such as "25%"`)
	case n < 1:
		return 0, errors.New("is not a positive number of pods")
	}
	return n, nil
}

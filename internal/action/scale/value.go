package scale

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/keda"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
)

// acceptedForms is appended to every value error: the person reading it in
// the Keptn Bridge has a remediation.yaml to fix.
const acceptedForms = `accepted forms: {"replicas": "3"} or {"replicas": 3} (absolute), ` +
	`{"replicas": "+1"} or {"replicas": "-1"} (relative), ` +
	`or "1" or "-1" (relative, helm-service "scaling" format); ` +
	`an object may also set "kedaPause" (how long a KEDA ScaledObject stays paused at the count, "1h") and ` + pipeline.OptionKeys

// change is the change of replica count an action asks for.
type change struct {
	// n is the count when absolute, the signed difference when relative.
	n        int32
	relative bool
}

// apply returns the count the change leads to from current. It is an int64
// so that a sum outside int32 is refused by the bounds check, not wrapped.
func (c change) apply(current int32) int64 {
	if c.relative {
		return int64(current) + int64(c.n)
	}
	return int64(c.n)
}

// value is a decoded action value.
type value struct {
	change
	pipeline.Options
	// kedaPause, when set, is how long a KEDA ScaledObject stays paused.
	kedaPause time.Duration
}

// object is the object form of the value. Unknown keys are refused, so that
// a typo such as "replica" or "dryrun " is an error rather than silently a
// different action.
type object struct {
	pipeline.Options
	Replicas  json.RawMessage `json:"replicas"`
	KEDAPause action.Duration `json:"kedaPause,omitempty"`
}

// parseValue decodes data.action.value. The bare string and bare number
// forms are always relative, because helm-service, whose "scaling" action
// this one replaces, read its value as an increment.
func parseValue(raw json.RawMessage) (value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return value{}, errors.New("the action has no value")
	}
	// The object form is the common one: decode it once, strictly, rather
	// than into an any first to learn that it is an object.
	if raw[0] == '{' {
		return parseObject(raw)
	}
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return value{}, err
	}
	switch v := v.(type) {
	case string:
		c, err := parseCount(v, true)
		if err != nil {
			return value{}, err
		}
		return value{change: c}, nil
	case json.Number:
		c, err := parseCount(v.String(), true)
		if err != nil {
			return value{}, err
		}
		return value{change: c}, nil
	case nil:
		return value{}, errors.New("the action has no value")
	default:
		return value{}, fmt.Errorf("a value of type %s is not understood", action.JSONType(v))
	}
}

func parseObject(raw json.RawMessage) (value, error) {
	var o object
	if err := action.Decode(raw, &o, true); err != nil {
		return value{}, err
	}
	c, err := parseReplicas(o.Replicas)
	if err != nil {
		return value{}, err
	}
	pause := time.Duration(o.KEDAPause)
	if pause < 0 || pause > keda.MaxPause {
		return value{}, fmt.Errorf(`"kedaPause": %s is not between 0 and %s`, pause, keda.MaxPause)
	}
	return value{change: c, Options: o.Options, kedaPause: pause}, nil
}

// parseReplicas reads "replicas": a string is absolute unless signed, a
// number is always absolute.
func parseReplicas(raw json.RawMessage) (change, error) {
	var v any
	if len(raw) > 0 {
		if err := action.Decode(raw, &v, false); err != nil {
			return change{}, err
		}
	}
	switch v := v.(type) {
	case string:
		c, err := parseCount(v, false)
		if err != nil {
			return change{}, fmt.Errorf(`"replicas": %w`, err)
		}
		return c, nil
	case json.Number:
		n, err := strconv.ParseInt(v.String(), 10, 32)
		if err != nil {
			return change{}, fmt.Errorf(`"replicas": %s is not a whole number of replicas`, v)
		}
		if n < 0 {
			return change{}, fmt.Errorf(`"replicas": %d is negative; for a relative change write it as a string, "%d"`, n, n)
		}
		return change{n: int32(n)}, nil
	case nil:
		return change{}, errors.New(`"replicas" is missing`)
	default:
		return change{}, fmt.Errorf(`"replicas" is %s, not a string or a number`, action.JSONType(v))
	}
}

// parseCount reads "3", "+1" or "-1". A signed count, or any count when
// alwaysRelative, is a relative change; a relative change must change
// something.
func parseCount(s string, alwaysRelative bool) (change, error) {
	signed := strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-")
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return change{}, fmt.Errorf("%q is out of range", s)
		}
		return change{}, fmt.Errorf("%q is not a whole number of replicas", s)
	}
	c := change{n: int32(n), relative: signed || alwaysRelative}
	if c.relative && n == 0 {
		return change{}, fmt.Errorf("%q would change nothing", s)
	}
	return c, nil
}

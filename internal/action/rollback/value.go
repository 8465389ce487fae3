package rollback

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
)

// AcceptedForms is what a value error should be followed by: the person
// reading it in the Keptn Bridge has a remediation.yaml to fix.
const AcceptedForms = `no value (roll back to the previous revision), or {"toRevision": 3}; ` +
	`an object may also set ` + pipeline.OptionKeys

// Value is the decoded action value.
type Value struct {
	pipeline.Options
	// ToRevision is the revision to roll back to, as `kubectl rollout
	// history` numbers them; 0 means the one before the current revision.
	ToRevision int64 `json:"toRevision,omitempty"`
}

// object is the object form of the value as it is decoded: "toRevision" is
// read on its own so that its errors can say what a revision looks like,
// rather than "want int64".
type object struct {
	pipeline.Options
	ToRevision json.RawMessage `json:"toRevision"`
}

// ParseValue decodes data.action.value. No value, null or "" is the zero
// Value: a rollback needs no value. An object is decoded strictly, so that a
// typo such as "torevision" is an error rather than a rollback to the
// previous revision. Errors do not repeat AcceptedForms; the caller appends
// it.
func ParseValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) || bytes.Equal(raw, []byte(`""`)) {
		return Value{}, nil
	}
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return Value{}, err
	}
	if _, ok := v.(map[string]any); !ok {
		return Value{}, fmt.Errorf("the value is %s; it must be empty or an object", action.JSONType(v))
	}
	var o object
	if err := action.Decode(raw, &o, true); err != nil {
		return Value{}, err
	}
	rev, err := parseRevision(o.ToRevision)
	if err != nil {
		return Value{}, err
	}
	return Value{Options: o.Options, ToRevision: rev}, nil
}

// parseRevision reads "toRevision": a whole number, 0 or more. A string is
// refused even when it holds a number, as a bare string is refused
// everywhere else in a value where a number is meant.
func parseRevision(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return 0, fmt.Errorf(`"toRevision": %w`, err)
	}
	switch v := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		n, err := strconv.ParseInt(v.String(), 10, 64)
		switch {
		case err != nil:
			return 0, fmt.Errorf(`"toRevision": %s is not a whole revision number`, v)
		case n < 0:
			return 0, fmt.Errorf(`"toRevision": %d is negative; revisions count up from 1, and 0 or no "toRevision" means the previous revision`, n)
		}
		return n, nil
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return 0, fmt.Errorf(`"toRevision" is the string %q; write the revision as a number: {"toRevision": %d}`, v, n)
		}
		return 0, fmt.Errorf(`"toRevision" is the string %q, not a revision number such as 3`, v)
	}
	return 0, fmt.Errorf(`"toRevision" is %s, not a revision number such as 3`, action.JSONType(v))
}

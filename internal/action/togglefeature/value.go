package togglefeature

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

// acceptedForms is appended to every value error: the person reading it in
// the Keptn Bridge has a remediation.yaml to fix.
const acceptedForms = `accepted forms: {"FlagName": "on"} or {"FlagName": "off"} ` +
	`(case-insensitive; true and false also work), one key per flag, ` +
	`e.g. {"PromotionCampaign": "off", "NewCheckout": "on"}`

// toggle is one flag and the state the action wants it in.
type toggle struct {
	flag string
	on   bool
}

// parseValue decodes data.action.value, unleash-service's format: an object
// whose keys are flag names and whose values are "on" or "off". Because the
// keys are flag names there is no room for options such as dryRun; a key of
// that name is a flag called dryRun. The toggles come back sorted by flag
// name, the order in which they are applied.
func parseValue(raw json.RawMessage) ([]toggle, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("the action has no value")
	}
	var v any
	if err := action.Decode(raw, &v, false); err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil, errors.New("the action has no value")
		}
		return nil, fmt.Errorf("the value is %s, not an object of flag names", action.JSONType(v))
	}
	if len(obj) == 0 {
		return nil, errors.New("the value names no flag")
	}
	// encoding/json keeps the last of two equal keys; a value that names a
	// flag twice is contradictory or a copy-paste slip either way.
	if dup, err := duplicateKey(raw); err != nil {
		return nil, err
	} else if dup != "" {
		return nil, fmt.Errorf("flag %q is named twice", dup)
	}
	toggles := make([]toggle, 0, len(obj))
	for flag, state := range obj {
		if strings.TrimSpace(flag) == "" {
			return nil, errors.New("a flag name is empty")
		}
		on, err := parseState(state)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", flag, err)
		}
		toggles = append(toggles, toggle{flag: flag, on: on})
	}
	sort.Slice(toggles, func(i, j int) bool { return toggles[i].flag < toggles[j].flag })
	return toggles, nil
}

// parseState reads "on", "off" (any case), true or false.
func parseState(v any) (bool, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "on":
			return true, nil
		case "off":
			return false, nil
		}
		return false, fmt.Errorf("%q is not a flag state", v)
	default:
		return false, fmt.Errorf("%s is not a flag state", action.JSONType(v))
	}
}

// duplicateKey returns a key that the JSON object raw has twice, or "".
func duplicateKey(raw []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return "", fmt.Errorf("not valid JSON: %w", err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("not valid JSON: %w", err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return key, nil
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", fmt.Errorf("not valid JSON: %w", err)
		}
	}
	return "", nil
}

// state names a flag state as the value writes it.
func state(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

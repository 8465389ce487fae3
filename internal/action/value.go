package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string such as "90s" or "5m".
type Duration time.Duration

// UnmarshalJSON reads "90s"; a bare number is refused because its unit
// would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`a duration is a string such as "90s" or "5m", not %s`, b)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf(`%q is not a positive duration such as "90s" or "5m"`, s)
	}
	*d = Duration(v)
	return nil
}

// Decode reads exactly one JSON value from raw into v. Numbers are kept as
// written (json.Number when v holds an any), so that 1.5 can be refused
// rather than rounded. With strict, an unknown key is an error: a typo such
// as "replica" must not silently become a different action. Errors are
// phrased for a person fixing a remediation.yaml.
func Decode(raw []byte, v any, strict bool) error {
	// A lone string or number into an any, the commonest small value, needs
	// no Decoder, which would cost some KiB per event.
	if p, ok := v.(*any); ok {
		if s, ok := scalar(raw); ok {
			*p = s
			return nil
		}
	}
	return decode(raw, v, strict)
}

// decode is Decode's general path.
func decode(raw []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			// Values are flat; drop embedded structs' names from the path.
			key := typeErr.Field[strings.LastIndex(typeErr.Field, ".")+1:]
			return fmt.Errorf("%q is a JSON %s, want %s", key, typeErr.Value, typeErr.Type)
		}
		// encoding/json has no error type for this one.
		if after, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return fmt.Errorf("unknown key %s", after)
		}
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) || errors.Is(err, io.ErrUnexpectedEOF) || strings.HasPrefix(err.Error(), "json: ") {
			return fmt.Errorf("not valid JSON: %w", err)
		}
		return err // from an UnmarshalJSON of ours: already phrased
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("not valid JSON: more than one value")
	}
	// encoding/json matches keys regardless of case, so "dryrun" would
	// pass as "dryRun": in strict mode, spelling counts.
	if t := reflect.TypeOf(v); strict && t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		return exactKeys(raw, t.Elem())
	}
	return nil
}

// scalar decodes raw when it is exactly one JSON string or number, as
// Decode with UseNumber would; anything else, broken JSON included, is
// left to Decode's general path and its messages.
func scalar(raw []byte) (any, bool) {
	raw = bytes.Trim(raw, " \t\r\n") // JSON's white space, not Unicode's
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return s, true
	case c == '-' || '0' <= c && c <= '9':
		// One valid JSON value that starts so is a number.
		if !json.Valid(raw) {
			return nil, false
		}
		return json.Number(raw), true
	}
	return nil, false
}

// exactKeys refuses a key of the JSON object raw that is not spelled
// exactly as a key of t. encoding/json matches keys regardless of case, so
// that without this {"torevision": 3} would pass the strict decode and roll
// back somewhere its writer may not have checked.
func exactKeys(raw []byte, t reflect.Type) error {
	// The strict decode has read raw already: it is one valid object.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	var unknown []string
	for key := range keys {
		if !hasKey(t, key) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown) // the same message every time
	return fmt.Errorf("unknown key %q", unknown[0])
}

// hasKey reports whether key is, exactly, a JSON key of struct type t or of
// the structs it embeds. It walks the fields rather than building a set of
// them: a value has a few keys, and this runs for every event.
func hasKey(t reflect.Type, key string) bool {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			if hasKey(f.Type, key) {
				return true
			}
		case name != "":
			if name == key {
				return true
			}
		default:
			if f.Name == key {
				return true
			}
		}
	}
	return false
}

// JSONType names the JSON type of a value decoded into an any.
func JSONType(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

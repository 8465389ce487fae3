package togglefeature_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestValidate checks values without any request: the handler points at
// an address where nothing listens.
func TestValidate(t *testing.T) {
	h, _ := newHandler(t, "http://127.0.0.1:1", fakeToken, nil)
	tests := []struct {
		value   string
		wantErr string // empty: valid
	}{
		{value: `{"PromotionCampaign": "off", "NewCheckout": "on"}`},
		{value: `{"A": "ON", "B": "Off", "C": " on "}`},
		{value: `{"A": true, "B": false}`},
		{value: `{"dryRun": "on"}`}, // a flag named dryRun
		{value: ``, wantErr: "the action has no value"},
		{value: `null`, wantErr: "the action has no value"},
		{value: `{}`, wantErr: "the value names no flag"},
		{value: `"on"`, wantErr: "the value is a string, not an object of flag names"},
		{value: `["A"]`, wantErr: "the value is an array, not an object of flag names"},
		{value: `{"A": "enabled"}`, wantErr: `"A": "enabled" is not a flag state`},
		{value: `{"A": 1}`, wantErr: `"A": a number is not a flag state`},
		{value: `{"A": null}`, wantErr: `"A": null is not a flag state`},
		{value: `{"A": {"state": "on"}}`, wantErr: `"A": an object is not a flag state`},
		{value: `{"": "on"}`, wantErr: "a flag name is empty"},
		{value: `{"A": "on", "A": "off"}`, wantErr: `flag "A" is named twice`},
		{value: `{"A": "on"`, wantErr: "not valid JSON"},
		{value: `{"A": "on"} {"B": "on"}`, wantErr: "not valid JSON: more than one value"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			err := h.Validate(json.RawMessage(tt.value))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), `accepted forms: {"FlagName": "on"} or {"FlagName": "off"}`) {
				t.Errorf("error %q does not list the accepted forms", err)
			}
		})
	}
}

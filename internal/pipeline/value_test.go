package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/keptn-action-provider/action-provider/internal/action"
)

func TestDecodeOptions(t *testing.T) {
	tests := []struct {
		raw     string
		want    Options
		wantErr string
	}{
		{raw: `{}`},
		{raw: `{"namespace": "ns", "name": "carts", "kind": "sts", "dryRun": true, "wait": false, "timeout": "90s"}`,
			want: Options{DryRun: true, Timeout: action.Duration(90 * time.Second)}},
		{raw: `{"dryrun": true}`, wantErr: `unknown key "dryrun"`},
		{raw: `{"Wait": false}`, wantErr: `unknown key "Wait"`},
		{raw: `{"replica": 2}`, wantErr: `unknown key "replica"`},
		{raw: `{"timeout": 90}`, wantErr: `a duration is a string such as "90s" or "5m", not 90`},
		{raw: `{"timeout": "soon"}`, wantErr: `"soon" is not a positive duration`},
		{raw: `{"wait": "no"}`, wantErr: `"wait" is a JSON string, want bool`},
		{raw: `{"wait": false} {}`, wantErr: "not valid JSON: more than one value"},
		{raw: `{"wait": `, wantErr: "not valid JSON"},
	}
	for _, tt := range tests {
		var got Options
		err := action.Decode([]byte(tt.raw), &got, true)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if got.DryRun != tt.want.DryRun || got.Timeout != tt.want.Timeout {
			t.Errorf("%s: got %+v, want %+v", tt.raw, got, tt.want)
		}
	}
}

package keptnevent

import (
	"errors"
	"io/fs"
	"net/http"
	"testing"

	"github.com/keptn-action-provider/action-provider/examples/events"
)

// FuzzDecode feeds arbitrary bodies, in both modes, to Decode. It must never
// panic, must refuse with an *InvalidError, and whatever it accepts must
// have the fields the lifecycle relies on and be answerable under 64 KiB.
func FuzzDecode(f *testing.F) {
	seeds, err := fs.Glob(events.FS, "*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		b, err := fs.ReadFile(events.FS, name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Add([]byte(`{"project":"p","stage":"s","service":"c","action":{"action":"scale","value":"1"}}`), true)
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"sh.keptn.event.action.triggered","shkeptncontext":"c","data":{"action":7}}`), false)
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"sh.keptn.event.action.triggered","data_base64":"e30="}`), false)

	binary := http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"fz"}, "Ce-Source": {"fuzz"},
		"Ce-Type": {TriggeredType}, "Ce-Shkeptncontext": {"ctx"}, "Content-Type": {"application/json"},
	}
	f.Fuzz(func(t *testing.T, body []byte, binaryMode bool) {
		header := ceJSON
		if binaryMode {
			header = binary
		}
		got, err := Decode(header, body)
		if err != nil {
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("error %v is not an *InvalidError", err)
			}
			return
		}
		if got.ID == "" || got.KeptnContext == "" || got.Data.Project == "" || got.Data.Stage == "" ||
			got.Data.Service == "" || got.Data.Action.Action == "" {
			t.Fatalf("accepted an event without required fields: %+v", got)
		}
		if _, err := (Replier{Source: "fuzz", MaxBytes: 1 << 20}).Started(got); err != nil {
			t.Fatalf("cannot answer an accepted event: %v", err)
		}
	})
}

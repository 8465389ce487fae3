package keptnevent

import (
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"

	"github.com/keptn-action-provider/action-provider/examples/events"
)

// FuzzDecode feeds arbitrary bodies, in both modes, to Decode. It must never
// panic, must refuse with an *InvalidError, and whatever it accepts must
// have the fields the lifecycle relies on and be answerable under 64 KiB:
// either Answerable refuses it, or its started and every finished event fit.
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
		// Answerable under 64 KiB, exactly: either the provider refuses the
		// event before sending anything, or both of its events fit,
		// whatever the finished event's message.
		r := Replier{Source: "fuzz", MaxBytes: 64 << 10}
		if err := r.Answerable(got); err != nil {
			return
		}
		started, err := r.Started(got)
		if err != nil || len(started.Body) > r.MaxBytes {
			t.Fatalf("answerable event, but its started event is %d bytes (%v)", len(started.Body), err)
		}
		for _, message := range []string{"", "interrupted: replica x stopped", strings.Repeat("\u2028\"<>&", 20000)} {
			finished, err := r.Finished(got, keptnv2.StatusErrored, keptnv2.ResultFailed, message)
			if err != nil || len(finished.Body) > r.MaxBytes {
				t.Fatalf("answerable event, but a finished event is %d bytes (%v)", len(finished.Body), err)
			}
		}
	})
}

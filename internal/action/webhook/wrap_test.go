package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/keptn-action-provider/action-provider/internal/action/webhook"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The transport tracing wraps is the egress-checked one, and every request
// goes through the wrapper.
func TestWrapTransportSeesEveryRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer srv.Close()
	var seen atomic.Int32
	opts := options()
	opts.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			seen.Add(1)
			return rt.RoundTrip(r)
		})
	}
	h := newHandler(t, webhook.Config{URL: srv.URL + "/hook", Allow: []string{"loopback"}}, opts)
	if _, err := h.Run(context.Background(), request()); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 1 {
		t.Errorf("the wrapper saw %d requests, want 1", seen.Load())
	}
}

package provider

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// httpIntake is the HTTP receiver the distributor sidecar POSTs triggered
// events to.
type httpIntake struct {
	srv  *http.Server
	ln   net.Listener // set by Listen
	path string
}

func (h *httpIntake) Serve() error {
	if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h *httpIntake) Stop(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// Ready is always true: the listener is bound before Serve.
func (h *httpIntake) Ready() bool { return true }

func (h *httpIntake) Describe() string { return "receiver " + h.url() }

func (h *httpIntake) url() string { return "http://" + h.ln.Addr().String() + h.path }

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/keptn-action-provider/action-provider/internal/config"
)

// HTTPIntake serves the HTTP receiver the distributor sidecar POSTs
// triggered events to, on RCV_HOST:RCV_PORT at RCV_PATH.
type HTTPIntake struct {
	srv        *http.Server
	ln         net.Listener // set by Listen
	host, path string
	port       int
}

// NewHTTPIntake serves receiver, an http.Handler of triggered events.
func NewHTTPIntake(cfg config.Config, receiver http.Handler) *HTTPIntake {
	events := http.NewServeMux()
	events.Handle(cfg.RcvPath, receiver)
	return &HTTPIntake{srv: newServer(events), host: cfg.RcvHost, port: cfg.RcvPort, path: cfg.RcvPath}
}

// Listen binds RCV_HOST:RCV_PORT.
func (h *HTTPIntake) Listen() error {
	ln, err := net.Listen("tcp", net.JoinHostPort(h.host, strconv.Itoa(h.port)))
	if err != nil {
		return fmt.Errorf("listen for events (RCV_HOST, RCV_PORT): %w", err)
	}
	h.ln = ln
	return nil
}

func (h *HTTPIntake) Serve() error {
	if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h *HTTPIntake) Stop(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// Ready is always true: the listener is bound before Serve.
func (h *HTTPIntake) Ready() bool { return true }

func (h *HTTPIntake) Describe() string { return "receiver " + h.URL() }

// URL is where triggered events are to be POSTed.
func (h *HTTPIntake) URL() string { return "http://" + h.ln.Addr().String() + h.path }

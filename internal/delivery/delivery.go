// Package delivery sends the provider's events to Keptn. Publisher is the one
// small interface the lifecycle depends on; HTTP implements it for the
// distributor sidecar's /event endpoint.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
	"github.com/keptn-action-provider/action-provider/internal/retry"
)

// Publisher delivers one event. It returns nil only once the receiving side
// has accepted the event; every other outcome is an error.
type Publisher interface {
	Publish(ctx context.Context, ev keptnevent.Outgoing) error
}

// HTTP POSTs structured-mode CloudEvents to one URL, retrying refused
// connections, timeouts and 5xx answers within Backoff's bound.
//
// go-utils' sender treats "connection refused" as success and the event is
// lost without a word; here every event is delivered or reported as failed.
type HTTP struct {
	URL     string
	Client  *http.Client
	Backoff retry.Backoff
	// AttemptTimeout bounds one POST; default 10s.
	AttemptTimeout time.Duration
	Metrics        *metrics.Metrics // optional
	Log            logrus.FieldLogger
}

// NewClient returns the one http.Client all deliveries share. Its pool keeps
// up to maxConns idle keep-alive connections to the broker, so that each
// worker reuses a connection instead of opening one per event (the default
// of two idle connections per host makes a busy sender open thousands).
func NewClient(maxConns int) *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t}
}

// StatusError is a non-2xx answer from the broker.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("event broker answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("event broker answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// Publish implements Publisher.
func (h *HTTP) Publish(ctx context.Context, ev keptnevent.Outgoing) error {
	start := time.Now()
	err := h.Backoff.Do(ctx, func(ctx context.Context) (bool, error) {
		return h.post(ctx, ev)
	}, func(n int, err error) {
		if h.Metrics != nil {
			h.Metrics.DeliveryRetries.WithLabelValues(ev.Type).Inc()
		}
		if h.Log != nil {
			h.Log.WithFields(logrus.Fields{
				"shkeptncontext": ev.KeptnContext, "triggeredid": ev.TriggeredID, "action": ev.Action,
				"event_id": ev.ID, "type": ev.Type, "attempt": n,
			}).
				WithError(err).Warn("event broker did not accept the event; retrying")
		}
	})
	if h.Metrics != nil {
		outcome := "delivered"
		if err != nil {
			outcome = "failed"
		}
		h.Metrics.Deliveries.WithLabelValues(ev.Type, outcome).Inc()
		h.Metrics.DeliveryLatency.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return fmt.Errorf("deliver %s %s to %s: %w", ev.Type, ev.ID, h.URL, err)
	}
	return nil
}

// post makes one attempt and says whether another one could succeed.
func (h *HTTP) post(ctx context.Context, ev keptnevent.Outgoing) (retry bool, err error) {
	timeout := h.AttemptTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := h.Client.Do(req)
	if err != nil {
		// Refused, reset, timed out: the broker may be back in a moment.
		// Only our own cancellation is final.
		return ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded), err
	}
	defer resp.Body.Close()
	// Read a bounded excerpt for the error, and drain the rest so the
	// connection goes back to the pool.
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, nil
	}
	serr := &StatusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(excerpt))}
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return true, serr
	default:
		// 4xx: the event itself is refused; sending it again won't help.
		return false, serr
	}
}

// Package receiver is the HTTP endpoint the Keptn distributor POSTs
// action.triggered events to. It answers at once, before any action runs:
// the distributor waits only 5 s and then re-POSTs, so a receiver that
// answered after its action would block it and cause duplicate deliveries.
package receiver

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/keptn-action-provider/action-provider/internal/keptnevent"
	"github.com/keptn-action-provider/action-provider/internal/lifecycle"
	"github.com/keptn-action-provider/action-provider/internal/metrics"
)

// Submitter takes decoded events; *lifecycle.Lifecycle is one.
type Submitter interface {
	Submit(keptnevent.Triggered) lifecycle.Disposition
}

// Receiver is an http.Handler for triggered events.
type Receiver struct {
	Submitter Submitter
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes int64
	Log          logrus.FieldLogger
	Metrics      *metrics.Metrics
}

// ServeHTTP answers:
//
//	202 accepted: the action will run
//	200 ignored: an action no handler is registered for, or a duplicate
//	400 a malformed or incomplete event, with a one-line reason
//	405 not a POST
//	413 a body over MaxBodyBytes
//	503 the queue is full or the provider is shutting down: retry later
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rc.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			rc.refuse(w, http.StatusRequestEntityTooLarge, metrics.TooLarge, "",
				fmt.Sprintf("body larger than %d bytes", rc.MaxBodyBytes))
			return
		}
		rc.refuse(w, http.StatusBadRequest, metrics.Invalid, "", "could not read body: "+err.Error())
		return
	}
	t, err := keptnevent.Decode(r.Header, body)
	if err != nil {
		var invalid *keptnevent.InvalidError
		id := ""
		if errors.As(err, &invalid) {
			id = invalid.ID
		}
		rc.refuse(w, http.StatusBadRequest, metrics.Invalid, id, err.Error())
		return
	}
	received := rc.Metrics.EventsReceived.WithLabelValues
	switch rc.Submitter.Submit(t) {
	case lifecycle.Accepted:
		received(keptnevent.TriggeredType, metrics.Accepted).Inc()
		answer(w, http.StatusAccepted, "accepted")
	case lifecycle.Unknown:
		received(keptnevent.TriggeredType, metrics.UnknownAction).Inc()
		answer(w, http.StatusOK, fmt.Sprintf("ignored: no handler for action %q", t.Data.Action.Action))
	case lifecycle.Duplicate:
		received(keptnevent.TriggeredType, metrics.Duplicate).Inc()
		answer(w, http.StatusOK, "ignored: duplicate of an accepted event")
	case lifecycle.Busy:
		received(keptnevent.TriggeredType, metrics.Busy).Inc()
		w.Header().Set("Retry-After", "1")
		answer(w, http.StatusServiceUnavailable, "busy: too many actions queued; retry later")
	case lifecycle.Draining:
		received(keptnevent.TriggeredType, metrics.Draining).Inc()
		answer(w, http.StatusServiceUnavailable, "shutting down; retry on another replica")
	}
}

func (rc *Receiver) refuse(w http.ResponseWriter, code int, outcome, id, reason string) {
	rc.Metrics.EventsReceived.WithLabelValues("", outcome).Inc()
	rc.Log.WithFields(logrus.Fields{"event_id": id, "status": code}).Warn("refused event: " + reason)
	answer(w, code, reason)
}

func answer(w http.ResponseWriter, code int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, line+"\n")
}

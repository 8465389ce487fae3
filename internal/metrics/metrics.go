// Package metrics defines the provider's Prometheus metrics. They are
// registered on a registry the caller owns, never on the global default, so
// that tests and several instances in one process do not collide.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "action_provider"

// Outcomes of an incoming event, the "outcome" label of EventsReceived.
const (
	Accepted      = "accepted"
	UnknownAction = "unknown_action"
	Duplicate     = "duplicate"
	// ClaimedElsewhere: accepted here, but another replica had taken it;
	// counted in addition to its "accepted".
	ClaimedElsewhere = "claimed_elsewhere"
	Invalid          = "invalid"
	TooLarge         = "too_large"
	// Unanswerable: not even a minimal finished event would fit
	// MAX_EVENT_BYTES, so nothing is sent for it.
	Unanswerable = "unanswerable"
	Busy         = "busy"
	Draining     = "draining"
)

// Metrics holds every collector the provider updates.
type Metrics struct {
	EventsReceived  *prometheus.CounterVec   // by type, outcome
	Actions         *prometheus.CounterVec   // by action, status, result
	ActionDuration  *prometheus.HistogramVec // by action
	ActionsInFlight prometheus.Gauge
	QueueDepth      prometheus.Gauge
	Deliveries      *prometheus.CounterVec // by type, outcome (delivered, failed)
	DeliveryRetries *prometheus.CounterVec // by type
	DeliveryLatency prometheus.Histogram
	// Refusals counts the actions a rule refused, by rule ("cooldown",
	// "budget", "gitops", ...).
	Refusals *prometheus.CounterVec
	// OrphansRecovered counts the actions of a replica that died, taken
	// over and answered by this one.
	OrphansRecovered prometheus.Counter
	// QueueCapacity is QUEUE_SIZE, for "the queue stays full".
	QueueCapacity prometheus.Gauge
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_received_total",
			Help: "Events received, by CloudEvents type and what became of them.",
		}, []string{"type", "outcome"}),
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "actions_total",
			Help: "Actions finished, by action and the status and result reported to Keptn.",
		}, []string{"action", "status", "result"}),
		ActionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "action_duration_seconds",
			Help:    "Time from started to finished of an action.",
			Buckets: []float64{.001, .005, .025, .1, .5, 1, 5, 15, 30, 60, 120, 300, 600},
		}, []string{"action"}),
		ActionsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "actions_in_flight",
			Help: "Actions started and not yet finished.",
		}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_depth",
			Help: "Accepted events waiting for a worker.",
		}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "deliveries_total",
			Help: "Events sent to the event broker, by type and outcome (delivered, failed).",
		}, []string{"type", "outcome"}),
		DeliveryRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "delivery_retries_total",
			Help: "Delivery attempts after the first, by event type.",
		}, []string{"type"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "delivery_duration_seconds",
			Help:    "Time to deliver one event, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .05, .25, 1, 5, 30, 120},
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "refusals_total",
			Help: "Actions a rule refused (reported succeeded/fail), by rule.",
		}, []string{"rule"}),
		OrphansRecovered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "orphans_recovered_total",
			Help: "Actions of a replica that stopped while running them, answered by this one.",
		}),
		QueueCapacity: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_capacity",
			Help: "How many accepted events the queue holds (QUEUE_SIZE).",
		}),
	}
	reg.MustRegister(m.EventsReceived, m.Actions, m.ActionDuration, m.ActionsInFlight,
		m.QueueDepth, m.Deliveries, m.DeliveryRetries, m.DeliveryLatency,
		m.Refusals, m.OrphansRecovered, m.QueueCapacity)
	return m
}

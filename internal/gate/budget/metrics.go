package budget

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the budget. The gauges are this replica's view, as of its
// last read of the Lease; the counters count what this replica did.
type metrics struct {
	spent    prometheus.Gauge
	open     *prometheus.GaugeVec // by scope: cluster, namespace
	paused   prometheus.Gauge
	refusals *prometheus.CounterVec // by scope: cluster, namespace, paused
	openings *prometheus.CounterVec // by scope: cluster, namespace
}

// newMetrics makes the collectors and registers them on reg, if any.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "action_provider", "budget"
	m := &metrics{
		spent: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "spent",
			Help: "Mutating actions in the remediation budget's window, across the cluster."}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "open",
			Help: "1 while the breaker is open: the cluster's budget (scope cluster) or some namespace's (scope namespace) is spent."},
			[]string{"scope"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "paused",
			Help: "1 while an operator pauses every action (annotation keptn-action-provider.io/paused on the budget's Lease)."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refusals_total",
			Help: "Actions this replica refused because a budget was spent (scope cluster, namespace) or paused."},
			[]string{"scope"}),
		openings: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "openings_total",
			Help: "Openings of the breaker this replica recorded; summed over replicas, each opening counts once."},
			[]string{"scope"}),
	}
	for _, s := range []string{scopeCluster, scopeNamespace} {
		m.open.WithLabelValues(s)
		m.openings.WithLabelValues(s)
		m.refusals.WithLabelValues(s)
	}
	m.refusals.WithLabelValues(scopePaused)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.spent, m.open, m.paused, m.refusals, m.openings} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("budget: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe sets the gauges from the state read.
func (m *metrics) observe(st state, l Limits) {
	m.spent.Set(float64(len(st.slots)))
	m.open.WithLabelValues(scopeCluster).Set(bit(len(st.slots) >= l.Max))
	m.open.WithLabelValues(scopeNamespace).Set(bit(st.anyNamespaceSpent(l.PerNamespace)))
	m.paused.Set(bit(st.paused))
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package sip

import "github.com/prometheus/client_golang/prometheus"

// serverMetrics are the Prometheus collectors of one Server.
type serverMetrics struct {
	registrations prometheus.GaugeFunc
	transactions  *prometheus.CounterVec
	calls         *prometheus.CounterVec
	authFailures  prometheus.Counter
	rateLimited   prometheus.Counter
	malformed     prometheus.Counter
	stun          prometheus.Counter
	pings         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, bindings func() float64) (*serverMetrics, error) {
	m := &serverMetrics{
		registrations: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "punchline_sip_registrations",
			Help: "Registered contacts (bindings) currently held by the registrar.",
		}, bindings),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "punchline_sip_transactions_total",
			Help: "SIP requests received, by method.",
		}, []string{"method"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "punchline_sip_calls_total",
			Help: "Initial INVITEs proxied, by final status class (2xx, 4xx, ..., or cancelled).",
		}, []string{"result"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_sip_auth_failures_total",
			Help: "Digest authentications refused (wrong password, unknown user, replayed nonce).",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_sip_rate_limited_total",
			Help: "Requests refused or dropped by the per-source rate limit.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_sip_malformed_total",
			Help: "Messages refused as malformed or oversize.",
		}),
		pings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_sip_keepalive_pings_total",
			Help: "Keepalive OPTIONS sent to UDP contacts to hold their NAT mappings open.",
		}),
		stun: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_sip_stun_keepalives_total",
			Help: "STUN binding requests answered on SIP UDP sockets (RFC 5626 keepalives).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.registrations, m.transactions, m.calls, m.authFailures, m.rateLimited, m.malformed, m.stun, m.pings} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

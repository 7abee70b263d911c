package relay

import "github.com/prometheus/client_golang/prometheus"

// metrics are the relay's Prometheus collectors. Label children used on
// the packet path are resolved once, so relaying a datagram costs two
// atomic adds per counter and no map lookup.
type metrics struct {
	allocations prometheus.Gauge
	permissions prometheus.Gauge
	channels    prometheus.Gauge

	packetsToPeer   prometheus.Counter
	packetsToClient prometheus.Counter
	bytesToPeer     prometheus.Counter
	bytesToClient   prometheus.Counter
	droppedToPeer   prometheus.Counter
	droppedToClient prometheus.Counter
	// TCP relaying waits for the cap instead of dropping (tcpalloc.go).
	throttledToPeer   prometheus.Counter
	throttledToClient prometheus.Counter

	authFailures *prometheus.CounterVec // by reason
	refusedPeers prometheus.Counter
	quotaUser    prometheus.Counter
	quotaTotal   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "punchline_turn_relayed_packets_total",
		Help: "Datagrams relayed by UDP allocations, by direction (client_to_peer, peer_to_client).",
	}, []string{"direction"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "punchline_turn_relayed_bytes_total",
		Help: "Payload bytes relayed by UDP and TCP allocations, by direction (client_to_peer, peer_to_client).",
	}, []string{"direction"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "punchline_turn_bandwidth_dropped_packets_total",
		Help: "Datagrams dropped by the per-allocation bandwidth cap, by direction.",
	}, []string{"direction"})
	throttled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "punchline_turn_bandwidth_throttled_seconds_total",
		Help: "Time TCP relay connections waited for the per-allocation bandwidth cap, by direction.",
	}, []string{"direction"})
	quota := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "punchline_turn_quota_refusals_total",
		Help: "Allocate requests refused by quota: user (486) or total (508).",
	}, []string{"quota"})
	m := &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "punchline_turn_allocations", Help: "Active TURN allocations.",
		}),
		permissions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "punchline_turn_permissions", Help: "Active TURN permissions.",
		}),
		channels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "punchline_turn_channels", Help: "Active TURN channel bindings.",
		}),
		packetsToPeer:     packets.WithLabelValues("client_to_peer"),
		packetsToClient:   packets.WithLabelValues("peer_to_client"),
		bytesToPeer:       bytes.WithLabelValues("client_to_peer"),
		bytesToClient:     bytes.WithLabelValues("peer_to_client"),
		droppedToPeer:     dropped.WithLabelValues("client_to_peer"),
		droppedToClient:   dropped.WithLabelValues("peer_to_client"),
		throttledToPeer:   throttled.WithLabelValues("client_to_peer"),
		throttledToClient: throttled.WithLabelValues("peer_to_client"),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "punchline_turn_auth_failures_total",
			Help: "Failed TURN authentications, by reason (unknown_user, bad_password, expired, wrong_realm).",
		}, []string{"reason"}),
		refusedPeers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "punchline_turn_refused_peers_total",
			Help: "Permission, channel bind or connect requests refused by the peer filter (403).",
		}),
		quotaUser:  quota.WithLabelValues("user"),
		quotaTotal: quota.WithLabelValues("total"),
	}
	for _, c := range []prometheus.Collector{
		m.allocations, m.permissions, m.channels, packets, bytes, dropped, throttled,
		m.authFailures, m.refusedPeers, quota,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Make the reasons visible at zero, so dashboards see the series.
	for _, r := range []string{"unknown_user", "bad_password", "expired", "wrong_realm"} {
		m.authFailures.WithLabelValues(r)
	}
	return m, nil
}

package focus

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// maxRoomCounters bounds how many rooms keep their own counters; beyond it,
// rooms that are gone are forgotten first (their bytes stay in the totals).
const maxRoomCounters = 1000

// roomCounter counts media bytes through the server for one room.
type roomCounter struct {
	in, out atomic.Uint64
	// relay is what the TURN relay carried for the room's members.
	relay atomic.Uint64
}

// metrics is the focus's Prometheus collector. Counters are kept per room
// for as long as the room exists (and a while after, bounded), so that a
// scrape after a test's room emptied still sees its bytes.
type metrics struct {
	f *Focus

	// mu guards rooms, order and the gone totals.
	mu        sync.Mutex
	rooms     map[string]*roomCounter
	order     []string
	goneIn    uint64
	goneOut   uint64
	goneRelay uint64
	relayDsc  *prometheus.Desc
	relayAll  *prometheus.Desc
	bytesDsc  *prometheus.Desc
	totalDsc  *prometheus.Desc
	partsDsc  *prometheus.Desc
	roomsDsc  *prometheus.Desc
}

func newMetrics(f *Focus) *metrics {
	return &metrics{
		f:     f,
		rooms: map[string]*roomCounter{},
		bytesDsc: prometheus.NewDesc("punchline_conference_media_bytes_total",
			"Media bytes the conference focus carried for a room (bridge and forwarder), by direction.",
			[]string{"room", "direction"}, nil),
		totalDsc: prometheus.NewDesc("punchline_conference_media_bytes_all_total",
			"Media bytes the conference focus carried for all rooms (bridge and forwarder), by direction.",
			[]string{"direction"}, nil),
		relayDsc: prometheus.NewDesc("punchline_conference_relay_bytes_total",
			"Bytes the TURN relay carried for a room's members while they were in it (needs the relay's per-user counters).",
			[]string{"room"}, nil),
		relayAll: prometheus.NewDesc("punchline_conference_relay_bytes_all_total",
			"Bytes the TURN relay carried for members of any room while they were in it.", nil, nil),
		partsDsc: prometheus.NewDesc("punchline_conference_participants",
			"Participants in a room, by kind (mesh or bridge).", []string{"room", "kind"}, nil),
		roomsDsc: prometheus.NewDesc("punchline_conference_rooms", "Rooms with participants.", nil, nil),
	}
}

func (m *metrics) room(name string) *roomCounter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.rooms[name]; c != nil {
		return c
	}
	if len(m.order) >= maxRoomCounters {
		live := map[string]bool{}
		for _, r := range m.f.roster.Rooms() {
			live[r] = true
		}
		for i, r := range m.order {
			if !live[r] {
				old := m.rooms[r]
				m.goneIn += old.in.Load()
				m.goneOut += old.out.Load()
				m.goneRelay += old.relay.Load()
				delete(m.rooms, r)
				m.order = append(m.order[:i], m.order[i+1:]...)
				break
			}
		}
	}
	c := &roomCounter{}
	m.rooms[name] = c
	m.order = append(m.order, name)
	return c
}

// Bytes returns the media bytes carried for a room (in+out), for tests and
// the benchmark.
func (f *Focus) Bytes(room string) uint64 {
	f.met.mu.Lock()
	defer f.met.mu.Unlock()
	if c := f.met.rooms[room]; c != nil {
		return c.in.Load() + c.out.Load()
	}
	return 0
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.bytesDsc
	ch <- m.totalDsc
	ch <- m.relayDsc
	ch <- m.relayAll
	ch <- m.partsDsc
	ch <- m.roomsDsc
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	in, out, relay := m.goneIn, m.goneOut, m.goneRelay
	for name, c := range m.rooms {
		ci, co, cr := c.in.Load(), c.out.Load(), c.relay.Load()
		in += ci
		out += co
		relay += cr
		ch <- prometheus.MustNewConstMetric(m.bytesDsc, prometheus.CounterValue, float64(ci), name, "in")
		ch <- prometheus.MustNewConstMetric(m.bytesDsc, prometheus.CounterValue, float64(co), name, "out")
		if m.f.cfg.RelayBytes != nil {
			ch <- prometheus.MustNewConstMetric(m.relayDsc, prometheus.CounterValue, float64(cr), name)
		}
	}
	rooms := m.f.roster.Rooms()
	for _, r := range rooms {
		// A pure mesh room has no server media at all, and says so.
		if m.rooms[r] == nil {
			ch <- prometheus.MustNewConstMetric(m.bytesDsc, prometheus.CounterValue, 0, r, "in")
			ch <- prometheus.MustNewConstMetric(m.bytesDsc, prometheus.CounterValue, 0, r, "out")
			if m.f.cfg.RelayBytes != nil {
				ch <- prometheus.MustNewConstMetric(m.relayDsc, prometheus.CounterValue, 0, r)
			}
		}
	}
	m.mu.Unlock()
	if m.f.cfg.RelayBytes != nil {
		ch <- prometheus.MustNewConstMetric(m.relayAll, prometheus.CounterValue, float64(relay))
	}
	ch <- prometheus.MustNewConstMetric(m.totalDsc, prometheus.CounterValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(m.totalDsc, prometheus.CounterValue, float64(out), "out")
	ch <- prometheus.MustNewConstMetric(m.roomsDsc, prometheus.GaugeValue, float64(len(rooms)))
	for _, r := range rooms {
		counts := map[string]int{}
		for _, mem := range m.f.roster.Members(r) {
			counts[mem.Kind]++
		}
		for kind, n := range counts {
			ch <- prometheus.MustNewConstMetric(m.partsDsc, prometheus.GaugeValue, float64(n), r, kind)
		}
	}
}

package ice_test

import (
	"slices"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
)

// benchSetup measures call setup on loopback: two sessions created,
// gathered, exchanged and connected, with a packet carried each way. It
// reports the median (the mean ns/op is skewed by the odd slow run).
func benchSetup(b *testing.B, cfg func() ice.Config) {
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		a, err := ice.NewSession(cfg(), true)
		if err != nil {
			b.Fatal(err)
		}
		c, err := ice.NewSession(cfg(), false)
		if err != nil {
			b.Fatal(err)
		}
		ca, cc := pair(b, a, c)
		exchange(b, ca, cc, 1)
		times = append(times, time.Since(start))
		r, _ := a.Route()
		b.StopTimer()
		_ = a.Close()
		_ = c.Close()
		if cfg().Policy == ice.PolicyRelay && r.Route != ice.RouteRelayed {
			b.Fatalf("route %+v", r)
		}
		b.StartTimer()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(times[len(times)*9/10].Microseconds())/1000, "p90-ms")
}

// BenchmarkSetupDirect: host candidates on loopback, the LAN case.
func BenchmarkSetupDirect(b *testing.B) {
	benchSetup(b, loopbackConfig)
}

// BenchmarkSetupRelayed: relay policy on both sides through punchline's
// relay on loopback (TURN over UDP): two allocations, permissions and
// channel binds, then checks through the relay.
func BenchmarkSetupRelayed(b *testing.B) {
	udp, _ := startRelay(b)
	benchSetup(b, func() ice.Config { return relayConfig("turn:" + udp) })
}

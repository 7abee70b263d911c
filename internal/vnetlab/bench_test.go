package vnetlab

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
)

// BenchmarkLabSetup measures ICE call setup (gathering through the relay,
// SDP exchange, checks until both sides selected a pair) across simulated
// NATs on the wall clock, with the default policy: a direct cell through
// a symmetric NAT, and a relayed cell, which includes the 1 s the
// controlling side gives direct pairs before it accepts the relay. The
// median is reported. The "pion-relay" variants let pion allocate the
// relayed candidates itself (ice.Config.BuiltinRelay), for comparison.
func BenchmarkLabSetup(b *testing.B) {
	for _, v := range []struct {
		cell    string
		builtin bool
	}{
		{"full-cone ↔ symmetric", false},
		{"full-cone ↔ symmetric", true},
		{"symmetric ↔ symmetric", false},
		{"symmetric ↔ symmetric", true},
	} {
		var cell Cell
		for _, c := range Matrix() {
			if c.Name == v.cell {
				cell = c
			}
		}
		name := cell.Want
		if v.builtin {
			name += "-pion-relay"
		}
		b.Run(name, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				b.StopTimer()
				lab, err := New(Config{Sites: cell.Sites, ICE: func(_ *Host, c *ice.Config) { c.BuiltinRelay = v.builtin }})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				call, err := lab.Dial(ctx, lab.Host(cell.From), lab.Host(cell.To), ice.PolicyAll)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				times = append(times, call.Gather+call.Setup)
				b.StopTimer()
				if call.Route.Route != cell.Want {
					b.Errorf("route %s, want %s", call.Route.Route, cell.Want)
				}
				call.Close()
				lab.Close()
				b.StartTimer()
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
		})
	}
}

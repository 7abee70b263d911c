package relay

import (
	"testing"
)

// TestHotPathBenchmarks runs the relay's benchmarks once as part of the
// ordinary test run, so that CI keeps them working and a change that
// takes the packet path back through per-packet allocation (pion's path
// costs about 20 allocations per relayed round trip, the fast path none
// on the server side) fails here without any reference server. Speed
// itself is not asserted: that is what `go test -bench` and bench/compare
// are for.
func TestHotPathBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay benchmarks")
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.B)
		// maxAllocs bounds allocations per relayed round trip, the
		// test client's own included.
		maxAllocs int64
	}{
		{"channel data, one in flight", func(b *testing.B) { benchRelay(b, 1, 172) }, 10},
		{"channel data, 32 in flight", func(b *testing.B) { benchRelay(b, 32, 172) }, 10},
		{"many clients", BenchmarkRelayManyClients, 10},
		{"inspect channel data", BenchmarkInspectChannelData, 0},
	} {
		r := testing.Benchmark(tc.fn)
		if r.N == 0 {
			t.Errorf("%s: the benchmark failed", tc.name)
			continue
		}
		t.Logf("%s: %s %s", tc.name, r, r.MemString())
		if lost := r.Extra["lost"]; lost > 0 {
			t.Errorf("%s: %v datagrams lost on loopback", tc.name, lost)
		}
		if !raceEnabled && tc.maxAllocs >= 0 && r.AllocsPerOp() > tc.maxAllocs {
			t.Errorf("%s: %d allocations per operation, budget %d", tc.name, r.AllocsPerOp(), tc.maxAllocs)
		}
	}
}

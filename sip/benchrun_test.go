package sip

import (
	"os"
	"os/exec"
	"testing"
)

// TestHotPathBenchmarks runs the registrar's and proxy's benchmarks once
// in the ordinary test run, so CI keeps them working and catches what a
// regression would show without the reference servers: more allocations
// per REGISTER, digest check, location lookup or proxied call than the
// budgets below (measured values plus headroom, the test clients' own
// allocations included), or more live memory per registration than
// Kamailio's 1.3 KB. Speed itself is not asserted; `go test -bench` and
// bench/compare measure it.
func TestHotPathBenchmarks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the sip benchmarks")
	}
	_, sippErr := exec.LookPath("sipp")
	for _, tc := range []struct {
		name      string
		fn        func(*testing.B)
		maxAllocs int64 // per operation; -1: not bounded
		needSipp  bool
	}{
		// First, while the heap holds nothing of the others.
		{"10,000 registrations from sipp", BenchmarkRegistrationMemory, -1, true},
		// Measured: 158, 2, 2, 764 allocations per operation.
		{"REGISTER 401 and 200 over UDP", BenchmarkRegister, 220, false},
		{"digest check", BenchmarkDigestCheck, 4, false},
		{"location lookup", BenchmarkLocationLookup, 4, false},
		{"a whole call through the proxy over UDP", BenchmarkProxyCall, 1000, false},
	} {
		if tc.needSipp && sippErr != nil {
			if os.Getenv("PUNCHLINE_LAB") != "" {
				t.Errorf("%s: sipp is not installed", tc.name)
			} else {
				t.Logf("%s: skipped, sipp is not installed", tc.name)
			}
			continue
		}
		r := testing.Benchmark(tc.fn)
		if r.N == 0 {
			t.Errorf("%s: the benchmark failed", tc.name)
			continue
		}
		t.Logf("%s: %s %s", tc.name, r, r.MemString())
		if !raceEnabled && tc.maxAllocs >= 0 && r.AllocsPerOp() > tc.maxAllocs {
			t.Errorf("%s: %d allocations per operation, budget %d", tc.name, r.AllocsPerOp(), tc.maxAllocs)
		}
		if live, ok := r.Extra["live-B/reg"]; ok && (live <= 0 || live > 1291) {
			t.Errorf("%s: %.0f bytes of live heap per registration, more than Kamailio's 1,291", tc.name, live)
		}
	}
}

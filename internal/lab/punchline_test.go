package lab

import (
	"math"
	"strings"
	"testing"
)

const metricsPage = `# HELP punchline_turn_relayed_packets_total Datagrams relayed.
# TYPE punchline_turn_relayed_packets_total counter
punchline_turn_relayed_packets_total{direction="client_to_peer"} 212
punchline_turn_relayed_packets_total{direction="peer_to_client"} 198
punchline_turn_relayed_packets_total_extra 5
punchline_turn_allocations 2
`

func TestSumMetric(t *testing.T) {
	for name, want := range map[string]float64{
		"punchline_turn_relayed_packets_total": 410,
		"punchline_turn_allocations":           2,
		"punchline_turn_channels":              0,
	} {
		got, err := sumMetric(metricsPage, name)
		if err != nil || got != want {
			t.Errorf("sumMetric(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := sumMetric("punchline_x{a=\"b\"} notanumber\n", "punchline_x"); err == nil {
		t.Error("a malformed value was accepted")
	}
}

// FuzzSumMetric: whatever a /metrics page holds, the parser returns a
// number or an error and never panics; appending a well-formed sample of
// the family adds exactly its value.
func FuzzSumMetric(f *testing.F) {
	f.Add(metricsPage, "punchline_turn_relayed_packets_total")
	f.Add("x{a=\"}\"} 1\nx 2\n", "x")
	f.Add("x", "x")
	f.Fuzz(func(t *testing.T, page, name string) {
		if name == "" || strings.ContainsAny(name, " {}\n") {
			return
		}
		before, err := sumMetric(page, name)
		if err != nil || math.IsNaN(before) || math.IsInf(before, 0) {
			return
		}
		after, err := sumMetric(page+"\n"+name+" 7\n", name)
		if err != nil || after != before+7 {
			t.Fatalf("appending %s 7 to %q: %v, %v (before %v)", name, page, after, err, before)
		}
	})
}

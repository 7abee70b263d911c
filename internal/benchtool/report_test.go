package benchtool

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestReportMarkdown(t *testing.T) {
	rep := Report{
		Date:     time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC),
		Machine:  "2 × AMD EPYC",
		Versions: []string{"Kamailio: 5.6.3"},
		Rounds:   2,
		Figures: []Figure{
			{Name: "REGISTER rate", Unit: "REGISTER/s", HigherIsBetter: true, Reference: "Kamailio",
				Punchline: []float64{3000, 3400}, Ref: []float64{4000, 4000}},
			{Name: "memory per registration", Unit: "bytes", Reference: "Kamailio",
				Punchline: []float64{1000, 1200}, Ref: []float64{1300, 1300}},
			{Name: "relay", Unit: "packets/s", HigherIsBetter: true, Reference: "coturn",
				Punchline: []float64{math.NaN(), math.NaN()}, Ref: []float64{20000, 21000}, Note: "punchline round 1 failed: x"},
		},
	}
	md := rep.Markdown()
	for _, want := range []string{
		"| REGISTER rate | REGISTER/s | 3200 | 4000 (Kamailio) | 0.80 | ≥ 1.0 | no |",
		"| memory per registration | bytes | 1100 | 1300 (Kamailio) | 0.85 | ≤ 1.0 | yes |",
		"| relay | packets/s | – | 20500 (coturn) | – | ≥ 1.0 | not measured |",
		"- REGISTER rate: 3000, 3400 | 4000, 4000",
		"relay: punchline round 1 failed: x",
		"2026-11-25 18:00 UTC",
		"2 × AMD EPYC",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

package benchtool

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Figure is one measured quantity, taken from punchline and from the
// reference server in alternating rounds.
type Figure struct {
	// Name says what was measured ("authenticated REGISTER rate").
	Name string
	// Unit is the unit of the values ("REGISTER/s", "MB").
	Unit string
	// HigherIsBetter is true for rates, false for CPU time and memory.
	HigherIsBetter bool
	// Reference names the server punchline is compared with.
	Reference string
	// Punchline and Ref hold one value per round; NaN marks a failed run.
	Punchline, Ref []float64
	// Note is a short remark shown under the table (how it was measured,
	// or why a round failed).
	Note string
}

// PunchlineMedian and RefMedian are the medians of the rounds that ran.
func (f Figure) PunchlineMedian() float64 { return Median(finite(f.Punchline)) }

// RefMedian is the reference server's median.
func (f Figure) RefMedian() float64 { return Median(finite(f.Ref)) }

// Ratio is punchline's median over the reference's.
func (f Figure) Ratio() float64 { return Ratio(f.PunchlineMedian(), f.RefMedian()) }

// Report is the outcome of one bench/compare run.
type Report struct {
	Date     time.Time
	Machine  string
	Versions []string
	Rounds   int
	Figures  []Figure
	Notes    []string
	Took     time.Duration
}

func finite(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// formatValue prints a figure with precision fitting its size.
func formatValue(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case math.Abs(x) >= 1000:
		return fmt.Sprintf("%.0f", x)
	case math.Abs(x) >= 100:
		return fmt.Sprintf("%.0f", x)
	case math.Abs(x) >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func formatRounds(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = formatValue(x)
	}
	return strings.Join(parts, ", ")
}

// Markdown renders the report as the table bench/compare writes to
// bench/results/latest.md and docs/benchmarks.md quotes.
func (r Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bench/compare results\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s\n", r.Machine)
	for _, v := range r.Versions {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	fmt.Fprintf(&b, "- Rounds: %d per server, alternating punchline, reference, punchline, reference …; figures are medians\n", r.Rounds)
	if r.Took > 0 {
		fmt.Fprintf(&b, "- Run took: %s\n", r.Took.Round(time.Second))
	}
	b.WriteString("\n| Load | Unit | punchline | reference | ratio punchline/reference | target | met |\n")
	b.WriteString("|---|---|---:|---:|---:|---|---|\n")
	for _, f := range r.Figures {
		ratio := f.Ratio()
		target, met := "≥ 1.0", "no"
		if !f.HigherIsBetter {
			target = "≤ 1.0"
		}
		if MeetsTarget(ratio, f.HigherIsBetter) {
			met = "yes"
		}
		if math.IsNaN(ratio) {
			met = "not measured"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s (%s) | %s | %s | %s |\n",
			f.Name, f.Unit, formatValue(f.PunchlineMedian()), formatValue(f.RefMedian()), f.Reference,
			formatRatio(ratio), target, met)
	}
	b.WriteString("\nEvery round (punchline | reference):\n\n")
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "- %s: %s | %s\n", f.Name, formatRounds(f.Punchline), formatRounds(f.Ref))
	}
	var notes []string
	for _, f := range r.Figures {
		if f.Note != "" {
			notes = append(notes, f.Name+": "+f.Note)
		}
	}
	notes = append(notes, r.Notes...)
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func formatRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", x)
}

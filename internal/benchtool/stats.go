package benchtool

import (
	"math"
	"sort"
)

// Median returns the middle value of xs (the mean of the two middle values
// for an even count), or NaN for none. Medians, not means, because the
// machine is shared: one run disturbed by a neighbour must not move the
// figure.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio returns punchline/reference, NaN when either is missing or the
// reference is zero.
func Ratio(punchline, reference float64) float64 {
	if math.IsNaN(punchline) || math.IsNaN(reference) || reference == 0 {
		return math.NaN()
	}
	return punchline / reference
}

// MeetsTarget says whether a ratio punchline/reference is on the right
// side of 1.0: at least 1 for a figure where more is better (rates), at
// most 1 where less is better (CPU time, memory).
func MeetsTarget(ratio float64, higherIsBetter bool) bool {
	if math.IsNaN(ratio) {
		return false
	}
	if higherIsBetter {
		return ratio >= 1
	}
	return ratio <= 1
}

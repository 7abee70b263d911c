package benchtool

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"odd count", []float64{3, 1, 2}, 2},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"one value", []float64{7}, 7},
		{"a disturbed round does not move it", []float64{100, 101, 5}, 100},
	}
	for _, tt := range tests {
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("%s: Median(%v) = %v, want %v", tt.name, tt.xs, got, tt.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	xs := []float64{3, 1, 2}
	Median(xs)
	if xs[0] != 3 {
		t.Error("Median sorted its argument in place")
	}
}

func TestRatioAndTarget(t *testing.T) {
	if got := Ratio(3000, 4000); got != 0.75 {
		t.Errorf("Ratio = %v", got)
	}
	for _, r := range []float64{Ratio(1, 0), Ratio(math.NaN(), 1), Ratio(1, math.NaN())} {
		if !math.IsNaN(r) {
			t.Errorf("ratio without a reference = %v, want NaN", r)
		}
	}
	tests := []struct {
		ratio  float64
		higher bool
		want   bool
	}{
		{1.2, true, true}, {1.0, true, true}, {0.9, true, false},
		{0.8, false, true}, {1.0, false, true}, {1.3, false, false},
		{math.NaN(), true, false}, {math.NaN(), false, false},
	}
	for _, tt := range tests {
		if got := MeetsTarget(tt.ratio, tt.higher); got != tt.want {
			t.Errorf("MeetsTarget(%v, higherIsBetter=%v) = %v", tt.ratio, tt.higher, got)
		}
	}
}

package benchtool

import (
	"context"
	"errors"
	"testing"
)

// thresholdServer is clean at or below limit.
func thresholdServer(limit float64) ProbeFunc {
	return func(_ context.Context, rate float64) (Probe, error) {
		return Probe{Achieved: rate * 0.99, Clean: rate <= limit}, nil
	}
}

func TestSearchRate(t *testing.T) {
	tests := []struct {
		name      string
		cfg       SearchConfig
		limit     float64
		wantBest  float64
		wantRates []float64
	}{
		{
			name: "doubles past the limit, then bisects three times", limit: 5300,
			wantBest:  5000,
			wantRates: []float64{1000, 2000, 4000, 8000, 6000, 5000, 5500},
		},
		{
			name: "halves when the first rate already fails", limit: 300,
			wantBest:  300,
			wantRates: []float64{1000, 500, 250, 400, 350, 300},
		},
		{
			name: "starts where the previous round ended", cfg: SearchConfig{Start: 3000}, limit: 3400,
			wantBest:  3400,
			wantRates: []float64{3000, 6000, 4500, 3750, 3400},
		},
		{
			name: "clean at the maximum stops there", cfg: SearchConfig{Max: 4000}, limit: 1e9,
			wantBest:  4000,
			wantRates: []float64{1000, 2000, 4000},
		},
		{
			name: "nothing is clean", cfg: SearchConfig{Min: 200}, limit: 10,
			wantBest:  0,
			wantRates: []float64{1000, 500, 250},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			best, tried, err := SearchRate(context.Background(), tt.cfg, thresholdServer(tt.limit))
			if err != nil {
				t.Fatal(err)
			}
			if best.Rate != tt.wantBest {
				t.Errorf("best %v, want %v", best.Rate, tt.wantBest)
			}
			var rates []float64
			for _, p := range tried {
				rates = append(rates, p.Rate)
			}
			if len(rates) != len(tt.wantRates) {
				t.Fatalf("probed %v, want %v", rates, tt.wantRates)
			}
			for i := range rates {
				if rates[i] != tt.wantRates[i] {
					t.Fatalf("probed %v, want %v", rates, tt.wantRates)
				}
			}
			if best.Rate > 0 && (!best.Clean || best.Rate > tt.limit) {
				t.Errorf("best probe %+v is not clean", best)
			}
		})
	}
}

func TestSearchRateIsBounded(t *testing.T) {
	for _, limit := range []float64{0, 1, 99, 777, 12345, 31999, 1e12} {
		_, tried, err := SearchRate(context.Background(), SearchConfig{}, thresholdServer(limit))
		if err != nil {
			t.Fatal(err)
		}
		// log2(32000/100) ≈ 8.3 doublings or halvings, 3 bisections, 1 start.
		if len(tried) > 13 {
			t.Errorf("limit %v: %d probes", limit, len(tried))
		}
	}
}

func TestSearchRateStopsOnError(t *testing.T) {
	boom := errors.New("sipp missing")
	calls := 0
	_, _, err := SearchRate(context.Background(), SearchConfig{}, func(context.Context, float64) (Probe, error) {
		calls++
		return Probe{}, boom
	})
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, tried, err := SearchRate(ctx, SearchConfig{}, thresholdServer(1e9))
	if !errors.Is(err, context.Canceled) || len(tried) != 0 {
		t.Errorf("cancelled search: err %v, %d probes", err, len(tried))
	}
}

func TestSearchRateConfirmsFailures(t *testing.T) {
	// A server clean up to 4000/s whose first probe at 2000/s hits a
	// hiccup: with Confirm the retry passes and the search goes on.
	hiccup := true
	probe := func(_ context.Context, rate float64) (Probe, error) {
		if rate == 2000 && hiccup {
			hiccup = false
			return Probe{Clean: false}, nil
		}
		return Probe{Clean: rate <= 4000}, nil
	}
	best, tried, err := SearchRate(context.Background(), SearchConfig{Confirm: true}, probe)
	if err != nil {
		t.Fatal(err)
	}
	if best.Rate != 4000 {
		t.Errorf("best %v, want 4000 (probes %v)", best.Rate, tried)
	}
	// Every real failure is probed twice: 8000, 6000, 5000, 4500.
	var rates []float64
	for _, p := range tried {
		rates = append(rates, p.Rate)
	}
	want := []float64{1000, 2000, 2000, 4000, 8000, 8000, 6000, 6000, 5000, 5000, 4500, 4500}
	if len(rates) != len(want) {
		t.Fatalf("probed %v, want %v", rates, want)
	}
	for i := range want {
		if rates[i] != want[i] {
			t.Fatalf("probed %v, want %v", rates, want)
		}
	}
}

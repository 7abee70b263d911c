package media

import (
	"math"
	"testing"
	"time"
)

func TestMOSKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   time.Duration
		loss    float64
		r, mos  float64
		epsilon float64
	}{
		// R0 − Is = 93.2 with default G.107 inputs gives the familiar 4.41.
		{"perfect", 0, 0, 93.2, 4.41, 0.01},
		// 50 ms: Id = 1.2.
		{"LAN-ish 50 ms", 50 * time.Millisecond, 0, 92.0, 4.39, 0.01},
		// 1% loss with PLC: Ie,eff = 95·1/(1+25.1) = 3.64.
		{"1% loss", 0, 0.01, 89.56, 4.33, 0.01},
		// 5%: Ie,eff = 95·5/30.1 = 15.78; R = 77.42.
		{"5% loss", 0, 0.05, 77.42, 3.92, 0.01},
		// 200 ms: Id = 4.8 + 0.11·22.7 = 7.297; R = 85.90.
		{"200 ms one way", 200 * time.Millisecond, 0, 85.903, 4.23, 0.01},
		// 20% loss: Ie,eff = 95·20/45.1 = 42.13; R = 51.07.
		{"20% loss", 0, 0.2, 51.07, 2.63, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RFactor(tc.delay, tc.loss)
			if math.Abs(r-tc.r) > 0.05 {
				t.Errorf("R = %.3f, want %.3f", r, tc.r)
			}
			if m := EstimateMOS(tc.delay, tc.loss); math.Abs(m-tc.mos) > tc.epsilon {
				t.Errorf("MOS = %.3f, want %.2f", m, tc.mos)
			}
		})
	}
}

func TestMOSFallsMonotonically(t *testing.T) {
	prev := 5.0
	for loss := 0.0; loss <= 0.5; loss += 0.01 {
		m := EstimateMOS(20*time.Millisecond, loss)
		if m >= prev {
			t.Fatalf("MOS %.3f at %.0f%% loss is not below %.3f", m, loss*100, prev)
		}
		prev = m
	}
	prev = 5.0
	for d := time.Duration(0); d <= 600*time.Millisecond; d += 10 * time.Millisecond {
		m := EstimateMOS(d, 0.01)
		if m >= prev {
			t.Fatalf("MOS %.3f at %v is not below %.3f", m, d, prev)
		}
		prev = m
	}
}

func TestMOSBounds(t *testing.T) {
	if m := MOSFromR(-10); m != 1 {
		t.Errorf("MOS(R<0) = %v", m)
	}
	if m := MOSFromR(120); m != 4.5 {
		t.Errorf("MOS(R>100) = %v", m)
	}
	if m := EstimateMOS(2*time.Second, 1); m != 1 {
		t.Errorf("MOS of a hopeless call = %v, want 1", m)
	}
	if m := EstimateMOS(-time.Second, -1); m < 4.4 || m > 4.5 {
		t.Errorf("negative inputs clamp to perfect: %v", m)
	}
}

package media

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func log10(x float64) float64 { return math.Log10(x) }

func TestToneLevelAndDetection(t *testing.T) {
	n := SampleRate
	mix := make([]int16, n)
	for _, f := range []float64{500, 800, 1300, 2100} {
		MixInto(mix, synthTone(f, 0.15, n))
	}
	for _, f := range []float64{500, 800, 1300, 2100} {
		if l := ToneLevel(mix, f); l < 0.2 || l > 0.3 {
			t.Errorf("level of %v Hz in a 4-tone mix = %.3f, want ≈0.25", f, l)
		}
	}
	freqs := []float64{500, 650, 800, 1300, 1700, 2100}
	if got := DetectTones(mix, freqs, 0); !slices.Equal(got, []float64{500, 800, 1300, 2100}) {
		t.Errorf("detected %v", got)
	}
	if got := DetectTones(make([]int16, 800), freqs, 0); len(got) != 0 {
		t.Errorf("silence detected as %v", got)
	}
	// Through G.711 both ways, the tones survive.
	coded := PCMA.Decode(nil, PCMA.Encode(nil, mix))
	if got := DetectTones(coded, freqs, 0); !slices.Equal(got, []float64{500, 800, 1300, 2100}) {
		t.Errorf("after A-law: detected %v", got)
	}
}

func TestGoertzelPowerScale(t *testing.T) {
	// A sine of amplitude A over n samples has energy A²n/2.
	x := synthTone(1000, 0.5, 8000)
	a := 0.5 * math.MaxInt16
	want := a * a * 8000 / 2
	if got := GoertzelPower(x, 1000); math.Abs(got-want)/want > 0.01 {
		t.Errorf("power %.4g, want %.4g", got, want)
	}
}

func TestCorrelateFindsDelay(t *testing.T) {
	speech := synthSpeech()
	for _, lag := range []int{0, 37, 1600, -800} {
		var rec []int16
		if lag >= 0 {
			rec = append(make([]int16, lag), speech...)
		} else {
			rec = append([]int16(nil), speech[-lag:]...)
		}
		peak, got := Correlate(rec, speech)
		if got != lag || peak < 0.999 {
			t.Errorf("lag %d: found %d with %.3f", lag, got, peak)
		}
	}
}

func TestMatchToleratesLossAndRejectsOtherAudio(t *testing.T) {
	speech := synthSpeech()
	rng := rand.New(rand.NewPCG(3, 4))
	// Delay by 123 ms, scale down, add noise, and zero 10% of 20 ms frames.
	rec := make([]int16, 984, 984+len(speech))
	for i, s := range speech {
		v := float64(s)*0.7 + rng.NormFloat64()*200
		rec = append(rec, clamp16(v))
		_ = i
	}
	for f := 0; f < len(speech)/FrameSamples; f++ {
		if rng.Float64() < 0.1 {
			clear(rec[984+f*FrameSamples : 984+(f+1)*FrameSamples])
		}
	}
	m := Match(rec, speech)
	if m.Score < 0.8 || m.Lag < 980 || m.Lag > 988 {
		t.Errorf("match %+v, want score ≥ 0.8 at lag ≈984", m)
	}
	tone := synthTone(440, 0.5, 2*SampleRate)
	if m := Match(tone, speech); m.Score > 0.4 {
		t.Errorf("tone vs speech scored %.2f", m.Score)
	}
	other := make([]int16, 2*SampleRate)
	for i := range other {
		other[i] = int16(rng.NormFloat64() * 3000)
	}
	if m := Match(other, speech); m.Score > 0.2 {
		t.Errorf("noise vs speech scored %.2f", m.Score)
	}
	if m := Match(nil, speech); m.Score != 0 {
		t.Errorf("empty recording scored %.2f", m.Score)
	}
}

func TestMixSaturates(t *testing.T) {
	dst := make([]int16, 3)
	Mix(dst, []int16{30000, -30000, 100}, []int16{30000, -30000, -50})
	if !slices.Equal(dst, []int16{32767, -32768, 50}) {
		t.Fatalf("mix = %v", dst)
	}
}

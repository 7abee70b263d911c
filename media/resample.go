package media

import "math"

// resampleHalfTaps is the half width of the windowed-sinc kernel in output
// samples. 16 keeps the passband flat to about 0.9 of Nyquist with stop-band
// rejection around 50 dB, plenty for speech going into G.711.
const resampleHalfTaps = 16

// Resample converts mono samples from rate in to rate out with a
// Hann-windowed sinc interpolator. When downsampling, the kernel's cutoff is
// lowered to the output Nyquist frequency so that content above it is
// filtered out instead of aliasing into the voice band.
func Resample(in []int16, inRate, outRate int) []int16 {
	if inRate == outRate || len(in) == 0 || inRate <= 0 || outRate <= 0 {
		return append([]int16(nil), in...)
	}
	ratio := float64(outRate) / float64(inRate)
	cutoff := 1.0 // relative to the input Nyquist frequency
	if ratio < 1 {
		cutoff = ratio
	}
	half := float64(resampleHalfTaps) / cutoff // kernel half width in input samples
	n := int(math.Floor(float64(len(in)) * ratio))
	out := make([]int16, n)
	for i := range out {
		t := float64(i) / ratio // position in input samples
		lo := int(math.Ceil(t - half))
		hi := int(math.Floor(t + half))
		if lo < 0 {
			lo = 0
		}
		if hi > len(in)-1 {
			hi = len(in) - 1
		}
		var acc, norm float64
		for k := lo; k <= hi; k++ {
			x := float64(k) - t
			w := 0.5 + 0.5*math.Cos(math.Pi*x/half)
			h := cutoff * sinc(cutoff*x) * w
			acc += float64(in[k]) * h
			norm += h
		}
		// Normalising by the kernel's sum keeps DC gain at exactly 1, also at
		// the edges where the kernel is cut short.
		if norm != 0 {
			acc /= norm
		}
		out[i] = clamp16(acc)
	}
	return out
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

func clamp16(v float64) int16 {
	v = math.Round(v)
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}

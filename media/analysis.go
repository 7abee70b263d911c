package media

import (
	"math"
	"math/cmplx"
	"slices"
)

// Signal analysis for tests and diagnostics: "which tones are in this
// recording" and "does this recording contain that reference audio". Both
// are built to survive what a real call does to audio: unknown delay, G.711
// quantisation, lost packets replaced by concealment, and jitter-buffer
// adaptation that shifts the timeline by a frame now and then.

// ToneLevel returns the fraction of samples' energy that lies at freq Hz
// (sample rate SampleRate), between 0 and about 1. A pure tone at freq gives
// ≈1, four equal tones ≈0.25 each, silence or other frequencies ≈0. It uses
// the Goertzel algorithm, which evaluates one DFT term in O(n).
func ToneLevel(samples []int16, freq float64) float64 {
	n := len(samples)
	if n == 0 {
		return 0
	}
	var energy float64
	for _, s := range samples {
		energy += float64(s) * float64(s)
	}
	if energy == 0 {
		return 0
	}
	return GoertzelPower(samples, freq) / energy
}

// GoertzelPower returns the power of the freq Hz component of samples
// (sample rate SampleRate), scaled so that a sine of amplitude A over n
// samples yields A²·n/2, the energy it contributes to the sum of squares.
func GoertzelPower(samples []int16, freq float64) float64 {
	n := len(samples)
	if n == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / SampleRate
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	// |X(w)|² of the DTFT at w, from the last two filter states.
	re := s1 - s2*math.Cos(w)
	im := s2 * math.Sin(w)
	mag2 := re*re + im*im
	return 2 * mag2 / float64(n)
}

// DefaultToneThreshold is the energy fraction above which DetectTones calls a
// tone present. With up to seven equal tones each holds more than 0.1 of the
// energy, while leakage, quantisation noise and concealment artefacts at an
// absent frequency stay well under 0.01.
const DefaultToneThreshold = 0.03

// DetectTones returns the subset of freqs (in their given order) whose
// ToneLevel in samples is at least threshold (0 means
// DefaultToneThreshold). Silence detects nothing. Frequencies should be at
// least a few Hz × (8000/len(samples)) apart to be told apart.
func DetectTones(samples []int16, freqs []float64, threshold float64) []float64 {
	if threshold <= 0 {
		threshold = DefaultToneThreshold
	}
	var out []float64
	for _, f := range freqs {
		if ToneLevel(samples, f) >= threshold {
			out = append(out, f)
		}
	}
	return out
}

// Correlate finds where ref best matches inside rec. It returns the peak
// normalized cross-correlation (−1…1; 1 means rec contains an exact scaled
// copy of ref) and the lag in samples at which it occurs: rec[i+lag] ≈ ref[i].
// Lags run from −len(ref)/2 to len(rec)−len(ref)/2, so a recording that
// starts late (missing up to half of ref) still matches; at every lag the
// correlation is normalised by the energy of the overlapping parts only.
func Correlate(rec, ref []int16) (peak float64, lag int) {
	if len(rec) == 0 || len(ref) == 0 {
		return 0, 0
	}
	return newCorrelator(rec, len(ref)).correlate(ref, (len(ref)+1)/2)
}

// correlator holds the transform of a recording so that several reference
// windows can be searched in it at the cost of one forward and one inverse
// FFT each.
type correlator struct {
	size int
	rec  []int16
	recF []complex128
	recE []float64
}

func newCorrelator(rec []int16, maxRef int) *correlator {
	size := 1
	for size < len(rec)+maxRef {
		size <<= 1
	}
	a := make([]complex128, size)
	for i, s := range rec {
		a[i] = complex(float64(s), 0)
	}
	fft(a, false)
	return &correlator{size: size, rec: rec, recF: a, recE: prefixEnergy(rec)}
}

// correlate returns the best normalized correlation of ref against the
// recording over all lags where at least minOverlap samples overlap.
func (c *correlator) correlate(ref []int16, minOverlap int) (peak float64, lag int) {
	if len(ref) == 0 || len(ref)+len(c.rec) > c.size {
		return 0, 0
	}
	minOverlap = max(1, min(minOverlap, len(ref), len(c.rec)))
	// Linear cross-correlation via FFT: x[k] = Σ ref[i]·rec[i+k].
	b := make([]complex128, c.size)
	for i, s := range ref {
		b[i] = complex(float64(s), 0)
	}
	fft(b, false)
	for i := range b {
		b[i] = c.recF[i] * cmplx.Conj(b[i])
	}
	fft(b, true)

	refE := prefixEnergy(ref)
	found := false
	for k := -(len(ref) - minOverlap); k <= len(c.rec)-minOverlap; k++ {
		// Overlap: ref indices [i0, i1), rec indices [i0+k, i1+k).
		i0 := max(0, -k)
		i1 := min(len(ref), len(c.rec)-k)
		if i1-i0 < minOverlap {
			continue
		}
		er := refE[i1] - refE[i0]
		ec := c.recE[i1+k] - c.recE[i0+k]
		if er <= 0 || ec <= 0 {
			continue
		}
		idx := k
		if idx < 0 {
			idx += c.size
		}
		v := real(b[idx]) / float64(c.size) / math.Sqrt(er*ec)
		if !found || v > peak {
			peak, lag, found = v, k, true
		}
	}
	return peak, lag
}

func prefixEnergy(x []int16) []float64 {
	p := make([]float64, len(x)+1)
	for i, s := range x {
		p[i+1] = p[i] + float64(s)*float64(s)
	}
	return p
}

// MatchResult summarises how well a recording matches a reference.
type MatchResult struct {
	// Score is the median over the reference's windows of each window's best
	// normalized correlation in the recording. Above about 0.8 the recording
	// carries the reference; unrelated audio scores near 0 to 0.3.
	Score float64
	// Lag is the median lag in samples (rec[i+Lag] ≈ ref[i]).
	Lag int
	// Windows is how many reference windows were scored.
	Windows int
}

// matchWindow is the reference window Match scores independently: 250 ms is
// long enough to be unambiguous in speech-like audio and short enough that a
// jitter-buffer adjustment (a 20 ms shift) spoils at most one window.
const matchWindow = SampleRate / 4

// Match checks that rec contains ref despite delay, packet loss,
// concealment and timeline shifts: it cuts ref into 250 ms windows, finds
// each window's best correlation anywhere in rec, and reports the median.
// Windows of ref that are nearly silent are skipped, since silence matches
// silence anywhere.
func Match(rec, ref []int16) MatchResult {
	var (
		scores []float64
		lags   []int
	)
	if len(rec) == 0 {
		return MatchResult{}
	}
	refRMS := rms(ref)
	corr := newCorrelator(rec, matchWindow)
	for off := 0; off+matchWindow <= len(ref); off += matchWindow {
		w := ref[off : off+matchWindow]
		if rms(w) < refRMS/8 || rms(w) < 30 {
			continue
		}
		peak, lag := corr.correlate(w, len(w))
		scores = append(scores, peak)
		lags = append(lags, lag-off)
	}
	if len(scores) == 0 {
		return MatchResult{}
	}
	slices.Sort(scores)
	slices.Sort(lags)
	return MatchResult{Score: scores[len(scores)/2], Lag: lags[len(lags)/2], Windows: len(scores)}
}

func rms(x []int16) float64 {
	if len(x) == 0 {
		return 0
	}
	var e float64
	for _, s := range x {
		e += float64(s) * float64(s)
	}
	return math.Sqrt(e / float64(len(x)))
}

// fft is an in-place iterative radix-2 FFT; len(x) must be a power of two.
// inverse computes the unscaled inverse transform.
func fft(x []complex128, inverse bool) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	sign := -1.0
	if inverse {
		sign = 1
	}
	for length := 2; length <= n; length <<= 1 {
		ang := sign * 2 * math.Pi / float64(length)
		wl := complex(math.Cos(ang), math.Sin(ang))
		for i := 0; i < n; i += length {
			w := complex(1, 0)
			half := length >> 1
			for k := 0; k < half; k++ {
				u := x[i+k]
				v := x[i+k+half] * w
				x[i+k] = u + v
				x[i+k+half] = u - v
				w *= wl
			}
		}
	}
}

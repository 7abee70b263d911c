package media

import "time"

// E-model (ITU-T G.107) quality estimate for G.711 calls.
//
// The full model has some twenty inputs; for a G.711 call between two
// softphones only delay and packet loss vary, and every other input takes its
// G.107 default, which gives the basic signal-to-noise value R0 − Is = 93.2.
// So
//
//	R   = 93.2 − Id − Ie,eff
//	Id  ≈ 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)          (d: one-way delay, ms)
//	Ie,eff = Ie + (95 − Ie)·Ppl / (Ppl + Bpl)               (Ppl: loss in %)
//	MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)         (0 < R < 100)
//
// with Ie = 0 and Bpl = 25.1 for G.711 with packet loss concealment (G.113
// Appendix I) — our jitter buffer conceals — and the simplified delay
// impairment of G.107 as used by most VoIP monitors (Cole & Rosenbluth).

const (
	eModelR0    = 93.2 // R for a default G.711 connection with no delay or loss
	g711Ie      = 0.0  // equipment impairment of G.711
	g711PLCBpl  = 25.1 // packet-loss robustness of G.711 with PLC
	delayKneeMs = 177.3
)

// RFactor returns the E-model transmission rating R for a G.711 call with
// PLC, given the one-way mouth-to-ear delay and the fraction (0–1) of
// packets lost or discarded.
func RFactor(oneWay time.Duration, loss float64) float64 {
	d := float64(oneWay) / float64(time.Millisecond)
	if d < 0 {
		d = 0
	}
	id := 0.024 * d
	if d > delayKneeMs {
		id += 0.11 * (d - delayKneeMs)
	}
	ppl := min(max(loss, 0), 1) * 100
	ie := g711Ie + (95-g711Ie)*ppl/(ppl+g711PLCBpl)
	return eModelR0 - id - ie
}

// MOSFromR converts an E-model R to an estimated mean opinion score,
// 1 (bad) to 4.5 (the model's ceiling; G.711 without impairments gives 4.41).
func MOSFromR(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	mos := 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	return min(max(mos, 1), 4.5)
}

// EstimateMOS returns the E-model MOS of a G.711 call with PLC. oneWay is
// the mouth-to-ear delay (for a Stream: RTT/2 plus the jitter buffer
// delay), loss the fraction of packets the listener did not get in time.
func EstimateMOS(oneWay time.Duration, loss float64) float64 {
	return MOSFromR(RFactor(oneWay, loss))
}

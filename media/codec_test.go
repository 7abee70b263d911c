package media

import (
	"testing"
)

func TestG711RoundTripKeepsTheSignal(t *testing.T) {
	in := synthTone(1000, 0.5, 8000)
	for _, c := range []Codec{PCMU, PCMA} {
		enc := c.Encode(nil, in)
		if len(enc) != len(in) {
			t.Fatalf("%v: %d bytes for %d samples", c, len(enc), len(in))
		}
		out := c.Decode(nil, enc)
		// G.711 is logarithmic: about 38 dB signal-to-quantisation-noise.
		var sig, noise float64
		for i := range in {
			d := float64(in[i]) - float64(out[i])
			sig += float64(in[i]) * float64(in[i])
			noise += d * d
		}
		if snr := 10 * log10(sig/noise); snr < 30 {
			t.Errorf("%v: SNR %.1f dB, want ≥ 30", c, snr)
		}
	}
	// The two laws differ on the wire.
	if string(PCMU.Encode(nil, in[:10])) == string(PCMA.Encode(nil, in[:10])) {
		t.Error("µ-law and A-law encodings are identical")
	}
}

func TestG711KnownCodewords(t *testing.T) {
	// Digital silence is 0xFF in µ-law and 0xD5 in A-law (G.711 tables).
	if b := PCMU.Encode(nil, []int16{0}); b[0] != 0xff {
		t.Errorf("µ-law(0) = %#x, want 0xff", b[0])
	}
	if b := PCMA.Encode(nil, []int16{0}); b[0] != 0xd5 {
		t.Errorf("A-law(0) = %#x, want 0xd5", b[0])
	}
}

func TestCodecNames(t *testing.T) {
	for name, want := range map[string]Codec{"PCMU": PCMU, "pcma": PCMA} {
		c, err := CodecByName(name)
		if err != nil || c != want {
			t.Errorf("CodecByName(%q) = %v, %v", name, c, err)
		}
	}
	if _, err := CodecByName("opus"); err == nil {
		t.Error("opus accepted")
	}
	if PCMU.PayloadType() != 0 || PCMA.PayloadType() != 8 || PCMA.String() != "PCMA" {
		t.Error("payload types or names wrong")
	}
}

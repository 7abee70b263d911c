package media

import (
	"fmt"
	"time"

	"github.com/zaf/g711"
)

// The audio clock every part of this package works in: G.711 narrowband.
const (
	// SampleRate is the audio sample rate and the RTP clock rate of G.711 (RFC 3551 §4.5.14).
	SampleRate = 8000
	// FrameDuration is the packetization interval (ptime) we send and play out.
	FrameDuration = 20 * time.Millisecond
	// FrameSamples is the number of samples in one FrameDuration at SampleRate.
	FrameSamples = SampleRate * 20 / 1000
)

// Codec identifies a G.711 variant by its static RTP payload type (RFC 3551 table 4).
type Codec uint8

const (
	// PCMU is G.711 µ-law, static payload type 0.
	PCMU Codec = 0
	// PCMA is G.711 A-law, static payload type 8.
	PCMA Codec = 8
)

// PayloadType returns the RTP payload type number.
func (c Codec) PayloadType() uint8 { return uint8(c) }

// String returns the SDP encoding name (rtpmap), e.g. "PCMU".
func (c Codec) String() string {
	switch c {
	case PCMU:
		return "PCMU"
	case PCMA:
		return "PCMA"
	}
	return fmt.Sprintf("PT%d", uint8(c))
}

// Valid reports whether c is one of the G.711 codecs this package implements.
func (c Codec) Valid() bool { return c == PCMU || c == PCMA }

// CodecByName maps an SDP rtpmap encoding name ("PCMU", "PCMA", any case) to a Codec.
func CodecByName(name string) (Codec, error) {
	switch {
	case equalFold(name, "PCMU"):
		return PCMU, nil
	case equalFold(name, "PCMA"):
		return PCMA, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Encode appends the G.711 encoding of pcm (one byte per sample) to dst and
// returns the extended slice. It panics on an invalid codec, which New and
// the Fanout reject up front.
func (c Codec) Encode(dst []byte, pcm []int16) []byte {
	switch c {
	case PCMU:
		for _, s := range pcm {
			dst = append(dst, g711.EncodeUlawFrame(s))
		}
	case PCMA:
		for _, s := range pcm {
			dst = append(dst, g711.EncodeAlawFrame(s))
		}
	default:
		panic("media: encode with invalid codec " + c.String())
	}
	return dst
}

// Decode appends the linear samples of a G.711 payload to dst.
func (c Codec) Decode(dst []int16, payload []byte) []int16 {
	switch c {
	case PCMU:
		for _, b := range payload {
			dst = append(dst, g711.DecodeUlawFrame(b))
		}
	case PCMA:
		for _, b := range payload {
			dst = append(dst, g711.DecodeAlawFrame(b))
		}
	default:
		panic("media: decode with invalid codec " + c.String())
	}
	return dst
}

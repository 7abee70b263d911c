package ice

import (
	"strconv"
	"strings"
)

// Codec is one RTP payload format of an m-line (RFC 3551, RFC 4566 §6).
type Codec struct {
	// PT is the payload type.
	PT uint8
	// Name is the encoding name of a=rtpmap ("PCMU"); empty for an
	// unknown dynamic payload type without rtpmap.
	Name string
	// Rate is the RTP clock rate.
	Rate int
	// Channels is the channel count; 0 means unspecified (one).
	Channels int
	// Fmtp is the a=fmtp parameter string, if any.
	Fmtp string
}

// TelephoneEventPT is the payload type we offer for RFC 4733 events; the
// value most SIP phones use.
const TelephoneEventPT = 101

// The codecs we speak (RFC 3551 static payload types).
var (
	PCMU = Codec{PT: 0, Name: "PCMU", Rate: 8000}
	PCMA = Codec{PT: 8, Name: "PCMA", Rate: 8000}
)

// staticCodec returns the RFC 3551 meaning of a static payload type that
// an m-line lists without rtpmap.
func staticCodec(pt uint8) (Codec, bool) {
	switch pt {
	case 0:
		return PCMU, true
	case 3:
		return Codec{PT: 3, Name: "GSM", Rate: 8000}, true
	case 4:
		return Codec{PT: 4, Name: "G723", Rate: 8000}, true
	case 8:
		return PCMA, true
	case 9:
		return Codec{PT: 9, Name: "G722", Rate: 8000}, true
	case 13:
		return Codec{PT: 13, Name: "CN", Rate: 8000}, true
	case 18:
		return Codec{PT: 18, Name: "G729", Rate: 8000}, true
	}
	return Codec{}, false
}

func (c Codec) rtpmap() string {
	s := strconv.Itoa(int(c.PT)) + " " + c.Name + "/" + strconv.Itoa(c.Rate)
	if c.Channels > 1 {
		s += "/" + strconv.Itoa(c.Channels)
	}
	return s
}

// IsPCMU reports whether c is G.711 µ-law at 8 kHz.
func (c Codec) IsPCMU() bool { return strings.EqualFold(c.Name, "PCMU") && c.Rate == 8000 }

// IsPCMA reports whether c is G.711 A-law at 8 kHz.
func (c Codec) IsPCMA() bool { return strings.EqualFold(c.Name, "PCMA") && c.Rate == 8000 }

// Negotiate picks the codec to answer with: the first offered codec that
// is PCMU or PCMA, in the offerer's order of preference (RFC 3264 §6.1
// lets the answerer pick, and honouring the offerer's order is what
// peers expect). The offer's payload type is kept. It fails with
// ErrNoCommonCodec when neither is offered.
func Negotiate(offered []Codec) (Codec, error) {
	for _, c := range offered {
		if c.IsPCMU() || c.IsPCMA() {
			return c, nil
		}
	}
	return Codec{}, ErrNoCommonCodec
}

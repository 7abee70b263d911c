package media

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// RFC 4733 telephone-events (DTMF) carried in RTP.
//
// Payload, network byte order (RFC 4733 §2.3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// All packets of one event share the RTP timestamp of its start; duration
// grows in timestamp units as the event goes on; the packet with E set ends
// it and is sent three times. Events 0–9 are the digits, 10 '*', 11 '#',
// 12–15 'A'–'D' (RFC 4733 §3.2).

// DefaultTelephoneEventPT is the dynamic payload type we offer for
// telephone-event/8000; 101 is what most SIP phones use.
const DefaultTelephoneEventPT = 101

// TelephoneEvent is one RFC 4733 event payload.
type TelephoneEvent struct {
	Event    uint8  // event code: 0–9, 10 '*', 11 '#', 12–15 A–D, 16 flash
	End      bool   // E bit: this packet ends the event
	Volume   uint8  // power level in −dBm0, 0–63
	Duration uint16 // in RTP timestamp units (1/8000 s) since the event began
}

// ParseTelephoneEvent decodes the first event in an RTP payload. Payloads
// may be longer (some senders pad); shorter ones are an error.
func ParseTelephoneEvent(b []byte) (TelephoneEvent, error) {
	if len(b) < 4 {
		return TelephoneEvent{}, fmt.Errorf("%w: payload of %d bytes, need 4", ErrBadEvent, len(b))
	}
	return TelephoneEvent{
		Event:    b[0],
		End:      b[1]&0x80 != 0,
		Volume:   b[1] & 0x3f,
		Duration: binary.BigEndian.Uint16(b[2:4]),
	}, nil
}

// Marshal encodes the event as a 4-byte payload (R bit zero).
func (e TelephoneEvent) Marshal() []byte {
	b := make([]byte, 4)
	b[0] = e.Event
	b[1] = e.Volume & 0x3f
	if e.End {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], e.Duration)
	return b
}

const dtmfDigits = "0123456789*#ABCD"

// DigitEvent returns the event code of a DTMF digit (0–9, *, #, A–D, case-insensitive).
func DigitEvent(d rune) (uint8, error) {
	if d >= 'a' && d <= 'd' {
		d -= 'a' - 'A'
	}
	i := strings.IndexRune(dtmfDigits, d)
	if i < 0 {
		return 0, fmt.Errorf("%w: %q is not a DTMF digit", ErrBadEvent, d)
	}
	return uint8(i), nil
}

// EventDigit returns the DTMF digit for an event code, or 0 for events that
// are not digits (flash, line events).
func EventDigit(ev uint8) rune {
	if int(ev) < len(dtmfDigits) {
		return rune(dtmfDigits[ev])
	}
	return 0
}

// DTMF is a received telephone-event, reported once per event.
type DTMF struct {
	Digit rune   // '0'–'9', '*', '#', 'A'–'D', or 0 for non-digit events
	Event uint8  // the RFC 4733 event code
	SSRC  uint32 // the sender
}

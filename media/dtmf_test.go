package media

import (
	"bytes"
	"testing"
)

func TestTelephoneEventWireFormat(t *testing.T) {
	// RFC 4733 §2.3: '#' (11), end bit, volume 10, duration 800.
	e := TelephoneEvent{Event: 11, End: true, Volume: 10, Duration: 800}
	want := []byte{11, 0x80 | 10, 0x03, 0x20}
	if got := e.Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("marshal %x, want %x", got, want)
	}
	back, err := ParseTelephoneEvent(want)
	if err != nil || back != e {
		t.Fatalf("parse = %+v, %v", back, err)
	}
	if _, err := ParseTelephoneEvent([]byte{1, 2, 3}); err == nil {
		t.Fatal("3-byte payload accepted")
	}
}

func TestDTMFDigits(t *testing.T) {
	for i, d := range "0123456789*#ABCD" {
		ev, err := DigitEvent(d)
		if err != nil || int(ev) != i || EventDigit(ev) != d {
			t.Errorf("%c: event %d err %v back %c", d, ev, err, EventDigit(ev))
		}
	}
	if ev, _ := DigitEvent('b'); ev != 13 {
		t.Errorf("lower-case b = %d", ev)
	}
	if _, err := DigitEvent('E'); err == nil {
		t.Error("E accepted as a digit")
	}
	if EventDigit(16) != 0 {
		t.Error("flash reported as a digit")
	}
}

func FuzzParseTelephoneEvent(f *testing.F) {
	f.Add([]byte{11, 0x8a, 0x03, 0x20})
	f.Add([]byte{1, 0, 0, 160, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseTelephoneEvent(b)
		if err != nil {
			return
		}
		// Round trip, ignoring the reserved bit and trailing bytes.
		again, err := ParseTelephoneEvent(e.Marshal())
		if err != nil || again != e {
			t.Fatalf("round trip %+v -> %+v (%v)", e, again, err)
		}
	})
}

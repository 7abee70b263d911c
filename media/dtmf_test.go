package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
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

func TestDTMFGapIsNotConcealment(t *testing.T) {
	// A sender stops audio for a 100 ms event (5 frames), as ours does.
	src := newRxSource(7, fixedDelay)
	t0 := time.Unix(50, 0)
	audio := synthTone(440, 0.3, FrameSamples)
	var dtmf []rune
	at := func(frame int) time.Time { return t0.Add(time.Duration(frame)*FrameDuration + 3*time.Millisecond) }
	seq := uint16(0)
	for f := 0; f < 30; f++ {
		ts := uint32(f * FrameSamples)
		if f >= 10 && f < 15 {
			// Event packets all carry the event's start timestamp.
			d := uint16((f - 9) * FrameSamples)
			reps := 1
			if f == 14 {
				reps = 3
			}
			for r := 0; r < reps; r++ {
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: seq, Timestamp: 10 * FrameSamples, SSRC: 7},
					Payload: TelephoneEvent{Event: 5, End: f == 14, Duration: d}.Marshal()}
				seq++
				if e := src.handleEvent(p); e != nil {
					dtmf = append(dtmf, e.Digit)
				}
			}
			continue
		}
		src.jb.Push(seq, ts, audio, at(f))
		seq++
	}
	frame := make([]int16, FrameSamples)
	for k := 0; k < 40; k++ {
		src.jb.Pop(frame, at(k).Add(2*time.Millisecond))
	}
	if string(dtmf) != "5" {
		t.Fatalf("events %q, want one '5'", string(dtmf))
	}
	st := src.jb.Stats()
	if st.Concealed != 0 || st.Duplicates != 0 || st.Played != 30 {
		t.Fatalf("stats %+v: want 25 audio + 5 silent frames played, none concealed", st)
	}
}

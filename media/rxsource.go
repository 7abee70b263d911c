package media

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// rxSource is what we know about one remote SSRC: RFC 3550 Appendix A
// sequence tracking, loss and jitter, the last SR for LSR/DLSR, DTMF state
// and its jitter buffer. The Stream's recvMu guards it.
type rxSource struct {
	ssrc uint32
	jb   *JitterBuffer
	pcm  []int16 // decode scratch

	// RFC 3550 A.1.
	init          bool
	maxSeq        uint16
	cycles        uint32 // count of sequence number wraps, shifted << 16
	baseSeq       uint32
	badSeq        uint32
	received      uint64 // unique-ish packets accepted (duplicates included, as in A.3)
	expectedPrior uint64
	receivedPrior uint64

	// RFC 3550 A.8.
	haveTransit bool
	transit     int64
	jitter      float64 // in timestamp units

	lastSR     uint32 // middle 32 bits of the NTP time in their last SR
	lastSRAt   time.Time
	lastPacket time.Time
	bye        bool

	haveEvent   bool
	lastEventTS uint32
	eventFilled uint16 // samples of the current event already filled with silence
}

// RFC 3550 A.1 constants.
const (
	maxDropout    = 3000
	maxMisorder   = 100
	rtpSeqMod     = 1 << 16
	jitterEpochNs = 0
)

func newRxSource(ssrc uint32, jc JitterConfig) *rxSource {
	return &rxSource{ssrc: ssrc, jb: NewJitterBuffer(jc)}
}

// updateSeq is RFC 3550 A.1's update_seq without the probation period (a
// call has one peer we already negotiated with, so its first packet is
// trusted). It returns false for a packet to drop: a sequence jump that is
// not yet confirmed by a second packet.
func (r *rxSource) updateSeq(seq uint16) bool {
	if !r.init {
		r.init = true
		r.baseSeq = uint32(seq)
		r.maxSeq = seq
		r.badSeq = rtpSeqMod + 1
		r.received = 1
		return true
	}
	udelta := seq - r.maxSeq
	switch {
	case udelta < maxDropout:
		// In order, with a permissible gap.
		if seq < r.maxSeq {
			r.cycles += rtpSeqMod
		}
		r.maxSeq = seq
	case udelta <= rtpSeqMod-maxMisorder:
		// A very large jump: accept only when the next packet confirms it
		// (the sender restarted); the jitter buffer resyncs then.
		if uint32(seq) == r.badSeq {
			r.baseSeq = uint32(seq)
			r.maxSeq = seq
			r.cycles = 0
			r.badSeq = rtpSeqMod + 1
			r.received = 0
			r.expectedPrior, r.receivedPrior = 0, 0
		} else {
			r.badSeq = (uint32(seq) + 1) & (rtpSeqMod - 1)
			return false
		}
	default:
		// Duplicate or reordered packet.
	}
	r.received++
	return true
}

func (r *rxSource) extMax() uint64 { return uint64(r.cycles) + uint64(r.maxSeq) }

// expectedLost returns RFC 3550 A.3's expected and lost counts.
func (r *rxSource) expectedLost() (expected uint64, lost int64) {
	if !r.init {
		return 0, 0
	}
	expected = r.extMax() - uint64(r.baseSeq) + 1
	return expected, int64(expected) - int64(r.received)
}

// updateJitter is RFC 3550 A.8: J += (|D| − J)/16 with transit times in
// timestamp units.
func (r *rxSource) updateJitter(ts uint32, now time.Time) {
	arrival := now.UnixNano() * SampleRate / int64(time.Second)
	transit := arrival - int64(ts)
	if r.haveTransit {
		d := transit - r.transit
		// A timestamp wrap makes one difference huge; skip it.
		if d > 1<<31 || d < -(1<<31) {
			r.transit = transit
			return
		}
		if d < 0 {
			d = -d
		}
		r.jitter += (float64(d) - r.jitter) / 16
	}
	r.transit = transit
	r.haveTransit = true
}

// handleEvent processes a telephone-event packet and returns the event if it
// is a new one (a new start timestamp).
func (r *rxSource) handleEvent(pkt *rtp.Packet) *DTMF {
	ev, err := ParseTelephoneEvent(pkt.Payload)
	if err != nil {
		return nil
	}
	newEvent := !r.haveEvent || pkt.Timestamp != r.lastEventTS
	if newEvent {
		r.haveEvent = true
		r.lastEventTS = pkt.Timestamp
		r.eventFilled = 0
	}
	// The event covers [timestamp, timestamp+duration) of media time; fill
	// the newly covered part with silence for playout.
	if ev.Duration > r.eventFilled {
		from := r.eventFilled
		if ev.Duration-from > SampleRate {
			from = ev.Duration - SampleRate // only the last second can still matter
		}
		r.jb.fillSilence(pkt.Timestamp+uint32(from), int(ev.Duration-from))
		r.eventFilled = ev.Duration
	}
	if !newEvent {
		return nil
	}
	return &DTMF{Digit: EventDigit(ev.Event), Event: ev.Event, SSRC: pkt.SSRC}
}

// receptionReport builds this source's RTCP reception block (RFC 3550
// §6.4.1, A.3) and starts a new reporting interval.
func (r *rxSource) receptionReport(now time.Time) rtcp.ReceptionReport {
	expected, lost := r.expectedLost()
	expInt := expected - r.expectedPrior
	recInt := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt > 0 && lostInt > 0 {
		fraction = uint8(min(lostInt<<8/int64(expInt), 255))
	}
	// The cumulative count is a signed 24-bit field.
	lost = min(max(lost, -(1<<23)), 1<<23-1)
	var dlsr uint32
	if r.lastSR != 0 {
		dlsr = uint32(now.Sub(r.lastSRAt) * 65536 / time.Second)
	}
	return rtcp.ReceptionReport{
		SSRC:               r.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost) & 0xffffff,
		LastSequenceNumber: uint32(r.extMax()),
		Jitter:             uint32(r.jitter),
		LastSenderReport:   r.lastSR,
		Delay:              dlsr,
	}
}

// rxTotals are the counters Stats sums over sources.
type rxTotals struct {
	expected, received uint64
	lost               int64
	jb                 JitterStats
}

func (t *rxTotals) add(o rxTotals) {
	t.expected += o.expected
	t.received += o.received
	t.lost += o.lost
	t.jb.Late += o.jb.Late
	t.jb.Duplicates += o.jb.Duplicates
	t.jb.Concealed += o.jb.Concealed
	t.jb.Inserted += o.jb.Inserted
	t.jb.Dropped += o.jb.Dropped
	t.jb.Played += o.jb.Played
	t.jb.Pushed += o.jb.Pushed
}

func (r *rxSource) totals() rxTotals {
	e, l := r.expectedLost()
	return rxTotals{expected: e, received: r.received, lost: l, jb: r.jb.Stats()}
}

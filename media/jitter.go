package media

import (
	"slices"
	"time"
)

// JitterConfig tunes a JitterBuffer. The zero value gives the defaults below.
type JitterConfig struct {
	// InitialDelay is the playout delay used until enough packets have
	// arrived to measure jitter (JitterConfig.Window/10). Default 60 ms:
	// enough for a LAN or a good Internet path, small enough for a call.
	InitialDelay time.Duration
	// MinDelay bounds the adaptive target from below. Default 20 ms, one
	// frame: less leaves no room for the packet being received.
	MinDelay time.Duration
	// MaxDelay bounds the target from above. Default 200 ms; beyond that the
	// delay itself hurts the conversation more than the late packets would
	// (ITU-T G.114 puts the comfortable limit for one-way delay at 150 ms).
	MaxDelay time.Duration
	// Window is how many recent packets the target follows. Default 250
	// (5 s at 20 ms), long enough that a brief calm spell does not shrink the
	// buffer right before the next burst.
	Window int
	// Percentile of the arrival delay variation the target covers. Default
	// 0.95, as WebRTC's NetEq: one packet in twenty may come too late, which
	// concealment hides, rather than delaying every packet for the worst one.
	Percentile float64
}

func (c JitterConfig) withDefaults() JitterConfig {
	if c.InitialDelay <= 0 {
		c.InitialDelay = 60 * time.Millisecond
	}
	if c.MinDelay <= 0 {
		c.MinDelay = 20 * time.Millisecond
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 200 * time.Millisecond
	}
	if c.MaxDelay < c.MinDelay {
		c.MaxDelay = c.MinDelay
	}
	c.InitialDelay = min(max(c.InitialDelay, c.MinDelay), c.MaxDelay)
	if c.Window <= 0 {
		c.Window = 250
	}
	if c.Percentile <= 0 || c.Percentile > 1 {
		c.Percentile = 0.95
	}
	return c
}

// PushResult says what a JitterBuffer did with a packet.
type PushResult int

const (
	// Accepted means the packet was queued for playout.
	Accepted PushResult = iota
	// Duplicate means a packet with the same sequence number was already received.
	Duplicate
	// Late means the packet's audio would have been played already; it was
	// discarded (its arrival still counts towards the jitter measurement).
	Late
	// Resync means the packet jumped far from the current timeline (a
	// sender restart or a new timestamp base); the buffer restarted from it.
	Resync
	// Empty means the packet carried no samples.
	Empty
)

// FrameStatus says what a JitterBuffer returned from Pop.
type FrameStatus int

const (
	// FrameSilent means there is no audio to play: nothing received yet, the
	// initial buffering delay, or the sender has paused. Not a loss.
	FrameSilent FrameStatus = iota
	// FrameAudio means every sample came from received packets.
	FrameAudio
	// FrameConcealed means some or all samples were synthesised by packet
	// loss concealment because their packets were lost or late, or because
	// the buffer stretched playout to raise its delay.
	FrameConcealed
)

// JitterStats are a JitterBuffer's counters.
type JitterStats struct {
	Pushed     uint64 // packets offered to Push
	Late       uint64 // discarded because they arrived after their playout time
	Duplicates uint64 // discarded as already received
	Overflows  uint64 // discarded because the buffer held more than MaxDelay+1 s
	Resyncs    uint64 // timeline restarts
	Played     uint64 // frames played entirely from received audio
	Concealed  uint64 // frames with at least one concealed sample (loss or lateness)
	Inserted   uint64 // frames inserted to grow the delay
	Dropped    uint64 // frames skipped to shrink the delay
	// TargetDelay is the playout delay the buffer aims for now.
	TargetDelay time.Duration
	// Delay is the playout delay applied now to the packets that arrive
	// earliest (those with the smallest network delay); the buffer's
	// contribution to mouth-to-ear delay.
	Delay time.Duration
}

// JitterBuffer turns RTP packets arriving with variable delay, out of order,
// duplicated or not at all into a steady 8 kHz sample stream.
//
// It is pull based: the playout side calls Pop once per frame interval and
// always gets a frame. The buffer maps RTP timestamps onto that clock with a
// playout delay chosen from measured jitter: for every packet it records the
// transit time (arrival time minus media time); the spread of transit times
// over the last Window packets, at the Percentile, is the target delay,
// clamped to [MinDelay, MaxDelay]. When the actual delay drifts a frame
// above target the buffer drops a frame; when it falls below, it inserts a
// concealment frame. Gaps are concealed G.711 Appendix I style, simplified:
// the last frame is repeated with a fade (−1 dB per 2 ms at first, silence
// after 100 ms).
//
// The buffer's delay is measured against the earliest Pop of the last
// second, so a playout goroutine that was starved and catches up with a
// burst of Pops does not look like excess delay. When the sender pauses
// (hold, silence suppression) the buffer plays silence, not concealment,
// and the next packet restarts the timeline like a new talkspurt.
//
// Sequence numbers (16 bit) and timestamps (32 bit) are unwrapped to 64 bits
// so wraparound is invisible. A JitterBuffer is not safe for concurrent use;
// Stream serialises access to its buffers.
type JitterBuffer struct {
	cfg JitterConfig

	started  bool      // a packet has been pushed since the last reset
	anchored bool      // playTS is mapped onto the Pop clock
	base     time.Time // origin for transit times
	highSeq  int64     // highest extended sequence number seen
	highTS   int64     // highest extended timestamp seen
	seen     [1024]int64
	pkts     []jbPacket // sorted by ts
	free     [][]int16

	idle    bool  // the sender went quiet; the next packet starts afresh
	playTS  int64 // extended timestamp of the next sample to play
	startTS int64 // samples before this are pre-roll silence, not concealment
	lastArr time.Time

	transit  []time.Duration // ring of recent transit times
	devBuf   []time.Duration // scratch for the percentile
	tpos     int
	popPhase [50]time.Duration // recent Pop offsets (now - media time of playTS), 1 s
	phaseN   int
	sinceAdj int // Pops since the last drop

	last       []int16 // last frame output, the concealment source
	concealRun int
	// pending counts frames concealed while nothing later was buffered. They
	// become Concealed once a later packet shows the stream went on, and are
	// forgotten if the sender turns out to have stopped: the end of a stream
	// is not a loss.
	pending uint64

	stats JitterStats
}

type jbPacket struct {
	seq     int64
	ts      int64
	samples []int16
	filler  bool // silence standing in for audio a DTMF event replaced
}

// seqOffset keeps extended sequence numbers positive so 0 can mark empty
// slots in the duplicate window.
const seqOffset = 1 << 20

// NewJitterBuffer returns an empty buffer.
func NewJitterBuffer(cfg JitterConfig) *JitterBuffer {
	cfg = cfg.withDefaults()
	b := &JitterBuffer{cfg: cfg}
	b.stats.TargetDelay = cfg.InitialDelay
	return b
}

// sampleNs is the duration of one sample; 8 kHz divides a second exactly,
// which keeps these conversions exact and free of overflow for centuries.
const sampleNs = int64(time.Second) / SampleRate

func samplesToDur(n int64) time.Duration { return time.Duration(n * sampleNs) }
func durToSamples(d time.Duration) int64 { return int64(d) / sampleNs }

func unwrap16(ref int64, v uint16) int64 { return ref + int64(int16(v-uint16(ref))) }
func unwrap32(ref int64, v uint32) int64 { return ref + int64(int32(v-uint32(ref))) }

// reset forgets the timeline (packets, transit history) but keeps counters.
func (b *JitterBuffer) reset() {
	for _, p := range b.pkts {
		b.free = append(b.free, p.samples[:0])
	}
	b.pkts = b.pkts[:0]
	b.seen = [1024]int64{}
	b.transit = b.transit[:0]
	b.tpos = 0
	b.phaseN = 0
	b.started, b.anchored = false, false
}

// Push offers a received packet: its RTP sequence number and timestamp, its
// decoded samples (copied; the caller may reuse the slice) and when it arrived.
func (b *JitterBuffer) Push(seq uint16, ts uint32, samples []int16, arrival time.Time) PushResult {
	b.stats.Pushed++
	if len(samples) == 0 {
		return Empty
	}
	res := Accepted
	if b.idle {
		// First packet after a pause (hold, silence suppression, a sender
		// whose clock stopped): its timestamp may or may not have moved on
		// with real time, so start the timeline again from it, as at the
		// start of a talkspurt.
		b.idle = false
		b.reset()
	}
	if !b.started {
		b.startAt(seq, ts, arrival)
	}
	eseq := unwrap16(b.highSeq, seq)
	ets := unwrap32(b.highTS, ts)
	n := int64(len(samples))

	if b.anchored && eseq > b.highSeq {
		ahead := samplesToDur(ets - b.playTS)
		// The next packet in sequence order seconds away from the playout
		// point is not jitter: the sender restarted or changed its
		// timestamp base. Start over from it. (An old sequence number far
		// behind is just a very late packet.)
		if ahead > b.cfg.MaxDelay+2*time.Second || ahead < -2*time.Second {
			b.stats.Resyncs++
			b.reset()
			b.startAt(seq, ts, arrival)
			eseq, ets = b.highSeq, b.highTS
			res = Resync
		}
	}
	slot := &b.seen[eseq&1023]
	if *slot == eseq {
		b.stats.Duplicates++
		return Duplicate
	}
	*slot = eseq
	if eseq > b.highSeq {
		b.highSeq = eseq
	}
	if ets > b.highTS {
		b.highTS = ets
	}
	b.lastArr = arrival
	b.stats.Concealed += b.pending
	b.pending = 0
	b.addTransit(arrival.Sub(b.base) - samplesToDur(ets))

	if b.anchored && ets+n <= b.playTS {
		b.stats.Late++
		return Late
	}
	i, found := slices.BinarySearchFunc(b.pkts, ets, func(p jbPacket, t int64) int {
		switch {
		case p.ts < t:
			return -1
		case p.ts > t:
			return 1
		}
		return 0
	})
	if found {
		if b.pkts[i].filler {
			// Real audio for a stretch we had filled with silence (a
			// sender that keeps audio going during DTMF): prefer it.
			b.pkts[i].samples = append(b.pkts[i].samples[:0], samples...)
			b.pkts[i].filler = false
			b.pkts[i].seq = eseq
			return res
		}
		// Same media time under a new sequence number: a retransmission.
		b.stats.Duplicates++
		return Duplicate
	}
	if len(b.pkts) > 0 && samplesToDur(b.pkts[len(b.pkts)-1].ts-b.pkts[0].ts) > b.cfg.MaxDelay+time.Second {
		// A sender flooding us faster than real time: keep the newest.
		b.stats.Overflows++
		b.free = append(b.free, b.pkts[0].samples[:0])
		b.pkts = slices.Delete(b.pkts, 0, 1)
		if i > 0 {
			i--
		}
	}
	var buf []int16
	if k := len(b.free); k > 0 {
		buf, b.free = b.free[k-1], b.free[:k-1]
	}
	buf = append(buf[:0], samples...)
	b.pkts = slices.Insert(b.pkts, i, jbPacket{seq: eseq, ts: ets, samples: buf})
	return res
}

// fillSilence queues n samples of silence at timestamp ts: the audio a
// telephone-event replaced (RFC 4733 §2.5.1.3 lets the sender stop audio
// during an event), so playout does not count that stretch as lost. It
// does not touch sequence tracking or the jitter measurement, and yields to
// real audio for the same stretch. It is ignored before the first audio
// packet and when the stretch is already due or buffered.
func (b *JitterBuffer) fillSilence(ts uint32, n int) {
	if !b.started || n <= 0 || n > SampleRate {
		return
	}
	ets := unwrap32(b.highTS, ts)
	if b.anchored && ets+int64(n) <= b.playTS {
		return
	}
	i, found := slices.BinarySearchFunc(b.pkts, ets, func(p jbPacket, t int64) int {
		switch {
		case p.ts < t:
			return -1
		case p.ts > t:
			return 1
		}
		return 0
	})
	if found {
		return
	}
	var buf []int16
	if k := len(b.free); k > 0 {
		buf, b.free = b.free[k-1], b.free[:k-1]
	}
	buf = append(buf[:0], make([]int16, n)...)
	b.pkts = slices.Insert(b.pkts, i, jbPacket{seq: -1, ts: ets, samples: buf, filler: true})
	if ets > b.highTS {
		b.highTS = ets
	}
}

func (b *JitterBuffer) startAt(seq uint16, ts uint32, arrival time.Time) {
	b.started = true
	b.base = arrival
	b.highSeq = seqOffset + int64(seq)
	b.highTS = int64(ts)
	b.lastArr = arrival
}

func (b *JitterBuffer) addTransit(t time.Duration) {
	if len(b.transit) < b.cfg.Window {
		b.transit = append(b.transit, t)
		return
	}
	b.transit[b.tpos] = t
	b.tpos = (b.tpos + 1) % len(b.transit)
}

// measure returns the target delay and the smallest transit in the window.
func (b *JitterBuffer) measure() (target, minTransit time.Duration) {
	if len(b.transit) == 0 {
		return b.cfg.InitialDelay, 0
	}
	minTransit = slices.Min(b.transit)
	if len(b.transit) < max(b.cfg.Window/10, 10) {
		return b.cfg.InitialDelay, minTransit
	}
	dev := b.devBuf[:0]
	for _, t := range b.transit {
		dev = append(dev, t-minTransit)
	}
	b.devBuf = dev
	slices.Sort(dev)
	idx := int(float64(len(dev)-1) * b.cfg.Percentile)
	// A few ms of margin absorbs the Pop clock's own jitter.
	target = dev[idx] + 5*time.Millisecond
	return min(max(target, b.cfg.MinDelay), b.cfg.MaxDelay), minTransit
}

// Pop fills frame with the next len(frame) samples of playout (normally
// FrameSamples) and says where they came from. Call it once per frame
// interval with the current time.
func (b *JitterBuffer) Pop(frame []int16, now time.Time) FrameStatus {
	n := int64(len(frame))
	if !b.started {
		clear(frame)
		return FrameSilent
	}
	target, minTransit := b.measure()
	b.stats.TargetDelay = target
	if !b.anchored {
		if len(b.pkts) == 0 {
			clear(frame)
			return FrameSilent
		}
		// Place playout so that the fastest packets wait exactly target.
		// Rounded up to whole frames before the first packet so that frames
		// line up with packets (a lost packet is then exactly one
		// concealed frame) and the delay starts at or just above target.
		b.startTS = b.pkts[0].ts
		raw := durToSamples(now.Sub(b.base) - minTransit - target)
		if raw <= b.startTS {
			b.playTS = b.startTS - (b.startTS-raw+n-1)/n*n
		} else {
			b.playTS = b.startTS + (raw-b.startTS)/n*n
		}
		b.anchored = true
		b.phaseN = 0
		b.sinceAdj = 0
	}
	phase := now.Sub(b.base) - samplesToDur(b.playTS)
	b.popPhase[b.phaseN%len(b.popPhase)] = phase
	b.phaseN++
	// The earliest recent Pop phase is the stable one; later ones are just
	// the playout ticker running late.
	p := slices.Min(b.popPhase[:min(b.phaseN, len(b.popPhase))])
	delay := p - minTransit
	b.stats.Delay = max(delay, 0)
	b.sinceAdj++

	// The sender went quiet (hold, end of call, silence suppression): play
	// silence instead of counting an endless loss, and keep the clock running.
	if (len(b.pkts) == 0 || b.pkts[len(b.pkts)-1].ts+int64(len(b.pkts[len(b.pkts)-1].samples)) <= b.playTS) &&
		now.Sub(b.lastArr) > b.cfg.MaxDelay+3*FrameDuration {
		b.consume(n)
		b.playTS += n
		b.concealRun = 0
		b.pending = 0
		b.idle = true
		clear(frame)
		b.last = append(b.last[:0], frame...)
		return FrameSilent
	}

	excess := delay - target
	// A Pop running late (the playout goroutine was starved and is catching
	// up with a burst of Pops) says nothing about the buffer's delay, so it
	// must not trigger an adjustment: early in such a burst the delay looks
	// far too high, and a drop made then would have to be undone later.
	lateCall := phase > p+10*time.Millisecond
	switch {
	case lateCall:
	case excess < -5*time.Millisecond && b.playTS >= b.startTS:
		// Packets are arriving after their playout time: hold the
		// timeline for a frame and fill it with concealment.
		b.conceal(frame, 0, n)
		b.shiftPhase(samplesToDur(n))
		b.stats.Inserted++
		return FrameConcealed
	case excess >= FrameDuration && b.sinceAdj >= 3 && b.covered(b.playTS, 2*n) &&
		(b.sinceAdj >= 50 || excess >= 2*FrameDuration || b.quietAt(b.playTS, n)):
		// More delay than needed and two frames of audio at hand: skip
		// one. A quiet frame (a pause in speech) goes at once; in
		// continuous sound we cut at most one frame a second unless the
		// excess is large, since each cut is audible.
		b.consume(n)
		b.playTS += n
		b.shiftPhase(-samplesToDur(n))
		b.sinceAdj = 0
		b.stats.Dropped++
	}

	status := b.fill(frame)
	b.consume(n)
	b.playTS += n
	return status
}

// shiftPhase moves the remembered Pop phases after playTS is adjusted by
// something other than the normal one frame per Pop.
func (b *JitterBuffer) shiftPhase(d time.Duration) {
	for i := range b.popPhase {
		b.popPhase[i] += d
	}
}

// covered reports whether every sample in [from, from+n) is buffered.
func (b *JitterBuffer) covered(from, n int64) bool {
	next := from
	for _, p := range b.pkts {
		if p.ts > next {
			return false
		}
		if end := p.ts + int64(len(p.samples)); end > next {
			next = end
		}
		if next >= from+n {
			return true
		}
	}
	return false
}

// quietLevel is the RMS below which a frame counts as a pause in speech
// (about -44 dBFS), where dropping it to shrink the delay goes unnoticed.
const quietLevel = 200

// quietAt reports whether the buffered audio in [from, from+n) is quiet.
func (b *JitterBuffer) quietAt(from, n int64) bool {
	var e float64
	for _, p := range b.pkts {
		for i, s := range p.samples {
			if t := p.ts + int64(i); t >= from && t < from+n {
				e += float64(s) * float64(s)
			}
		}
		if p.ts >= from+n {
			break
		}
	}
	return e < quietLevel*quietLevel*float64(n)
}

// fill writes the samples for [playTS, playTS+len(frame)) and conceals holes.
func (b *JitterBuffer) fill(frame []int16) FrameStatus {
	n := int64(len(frame))
	got := int64(0)
	var holes [][2]int64
	next := b.playTS
	end := b.playTS + n
	for _, p := range b.pkts {
		pe := p.ts + int64(len(p.samples))
		if pe <= next {
			continue
		}
		if p.ts >= end {
			break
		}
		if p.ts > next {
			holes = append(holes, [2]int64{next, p.ts})
			next = p.ts
		}
		from := next
		to := min(pe, end)
		copy(frame[from-b.playTS:to-b.playTS], p.samples[from-p.ts:to-p.ts])
		got += to - from
		next = to
	}
	if next < end {
		holes = append(holes, [2]int64{next, end})
	}
	concealed := false
	for _, h := range holes {
		lo, hi := h[0], h[1]
		// Pre-roll before the first packet is silence, not loss.
		if lo < b.startTS {
			pre := min(hi, b.startTS)
			clear(frame[lo-b.playTS : pre-b.playTS])
			lo = pre
		}
		if lo < hi {
			b.concealInto(frame, lo-b.playTS, hi-b.playTS)
			concealed = true
		}
	}
	if concealed {
		b.concealRun++
		if len(b.pkts) > 0 && b.pkts[len(b.pkts)-1].ts >= b.playTS+n {
			b.stats.Concealed++
		} else {
			b.pending++
		}
		b.last = append(b.last[:0], frame...)
		return FrameConcealed
	}
	b.concealRun = 0
	b.last = append(b.last[:0], frame...)
	if got == 0 {
		return FrameSilent
	}
	b.stats.Played++
	return FrameAudio
}

// conceal fills all of frame with concealment and records it as the last frame.
func (b *JitterBuffer) conceal(frame []int16, lo, hi int64) {
	b.concealInto(frame, lo, hi)
	b.concealRun++
	b.last = append(b.last[:0], frame...)
}

// concealGain fades repeated frames: a repeat sounds natural for a frame or
// two, then turns into a buzz, so after 100 ms we fall silent.
var concealGain = [...]float64{1, 0.8, 0.6, 0.4, 0.2}

// concealInto synthesises frame[lo:hi] from the previous frame.
func (b *JitterBuffer) concealInto(frame []int16, lo, hi int64) {
	if len(b.last) == 0 || b.concealRun >= len(concealGain) {
		clear(frame[lo:hi])
		return
	}
	g := concealGain[b.concealRun]
	for i := lo; i < hi; i++ {
		frame[i] = int16(float64(b.last[int(i)%len(b.last)]) * g)
	}
}

// consume releases packets that end before playTS+n.
func (b *JitterBuffer) consume(n int64) {
	end := b.playTS + n
	k := 0
	for k < len(b.pkts) && b.pkts[k].ts+int64(len(b.pkts[k].samples)) <= end {
		b.free = append(b.free, b.pkts[k].samples[:0])
		k++
	}
	if k > 0 {
		b.pkts = slices.Delete(b.pkts, 0, k)
	}
}

// Len returns how many packets are waiting.
func (b *JitterBuffer) Len() int { return len(b.pkts) }

// Stats returns the counters and current delays.
func (b *JitterBuffer) Stats() JitterStats { return b.stats }

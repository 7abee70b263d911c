package media

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// jbSim drives a JitterBuffer the way a Stream does: a sender emitting one
// packet per 20 ms, a network that delays (or loses, or duplicates) each
// packet, and a playout clock calling Pop every 20 ms. Each packet's samples
// all carry its frame number+1, so the output shows exactly which packet
// played where (0 is silence or concealment of silence).
type jbSim struct {
	t      *testing.T
	jb     *JitterBuffer
	t0     time.Time
	seq0   uint16
	ts0    uint32
	events []jbEvent
}

type jbEvent struct {
	at    time.Time
	frame int // packet index; -1 for a Pop
}

func newJBSim(t *testing.T, cfg JitterConfig, seq0 uint16, ts0 uint32) *jbSim {
	return &jbSim{t: t, jb: NewJitterBuffer(cfg), t0: time.Unix(1000, 0), seq0: seq0, ts0: ts0}
}

// send schedules packet i (sent at i×20 ms) to arrive after delay.
func (s *jbSim) send(i int, delay time.Duration) {
	s.events = append(s.events, jbEvent{at: s.t0.Add(time.Duration(i)*FrameDuration + delay), frame: i})
}

// run schedules pops from popStart every 20 ms for n pops, runs everything
// in time order and returns the frame number heard in each Pop (the first
// sample's marker, -1 for silence) and the statuses.
func (s *jbSim) run(popStart time.Duration, n int) ([]int, []FrameStatus) {
	return s.runWatch(popStart, n, nil)
}

// runWatch is run with a callback after each Pop (k counts Pops).
func (s *jbSim) runWatch(popStart time.Duration, n int, after func(k int)) ([]int, []FrameStatus) {
	for k := 0; k < n; k++ {
		s.events = append(s.events, jbEvent{at: s.t0.Add(popStart + time.Duration(k)*FrameDuration), frame: -1})
	}
	slices.SortStableFunc(s.events, func(a, b jbEvent) int { return a.at.Compare(b.at) })
	var heard []int
	var st []FrameStatus
	frame := make([]int16, FrameSamples)
	pkt := make([]int16, FrameSamples)
	for _, e := range s.events {
		if e.frame >= 0 {
			for j := range pkt {
				pkt[j] = int16(e.frame + 1)
			}
			s.jb.Push(s.seq0+uint16(e.frame), s.ts0+uint32(e.frame*FrameSamples), pkt, e.at)
			continue
		}
		status := s.jb.Pop(frame, e.at)
		st = append(st, status)
		if status == FrameAudio {
			for j := range frame {
				if frame[j] != frame[0] {
					s.t.Fatalf("pop %d mixes packets: %v", len(heard), frame)
				}
			}
			heard = append(heard, int(frame[0])-1)
		} else {
			heard = append(heard, -1)
		}
		if after != nil {
			after(len(st) - 1)
		}
	}
	s.events = nil
	return heard, st
}

// fixedDelay pins the target at 60 ms so the ordering tests are not
// disturbed by adaptation, which has its own test.
var fixedDelay = JitterConfig{InitialDelay: 60 * time.Millisecond, MinDelay: 60 * time.Millisecond}

func played(heard []int) []int {
	var out []int
	for _, h := range heard {
		if h >= 0 {
			out = append(out, h)
		}
	}
	return out
}

func seqRange(a, b int) []int {
	var out []int
	for i := a; i < b; i++ {
		out = append(out, i)
	}
	return out
}

func TestJitterBufferPlaysInOrderAfterInitialDelay(t *testing.T) {
	s := newJBSim(t, fixedDelay, 100, 5000)
	for i := 0; i < 50; i++ {
		s.send(i, 10*time.Millisecond)
	}
	heard, _ := s.run(3*time.Millisecond, 60)
	got := played(heard)
	if !slices.Equal(got, seqRange(0, 50)) {
		t.Fatalf("played %v, want 0..49 in order", got)
	}
	// Packet 0 arrives at 10 ms; with the 60 ms initial target it must play
	// at the first pop at or after 70 ms: pop index 4 (at 83 ms).
	first := slices.Index(heard, 0)
	if first < 3 || first > 4 {
		t.Errorf("first audio at pop %d (%v); want about 60 ms after arrival", first, heard[:8])
	}
	st := s.jb.Stats()
	if st.Concealed != 0 || st.Late != 0 || st.Played != 50 {
		t.Errorf("stats %+v; want 50 played, nothing concealed or late", st)
	}
}

func TestJitterBufferReordersPackets(t *testing.T) {
	s := newJBSim(t, fixedDelay, 0, 0)
	// Every pair swapped: packet 2k+1 overtakes 2k by 15 ms.
	for i := 0; i < 40; i++ {
		d := 10 * time.Millisecond
		if i%2 == 0 {
			d += 25 * time.Millisecond
		}
		s.send(i, d)
	}
	heard, _ := s.run(0, 50)
	if got := played(heard); !slices.Equal(got, seqRange(0, 40)) {
		t.Fatalf("played %v, want 0..39 in order", got)
	}
	if st := s.jb.Stats(); st.Late != 0 || st.Concealed != 0 {
		t.Errorf("stats %+v; want no late or concealed frames", st)
	}
}

func TestJitterBufferConcealsLoss(t *testing.T) {
	s := newJBSim(t, fixedDelay, 65530, 0)
	lost := map[int]bool{10: true, 20: true, 21: true, 22: true}
	for i := 0; i < 40; i++ {
		if !lost[i] {
			s.send(i, 5*time.Millisecond)
		}
	}
	heard, st := s.run(0, 50)
	got := played(heard)
	var want []int
	for i := 0; i < 40; i++ {
		if !lost[i] {
			want = append(want, i)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("played %v, want %v", got, want)
	}
	// Each lost frame is replaced by exactly one concealed frame at its place.
	i10 := slices.Index(heard, 9) + 1
	if st[i10] != FrameConcealed || heard[i10+1] != 11 {
		t.Errorf("around loss of 10: heard %v status %v", heard[i10-1:i10+2], st[i10-1:i10+2])
	}
	js := s.jb.Stats()
	if js.Concealed != 4 {
		t.Errorf("concealed %d frames, want 4 (one per lost packet)", js.Concealed)
	}
}

func TestJitterBufferConcealmentRepeatsAndFades(t *testing.T) {
	jb := NewJitterBuffer(JitterConfig{InitialDelay: 20 * time.Millisecond})
	t0 := time.Unix(0, 0)
	tone := make([]int16, FrameSamples)
	NewToneSource(400, 0.5).ReadFrame(tone)
	frame := make([]int16, FrameSamples)
	jb.Push(1, 0, tone, t0)
	// One packet then nothing: it plays, then is repeated with a fade.
	var levels []float64
	for k := 0; k < 10; k++ {
		st := jb.Pop(frame, t0.Add(time.Duration(k)*FrameDuration+20*time.Millisecond))
		if k > 0 && st == FrameAudio {
			t.Fatalf("pop %d: status audio after the only packet", k)
		}
		levels = append(levels, rms(frame))
	}
	if levels[0] < 1000 {
		t.Fatalf("first frame level %.0f: packet not played", levels[0])
	}
	for k := 1; k < 5; k++ {
		if levels[k] > levels[k-1]+1 || levels[k] == 0 {
			t.Errorf("concealment level %d = %.0f after %.0f: want a non-zero fade", k, levels[k], levels[k-1])
		}
	}
	if levels[6] != 0 {
		t.Errorf("after 100 ms of loss the output should be silent, level %.0f", levels[6])
	}
}

func TestJitterBufferDiscardsLatePackets(t *testing.T) {
	s := newJBSim(t, JitterConfig{InitialDelay: 40 * time.Millisecond, Window: 10000}, 0, 0)
	for i := 0; i < 40; i++ {
		d := 5 * time.Millisecond
		if i == 15 {
			d = 300 * time.Millisecond // far behind its playout time
		}
		s.send(i, d)
	}
	heard, _ := s.run(0, 50)
	if slices.Contains(heard, 15) {
		t.Fatalf("late packet 15 was played: %v", heard)
	}
	if st := s.jb.Stats(); st.Late != 1 {
		t.Fatalf("late = %d, want 1 (%+v)", st.Late, st)
	}
}

func TestJitterBufferDropsDuplicates(t *testing.T) {
	s := newJBSim(t, fixedDelay, 0xfff0, 0xffffff00)
	for i := 0; i < 40; i++ {
		s.send(i, 5*time.Millisecond)
		if i%3 == 0 {
			s.send(i, 12*time.Millisecond)
		}
	}
	heard, _ := s.run(0, 50)
	if got := played(heard); !slices.Equal(got, seqRange(0, 40)) {
		t.Fatalf("played %v, want each of 0..39 once", got)
	}
	if st := s.jb.Stats(); st.Duplicates != 14 {
		t.Fatalf("duplicates = %d, want 14", st.Duplicates)
	}
}

func TestJitterBufferSurvivesWraparound(t *testing.T) {
	// Start just below both wrap points: seq wraps after 5 packets, the
	// timestamp after 3.
	s := newJBSim(t, fixedDelay, 65531, uint32(0xffffffff-3*FrameSamples+1))
	for i := 0; i < 30; i++ {
		d := 5 * time.Millisecond
		if i == 4 || i == 2 {
			d = 30 * time.Millisecond // reordered across the wrap
		}
		s.send(i, d)
	}
	heard, _ := s.run(0, 40)
	if got := played(heard); !slices.Equal(got, seqRange(0, 30)) {
		t.Fatalf("played %v, want 0..29", got)
	}
	if st := s.jb.Stats(); st.Late+st.Duplicates+st.Resyncs+st.Concealed != 0 {
		t.Fatalf("wraparound caused discards: %+v", st)
	}
}

func TestJitterBufferResyncsOnTimestampJump(t *testing.T) {
	jb := NewJitterBuffer(JitterConfig{})
	t0 := time.Unix(0, 0)
	pkt := make([]int16, FrameSamples)
	frame := make([]int16, FrameSamples)
	for i := 0; i < 10; i++ {
		jb.Push(uint16(i), uint32(i*FrameSamples), pkt, t0.Add(time.Duration(i)*FrameDuration))
		jb.Pop(frame, t0.Add(time.Duration(i)*FrameDuration+time.Millisecond))
	}
	if r := jb.Push(10, 1<<30, pkt, t0.Add(200*time.Millisecond)); r != Resync {
		t.Fatalf("push after a 2^30 timestamp jump = %v, want Resync", r)
	}
}

// jittery schedules packets from..from+n with delays drawn uniformly from
// [5 ms, 5 ms+spread).
func jittery(s *jbSim, from, n int, spread time.Duration, rng *rand.Rand) {
	for i := from; i < from+n; i++ {
		s.send(i, 5*time.Millisecond+time.Duration(rng.Int64N(int64(spread))))
	}
}

func TestJitterBufferAdaptsToJitter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newJBSim(t, JitterConfig{}, 0, 0)
	// 10 s calm (0–4 ms spread), 20 s rough (0–100 ms), 20 s calm again.
	jittery(s, 0, 500, 4*time.Millisecond, rng)
	jittery(s, 500, 1000, 100*time.Millisecond, rng)
	jittery(s, 1500, 1000, 4*time.Millisecond, rng)

	type sample struct {
		target, delay time.Duration
		late          uint64
	}
	at := map[int]sample{}
	s.runWatch(7*time.Millisecond, 2510, func(k int) {
		st := s.jb.Stats()
		at[k] = sample{st.TargetDelay, st.Delay, st.Late}
	})
	calm, rough, settled, calmAgain := at[499], at[1000], at[1500], at[2500]
	t.Logf("calm %+v rough %+v end-of-rough %+v calm-again %+v", calm, rough, settled, calmAgain)
	if calm.target > 30*time.Millisecond {
		t.Errorf("calm target %v, want the 20 ms floor region", calm.target)
	}
	if rough.target < 90*time.Millisecond || rough.target > 120*time.Millisecond {
		t.Errorf("target under 0–100 ms jitter = %v, want about the 95th percentile (≈95 ms)", rough.target)
	}
	if d := rough.delay - rough.target; d < -20*time.Millisecond || d > 25*time.Millisecond {
		t.Errorf("delay %v does not follow target %v", rough.delay, rough.target)
	}
	// Once adapted, lateness must be rare: at most ~5% plus the adaptation transient.
	if lateInRough := settled.late - at[1100].late; lateInRough > 40 {
		t.Errorf("%d late packets in the last 400 rough packets, want ≤ 40 (≈5%%)", lateInRough)
	}
	if calmAgain.target > 30*time.Millisecond || calmAgain.delay >= 60*time.Millisecond {
		t.Errorf("after calm returns target %v delay %v, want back near 20 ms", calmAgain.target, calmAgain.delay)
	}
	st := s.jb.Stats()
	if st.Inserted == 0 || st.Dropped == 0 {
		t.Errorf("no adaptation happened: %+v", st)
	}
}

func TestJitterBufferRestartsAfterPause(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tsFrozen  bool
		pauseFrms int
	}{
		{"timestamps ran on during a 1 s pause", false, 50},
		{"timestamps stood still during a 1 s pause", true, 50},
		{"timestamps stood still during a 5 s hold", true, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newJBSim(t, fixedDelay, 0, 0)
			// 50 packets, a pause, 50 more. With frozen timestamps the second
			// burst continues the media timeline where the first stopped.
			for i := 0; i < 100; i++ {
				sendAt := i
				if i >= 50 {
					sendAt = i + tc.pauseFrms
				}
				ev := jbEvent{at: s.t0.Add(time.Duration(sendAt)*FrameDuration + 5*time.Millisecond), frame: i}
				if !tc.tsFrozen && i >= 50 {
					// Media time ran on: encode it by shifting the frame index.
					ev.frame = i + tc.pauseFrms
				}
				s.events = append(s.events, ev)
			}
			heard, _ := s.run(0, 100+tc.pauseFrms+20)
			got := played(heard)
			if len(got) != 100 {
				t.Fatalf("played %d of 100 frames: %v", len(got), got)
			}
			if st := s.jb.Stats(); st.Late != 0 || st.Concealed != 0 {
				t.Fatalf("a pause caused late or concealed frames: %+v", st)
			}
		})
	}
}

func TestJitterBufferIgnoresStarvedPlayoutBursts(t *testing.T) {
	// The playout goroutine is starved for 60–200 ms every half second and
	// then pops the missed frames in a burst, as Stream's pacer does. The
	// network is clean. Nothing may be dropped, inserted, concealed or late:
	// a late burst of Pops is not a reason to change the delay.
	s := newJBSim(t, JitterConfig{}, 0, 0)
	for i := 0; i < 500; i++ {
		s.send(i, 2*time.Millisecond)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	var stallEnd time.Duration
	var pops []time.Duration
	for k := 0; k < 510; k++ {
		due := time.Duration(k)*FrameDuration + 7*time.Millisecond
		if k%25 == 10 {
			stallEnd = due + time.Duration(60+rng.IntN(140))*time.Millisecond
		}
		pops = append(pops, max(due, stallEnd))
	}
	for _, at := range pops {
		s.events = append(s.events, jbEvent{at: s.t0.Add(at), frame: -1})
	}
	heard, _ := s.run(0, 0)
	got := played(heard)
	st := s.jb.Stats()
	t.Logf("stats %+v", st)
	// Only the delay reduction from the initial 60 ms towards the 20 ms
	// floor may drop frames (at most two).
	if st.Inserted != 0 || st.Concealed != 0 || st.Late != 0 || st.Dropped > 2 {
		t.Fatalf("starved playout caused adjustments: %+v", st)
	}
	if len(got) < 498 {
		t.Fatalf("played %d of 500", len(got))
	}
}

func TestJitterBufferVeryLatePacketIsNotAResync(t *testing.T) {
	s := newJBSim(t, fixedDelay, 0, 0)
	for i := 0; i < 200; i++ {
		d := 5 * time.Millisecond
		if i == 20 {
			d = 3 * time.Second // stuck in a queue somewhere
		}
		s.send(i, d)
	}
	heard, _ := s.run(0, 210)
	st := s.jb.Stats()
	if st.Resyncs != 0 || st.Late != 1 || len(played(heard)) != 199 {
		t.Fatalf("a 3 s late packet: %+v, %d played; want 1 late, no resync, 199 played", st, len(played(heard)))
	}
}

func TestJitterBufferHandlesOtherPacketSizes(t *testing.T) {
	for _, ptime := range []int{10, 30, 60} {
		n := ptime * SampleRate / 1000
		jb := NewJitterBuffer(fixedDelay)
		t0 := time.Unix(0, 0)
		// The signal is a counter, so the output must continue it exactly.
		next := int16(0)
		var out []int16
		frame := make([]int16, FrameSamples)
		pkt := make([]int16, n)
		pkts := 0
		for ms := 0; ms < 2000; ms++ {
			if ms%ptime == 0 {
				for i := range pkt {
					pkt[i] = next
					next++
				}
				jb.Push(uint16(pkts), uint32(pkts*n), pkt, t0.Add(time.Duration(ms+ptime+2)*time.Millisecond))
				pkts++
			}
			if ms%20 == 5 {
				if jb.Pop(frame, t0.Add(time.Duration(ms)*time.Millisecond)) == FrameAudio {
					out = append(out, frame...)
				}
			}
		}
		if len(out) < 1500*SampleRate/1000 {
			t.Fatalf("ptime %d: only %d samples played", ptime, len(out))
		}
		for i := 1; i < len(out); i++ {
			if out[i] != out[i-1]+1 {
				t.Fatalf("ptime %d: discontinuity at %d: %d after %d", ptime, i, out[i], out[i-1])
			}
		}
		if st := jb.Stats(); st.Concealed != 0 || st.Late != 0 {
			t.Fatalf("ptime %d: %+v", ptime, st)
		}
	}
}

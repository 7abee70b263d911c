package media

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/punchline/punchline/media/mediatest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listenUDP opens a loopback UDP socket on a free port, closed at test end.
func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newStream(t testing.TB, cfg Config) *Stream {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls cond every 10 ms until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recordFor waits until rec holds d of audio.
func recordFor(t testing.TB, rec *Recording, d time.Duration) []int16 {
	t.Helper()
	want := int(durToSamples(d))
	waitFor(t, d+5*time.Second, "recording", func() bool { return len(rec.Samples()) >= want })
	return rec.Samples()
}

// recordAfter returns the next d of audio rec records from now on, skipping
// the first 100 ms (the jitter buffer's delay before new audio plays).
func recordAfter(t testing.TB, rec *Recording, d time.Duration) []int16 {
	t.Helper()
	from := len(rec.Samples()) + int(durToSamples(100*time.Millisecond))
	want := from + int(durToSamples(d))
	waitFor(t, d+5*time.Second, "recording", func() bool { return len(rec.Samples()) >= want })
	return rec.Samples()[from:want]
}

func TestStreamsExchangeTonesOverUDP(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	var recA, recB Recording
	alice := newStream(t, Config{
		PacketConn: ca, RemoteAddr: cb.LocalAddr(),
		Source: NewToneSource(440, 0), Sink: &recA, RTCPInterval: 100 * time.Millisecond,
	})
	bob := newStream(t, Config{
		PacketConn: cb, RemoteAddr: ca.LocalAddr(), Codec: PCMA,
		Source: NewToneSource(1000, 0), Sink: &recB, RTCPInterval: 100 * time.Millisecond,
	})
	select {
	case <-bob.FirstPacket():
	case <-time.After(5 * time.Second):
		t.Fatal("bob received no RTP")
	}
	// Wait for traffic rather than wall time: on a starved test machine
	// 1.5 s may carry far fewer than 75 packets.
	waitFor(t, 20*time.Second, "60 packets each way", func() bool {
		return alice.Stats().PacketsReceived >= 60 && bob.Stats().PacketsReceived >= 60
	})
	gotB := recordFor(t, &recB, time.Second)
	gotA := recordFor(t, &recA, time.Second)
	freqs := []float64{440, 1000}
	if got := DetectTones(gotB, freqs, 0); !slices.Equal(got, []float64{440}) {
		t.Errorf("bob heard %v Hz, want [440] (levels %.3f %.3f)", got, ToneLevel(gotB, 440), ToneLevel(gotB, 1000))
	}
	if got := DetectTones(gotA, freqs, 0); !slices.Equal(got, []float64{1000}) {
		t.Errorf("alice heard %v Hz, want [1000] (PCMA from bob)", got)
	}
	waitFor(t, 3*time.Second, "RTT from RTCP", func() bool { return alice.Stats().HaveRTT && bob.Stats().HaveRTT })
	for name, st := range map[string]Stats{"alice": alice.Stats(), "bob": bob.Stats()} {
		t.Logf("%s: %+v", name, st)
		if st.PacketsSent < 60 || st.PacketsReceived < 60 || st.BytesSent != st.PacketsSent*172 {
			t.Errorf("%s: too little traffic: %+v", name, st)
		}
		// Loopback loses nothing; a starved test machine may make a packet
		// or two miss its playout time, but not more.
		if st.LossFraction != 0 || st.LateDiscards > st.PacketsReceived/20 {
			t.Errorf("%s: loss %.3f late %d on loopback", name, st.LossFraction, st.LateDiscards)
		}
		if st.RTT > 100*time.Millisecond {
			t.Errorf("%s: RTT %v on loopback", name, st.RTT)
		}
		// The MOS of a call that went cleanly is the E-model's best for
		// G.711 minus a little delay. (Under heavy load the test machine
		// itself can delay packets past their playout time.)
		if st.LateDiscards == 0 && st.ConcealedFrames == 0 {
			if st.MOS < 4.3 {
				t.Errorf("%s: MOS %.2f on a clean loopback call, want ≥ 4.3", name, st.MOS)
			}
		} else {
			t.Logf("%s: the machine was too busy for a clean call; MOS %.2f not checked", name, st.MOS)
		}
		if !st.Latched || st.RTCPReceived == 0 {
			t.Errorf("%s: latched=%v rtcp received %d", name, st.Latched, st.RTCPReceived)
		}
	}
}

func TestStreamOverConnectedConnWithLossAndReorder(t *testing.T) {
	speech := mustReadFixture(t, "speech-8k.wav")
	ca := listenUDP(t)
	// Bob uses a connected socket, as an ICE conn would be.
	bconn, err := net.DialUDP("udp4", nil, ca.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bconn.Close() })
	lossy := mediatest.NewPacketConn(ca, mediatest.Impairment{Drop: 0.05, Reorder: 0.1, Dup: 0.02, Seed: 7})
	var rec Recording
	alice := newStream(t, Config{PacketConn: lossy, RemoteAddr: bconn.LocalAddr(), Source: NewSamplesSource(speech, true),
		RTCPInterval: 100 * time.Millisecond})
	bob := newStream(t, Config{Conn: bconn, Sink: &rec, RTCPInterval: 100 * time.Millisecond})

	got := recordFor(t, &rec, 3*time.Second)
	m := Match(got, speech)
	st := bob.Stats()
	t.Logf("match %+v; bob %+v; induced %+v", m, st, lossy.Counts())
	if m.Score < 0.8 {
		t.Errorf("bob's recording matches the sent speech with score %.2f, want ≥ 0.8", m.Score)
	}
	induced := float64(lossy.Counts().Dropped) / float64(lossy.Counts().Sent)
	if st.LossFraction < induced-0.03 || st.LossFraction > induced+0.03 {
		t.Errorf("loss fraction %.3f, want about the induced %.3f", st.LossFraction, induced)
	}
	if st.Duplicates == 0 || st.ConcealedFrames == 0 {
		t.Errorf("duplicates %d concealed %d: the mangling did not show", st.Duplicates, st.ConcealedFrames)
	}
	if st.MOS >= 4.3 || st.MOS < 2 {
		t.Errorf("MOS %.2f with ~5%% loss, want below a clean call's 4.4 (≈3.9 expected)", st.MOS)
	}
	waitFor(t, 3*time.Second, "alice learns bob's loss from RTCP", func() bool { return alice.Stats().RemoteLossFraction > 0 })
}

func TestSymmetricRTPLatchesOntoRealSource(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	// Bob's SDP says alice is at a port nobody sends from (a NAT rewrote it).
	sdpAddr := listenUDP(t)
	var recA Recording
	alice := newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: NewToneSource(600, 0), Sink: &recA})
	bob := newStream(t, Config{PacketConn: cb, RemoteAddr: sdpAddr.LocalAddr(), Source: NewToneSource(900, 0)})
	waitFor(t, 3*time.Second, "bob latching onto alice", func() bool {
		return sameAddr(bob.RemoteAddr(), ca.LocalAddr()) && bob.Stats().Latched
	})
	if l := ToneLevel(recordAfter(t, &recA, 500*time.Millisecond), 900); l < 0.5 {
		t.Errorf("alice does not hear bob after latching (900 Hz level %.2f)", l)
	}
	_ = alice

	// A stranger with its own SSRC cannot steal the latch while alice talks.
	stranger := listenUDP(t)
	for i := 0; i < 10; i++ {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: 0xbad}, Payload: make([]byte, 160)}
		b, _ := p.Marshal()
		stranger.WriteTo(b, cb.LocalAddr())
	}
	waitFor(t, 2*time.Second, "stranger's packets discarded", func() bool { return bob.Stats().Discarded >= 10 })
	if !sameAddr(bob.RemoteAddr(), ca.LocalAddr()) {
		t.Fatalf("latch moved to %v after packets from a stranger", bob.RemoteAddr())
	}
	if n := bob.Stats().Sources; n != 1 {
		t.Errorf("bob tracks %d sources, want only alice's", n)
	}
}

func TestSymmetricRTPRelatchesOnNATRebinding(t *testing.T) {
	ca, cb, ca2 := listenUDP(t), listenUDP(t), listenUDP(t)
	bob := newStream(t, Config{PacketConn: cb, RemoteAddr: ca.LocalAddr(), Source: NewToneSource(900, 0)})
	alice := newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), SSRC: 0x1234, Source: NewToneSource(600, 0)})
	waitFor(t, 3*time.Second, "bob receiving", func() bool { return bob.Stats().PacketsReceived > 5 })
	alice.Close()
	// Same SSRC from a new port: the peer's NAT gave it a new mapping.
	newStream(t, Config{PacketConn: ca2, RemoteAddr: cb.LocalAddr(), SSRC: 0x1234, Source: NewToneSource(600, 0)})
	waitFor(t, 3*time.Second, "bob relatching to the new port", func() bool { return sameAddr(bob.RemoteAddr(), ca2.LocalAddr()) })
}

func TestStreamSendsAndReceivesDTMF(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	var mu sync.Mutex
	var got []rune
	alice := newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: NewToneSource(440, 0), TelephoneEventPT: 96})
	newStream(t, Config{PacketConn: cb, RemoteAddr: ca.LocalAddr(), TelephoneEventPT: 96, OnDTMF: func(d DTMF) {
		mu.Lock()
		got = append(got, d.Digit)
		mu.Unlock()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := alice.SendDTMF(ctx, "1#9A", 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "four digits", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 4 })
	mu.Lock()
	defer mu.Unlock()
	if string(got) != "1#9A" {
		t.Fatalf("received digits %q, want \"1#9A\" once each", string(got))
	}
	if err := alice.SendDTMF(ctx, "x", 0); err == nil {
		t.Error("SendDTMF accepted 'x'")
	}
}

func TestFanoutAndMixerConference(t *testing.T) {
	// Three participants in a mesh: each sends its tone to the other two
	// through a Fanout and mixes the two streams it receives.
	tones := []float64{500, 800, 1300}
	n := len(tones)
	conns := make([][]*net.UDPConn, n) // conns[i][j]: i's socket towards j
	for i := range conns {
		conns[i] = make([]*net.UDPConn, n)
		for j := range conns[i] {
			if i != j {
				conns[i][j] = listenUDP(t)
			}
		}
	}
	recs := make([]*Recording, n)
	for i := 0; i < n; i++ {
		fan := NewFanout(FanoutConfig{Source: NewToneSource(tones[i], 0.2)})
		t.Cleanup(func() { fan.Close() })
		var mix Mixer
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			codec := PCMU
			if (i+j)%2 == 1 {
				codec = PCMA // mixed codecs: the fanout encodes each once
			}
			s := newStream(t, Config{PacketConn: conns[i][j], RemoteAddr: conns[j][i].LocalAddr(), Codec: codec})
			fan.Add(s)
			mix.Add(s)
		}
		if fan.Len() != n-1 || mix.Len() != n-1 {
			t.Fatalf("fanout %d mixer %d inputs", fan.Len(), mix.Len())
		}
		recs[i] = &Recording{}
		p := NewPlayer(&mix, recs[i], nil)
		t.Cleanup(func() { p.Close() })
	}
	for i := 0; i < n; i++ {
		got := recordFor(t, recs[i], 1500*time.Millisecond)
		got = got[len(got)/2:]
		var want []float64
		for j, f := range tones {
			if j != i {
				want = append(want, f)
			}
		}
		if det := DetectTones(got, tones, 0); !slices.Equal(det, want) {
			t.Errorf("participant %d heard %v, want %v", i, det, want)
		}
	}
}

func TestStreamCloseIsIdempotentAndStopsGoroutines(t *testing.T) {
	c := listenUDP(t)
	s, err := New(Config{PacketConn: c, RemoteAddr: c.LocalAddr(), Source: NewToneSource(440, 0), Sink: &Recording{}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the stream running", func() bool { return s.Stats().PacketsReceived > 2 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := listenUDP(t)
	for name, cfg := range map[string]Config{
		"no conn":                {},
		"both conns":             {PacketConn: c, Conn: &net.UDPConn{}},
		"unknown codec":          {PacketConn: c, Codec: 18},
		"event PT in RTCP range": {PacketConn: c, TelephoneEventPT: 72},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func rtpBytes(pt uint8, seq uint16, ts, ssrc uint32, payload []byte) []byte {
	b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}).Marshal()
	return b
}

func TestComfortNoiseIsNotCountedAsLoss(t *testing.T) {
	c := listenUDP(t)
	s := newStream(t, Config{PacketConn: c, RemoteAddr: c.LocalAddr(), RTCPInterval: -1})
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	s.SetRemote(from)
	now := time.Now()
	audio := make([]byte, 160)
	for i := 0; i < 20; i++ {
		pt := uint8(0)
		payload := audio
		if i >= 5 && i < 10 {
			pt, payload = 13, []byte{40} // RFC 3389 comfort noise during a pause
		}
		s.handlePacket(rtpBytes(pt, uint16(i), uint32(i*160), 77, payload), from, now.Add(time.Duration(i)*FrameDuration))
	}
	// An unknown payload type from an unknown SSRC creates nothing.
	s.handlePacket(rtpBytes(13, 1, 1, 78, []byte{1}), from, now)
	st := s.Stats()
	if st.PacketsLost != 0 || st.LossFraction != 0 || st.PacketsReceived != 20 || st.Sources != 1 || st.Discarded != 1 {
		t.Fatalf("stats %+v: want 20 received, no loss, one source, one discard", st)
	}
}

func TestConnCanBeReusedAfterClose(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	first, err := New(Config{PacketConn: cb, RemoteAddr: ca.LocalAddr()})
	if err != nil {
		t.Fatal(err)
	}
	first.Close() // leaves a read deadline in the past on cb
	second := newStream(t, Config{PacketConn: cb, RemoteAddr: ca.LocalAddr()})
	newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: NewToneSource(440, 0)})
	select {
	case <-second.FirstPacket():
	case <-time.After(3 * time.Second):
		t.Fatal("a Stream on a reused conn receives nothing")
	}
}

func TestByeIsReported(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	alice, err := New(Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: NewToneSource(440, 0)})
	if err != nil {
		t.Fatal(err)
	}
	bob := newStream(t, Config{PacketConn: cb, RemoteAddr: ca.LocalAddr()})
	waitFor(t, 3*time.Second, "audio at bob", func() bool { return bob.Stats().PacketsReceived > 3 })
	if bob.Stats().ByeReceived {
		t.Fatal("bye before alice left")
	}
	alice.Close()
	waitFor(t, 3*time.Second, "BYE at bob", func() bool { return bob.Stats().ByeReceived })
}

func TestStreamWithoutRemoteLatchesOntoFirstSource(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	var rec Recording
	// Bob knows nothing of alice's address (an SDP with c=0.0.0.0, say).
	bob := newStream(t, Config{PacketConn: cb, Source: NewToneSource(700, 0), RTCPInterval: -1})
	if err := bob.SendFrame(make([]int16, FrameSamples)); !errors.Is(err, ErrNoRemote) {
		t.Fatalf("send with no remote: %v, want ErrNoRemote", err)
	}
	newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: NewToneSource(440, 0), Sink: &rec})
	waitFor(t, 3*time.Second, "bob latching", func() bool { return sameAddr(bob.RemoteAddr(), ca.LocalAddr()) })
	if l := ToneLevel(recordAfter(t, &rec, 500*time.Millisecond), 700); l < 0.5 {
		t.Errorf("alice hears bob's 700 Hz at level %.2f after he latched", l)
	}
}

func TestMixerAddRemoveAndPlayer(t *testing.T) {
	var m Mixer
	a := constPlayout(synthTone(500, 0.2, FrameSamples))
	b := constPlayout(synthTone(900, 0.2, FrameSamples))
	m.Remove(a) // uncomparable and absent: ignored, no panic
	pa, pb := &a, &b
	m.Add(pa)
	m.Add(pb)
	frame := make([]int16, FrameSamples)
	if st := m.PopFrame(frame); st != FrameAudio {
		t.Fatalf("status %v", st)
	}
	both := append([]int16(nil), frame...)
	m.Remove(pa)
	m.PopFrame(frame)
	if m.Len() != 1 || !equalSamples(frame, b) {
		t.Fatal("after Remove the mix is not just the other input")
	}
	want := make([]int16, FrameSamples)
	Mix(want, a, b)
	if !equalSamples(both, want) {
		t.Fatal("mixer output differs from Mix")
	}
	var rec Recording
	p := NewPlayer(&m, &rec, nil)
	waitFor(t, 2*time.Second, "player output", func() bool { return len(rec.Samples()) >= 5*FrameSamples })
	p.Close()
	p.Close()
	n := len(rec.Samples())
	if n%FrameSamples != 0 {
		t.Fatalf("player wrote %d samples, not whole frames", n)
	}
}

func TestWAVFileInWAVFileOut(t *testing.T) {
	// What `punchline phone --play f.wav` and `--record g.wav` do.
	src, err := NewWAVSource(filepath.Join(fixtureDir, "speech-8k.wav"), false)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "heard.wav")
	rec, err := CreateWAVRecorder(out)
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := listenUDP(t), listenUDP(t)
	alice := newStream(t, Config{PacketConn: ca, RemoteAddr: cb.LocalAddr(), Source: src})
	bob := newStream(t, Config{PacketConn: cb, RemoteAddr: ca.LocalAddr(), Sink: rec})
	select {
	case <-alice.SourceDone():
	case <-time.After(10 * time.Second):
		t.Fatal("the 2 s WAV never finished playing")
	}
	// Let the tail play out of bob's jitter buffer: the 2 s are 100 frames.
	waitFor(t, 5*time.Second, "the whole file played at bob", func() bool { return bob.Stats().PlayedFrames >= 105 })
	bob.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	heard, err := ReadWAVFile(out)
	if err != nil {
		t.Fatal(err)
	}
	m := Match(heard, mustReadFixture(t, "speech-8k.wav"))
	t.Logf("recorded %.2f s, match %+v", float64(len(heard))/SampleRate, m)
	// A clean loopback call scores ≈1.0; unrelated audio stays under 0.4
	// (see TestMatchToleratesLossAndRejectsOtherAudio). 0.7 leaves room for
	// a test machine so starved that frames come late and are concealed.
	if m.Score < 0.7 || m.Windows < 6 {
		t.Fatalf("bob's recording matches alice's WAV with %+v, want score ≥ 0.7", m)
	}
}

func TestSetRemoteMovesSeparateRTCPAddress(t *testing.T) {
	c := listenUDP(t)
	s := newStream(t, Config{PacketConn: c, RTCPInterval: -1,
		RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000},
		RTCPAddr:   &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4001}})
	s.SetRemote(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5000})
	s.remoteMu.Lock()
	got := s.rtcpRemote.String()
	s.remoteMu.Unlock()
	if got != "127.0.0.2:5001" {
		t.Fatalf("RTCP address after SetRemote = %s, want 127.0.0.2:5001", got)
	}
}

func TestSSRCFloodIsBounded(t *testing.T) {
	c := listenUDP(t)
	s := newStream(t, Config{PacketConn: c, RTCPInterval: -1, DisableLatching: true})
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	now := time.Now()
	for ssrc := uint32(1); ssrc <= 40; ssrc++ {
		s.handlePacket(rtpBytes(0, 1, 160, ssrc, make([]byte, 160)), from, now)
	}
	st := s.Stats()
	if st.Sources != maxSources || st.Discarded != 40-maxSources || st.PacketsReceived != maxSources {
		t.Fatalf("after 40 SSRCs: %d sources, %d discarded; want %d and %d", st.Sources, st.Discarded, maxSources, 40-maxSources)
	}
	// Once they have been quiet a while, a new source may take a slot and
	// the totals keep what the evicted one counted.
	s.handlePacket(rtpBytes(0, 1, 160, 1000, make([]byte, 160)), from, now.Add(6*time.Second))
	st = s.Stats()
	if st.Sources != maxSources || st.PacketsReceived != maxSources+1 || st.Discarded != 40-maxSources {
		t.Fatalf("after eviction: %d sources, %d received, %d discarded; want %d, %d, %d",
			st.Sources, st.PacketsReceived, st.Discarded, maxSources, maxSources+1, 40-maxSources)
	}
}

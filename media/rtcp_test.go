package media

import (
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestRTCPDemuxRFC5761(t *testing.T) {
	for pt := 0; pt < 128; pt++ {
		if pt >= 64 && pt <= 95 {
			continue // not usable with rtcp-mux
		}
		for _, m := range []bool{false, true} {
			b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: uint8(pt), Marker: m}}).Marshal()
			if isRTCP(b) {
				t.Fatalf("RTP PT %d marker %v classified as RTCP", pt, m)
			}
		}
	}
	for _, p := range []rtcp.Packet{
		&rtcp.SenderReport{SSRC: 1},
		&rtcp.ReceiverReport{SSRC: 1},
		rtcp.NewCNAMESourceDescription(1, "x"),
		&rtcp.Goodbye{Sources: []uint32{1}},
	} {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !isRTCP(b) {
			t.Fatalf("%T not classified as RTCP", p)
		}
	}
}

func TestRTTFromLSRAndDLSR(t *testing.T) {
	now := time.Now()
	sentSR := now.Add(-100 * time.Millisecond)
	lsr := ntpMiddle(ntpTime(sentSR))
	dlsr := uint32(30 * time.Millisecond * 65536 / time.Second)
	rtt, ok := rttFromReport(now, lsr, dlsr)
	if !ok || rtt < 69*time.Millisecond || rtt > 71*time.Millisecond {
		t.Fatalf("rtt %v ok %v, want 70 ms", rtt, ok)
	}
	if _, ok := rttFromReport(now, 0, 0); ok {
		t.Error("LSR 0 (no SR received yet) gave an RTT")
	}
	if _, ok := rttFromReport(now, lsr, dlsr+uint32(time.Second*65536/time.Second)); ok {
		t.Error("an impossible (negative) RTT was accepted")
	}
}

func TestReceptionReportLossAndWrap(t *testing.T) {
	src := newRxSource(42, JitterConfig{})
	// 100 packets across the sequence wrap, 10 of them lost.
	start := uint16(65500)
	for i := 0; i < 100; i++ {
		if i%10 == 5 {
			continue
		}
		if !src.updateSeq(start + uint16(i)) {
			t.Fatalf("packet %d rejected", i)
		}
	}
	rr := src.receptionReport(time.Now())
	if rr.TotalLost != 10 || rr.FractionLost != 25 { // 10/100·256 = 25.6
		t.Errorf("lost %d fraction %d/256, want 10 and 25", rr.TotalLost, rr.FractionLost)
	}
	if want := uint32(1<<16 + uint32(uint16(start+99))); rr.LastSequenceNumber != want {
		t.Errorf("extended highest seq %d, want %d (one wrap)", rr.LastSequenceNumber, want)
	}
	// Next interval: no loss, a duplicate and a reordered packet.
	for i := 100; i < 150; i++ {
		src.updateSeq(start + uint16(i))
	}
	src.updateSeq(start + 120)
	rr = src.receptionReport(time.Now())
	if rr.FractionLost != 0 || rr.TotalLost != 9 {
		t.Errorf("second interval: fraction %d total %d, want 0 and 9 (A.3 counts the duplicate)", rr.FractionLost, rr.TotalLost)
	}
	// A wild jump is dropped until the next packet confirms it.
	if src.updateSeq(start + 20000) {
		t.Error("a 20000 jump was accepted at once")
	}
	if !src.updateSeq(start + 20001) {
		t.Error("the confirmed jump was not accepted")
	}
}

func TestJitterEstimateRFC3550(t *testing.T) {
	src := newRxSource(1, JitterConfig{})
	t0 := time.Unix(100, 0)
	// Arrivals alternate 0 and 10 ms late: |D| = 80 timestamp units each
	// time, so J converges to 80 units = 10 ms.
	for i := 0; i < 500; i++ {
		late := time.Duration(i%2) * 10 * time.Millisecond
		src.updateJitter(uint32(i*160), t0.Add(time.Duration(i)*FrameDuration+late))
	}
	if j := src.jitter / 8; j < 9.9 || j > 10.1 {
		t.Fatalf("jitter %.2f ms, want 10", j)
	}
}

// fuzzStream is one Stream shared by the packet fuzzer's iterations.
func fuzzStream(f *testing.F) *Stream {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{PacketConn: c, RemoteAddr: c.LocalAddr(), RTCPInterval: -1, OnDTMF: func(DTMF) {}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close(); c.Close() })
	return s
}

func FuzzStreamPacket(f *testing.F) {
	pcmu, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 9}, Payload: make([]byte, 160)}).Marshal()
	pcma, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: 2, Timestamp: 320, SSRC: 9, Marker: true}, Payload: make([]byte, 80)}).Marshal()
	ev, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 3, Timestamp: 320, SSRC: 9}, Payload: []byte{5, 0x8a, 0, 160}}).Marshal()
	ext, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 4, SSRC: 9, Extension: true, ExtensionProfile: 0xBEDE, CSRC: []uint32{1, 2}}, Payload: []byte{1}}).Marshal()
	sr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.SenderReport{SSRC: 9, NTPTime: ntpTime(time.Now()), Reports: []rtcp.ReceptionReport{{SSRC: 9, LastSenderReport: 5, Delay: 7}}}, rtcp.NewCNAMESourceDescription(9, "peer")})
	bye, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 9}, &rtcp.Goodbye{Sources: []uint32{9}, Reason: "bye"}})
	for _, b := range [][]byte{pcmu, pcma, ev, ext, sr, bye, {0x80}, {0x80, 0xc8, 0, 0}, {}} {
		f.Add(b)
	}
	s := fuzzStream(f)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5004}
	frame := make([]int16, FrameSamples)
	rng := rand.New(rand.NewPCG(1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handlePacket(b, from, time.Now())
		if rng.IntN(4) == 0 {
			s.PopFrame(frame)
		}
		st := s.Stats()
		if st.LossFraction < 0 || st.LossFraction > 1 || st.MOS < 0 || st.MOS > 4.5 {
			t.Fatalf("stats out of range: %+v", st)
		}
		if st.Sources > maxSources {
			t.Fatalf("%d sources tracked", st.Sources)
		}
	})
}

func FuzzJitterBuffer(f *testing.F) {
	f.Add([]byte{0, 1, 1, 20, 0, 1, 1, 20, 1, 0, 0, 20, 0, 3, 3, 5, 0, 255, 255, 100})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		jb := NewJitterBuffer(JitterConfig{})
		now := time.Unix(0, 0)
		seq, ts := uint16(65000), uint32(0xffff0000)
		pkt := make([]int16, FrameSamples)
		frame := make([]int16, FrameSamples)
		for i := 0; i+3 < len(ops); i += 4 {
			// op, seq step (signed), ts step in frames (signed), time step in ms
			seq += uint16(int8(ops[i+1]))
			ts += uint32(int32(int8(ops[i+2])) * int32(FrameSamples))
			now = now.Add(time.Duration(ops[i+3]) * time.Millisecond)
			if ops[i]&1 == 0 {
				n := FrameSamples
				if ops[i]&2 != 0 {
					n = int(ops[i]>>2) + 1 // odd packet sizes
				}
				jb.Push(seq, ts, pkt[:n], now)
			} else if st := jb.Pop(frame, now); st < FrameSilent || st > FrameConcealed {
				t.Fatalf("status %d", st)
			}
			if jb.Len() > 200 {
				t.Fatalf("buffer grew to %d packets", jb.Len())
			}
		}
		st := jb.Stats()
		if st.TargetDelay < 20*time.Millisecond || st.TargetDelay > 200*time.Millisecond {
			t.Fatalf("target %v outside bounds", st.TargetDelay)
		}
	})
}

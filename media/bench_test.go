package media

import (
	"testing"
	"time"
)

// BenchmarkJitterBufferPushPop measures one packet in and one frame out, the
// per-20 ms work of a receiving call, with mild reordering.
func BenchmarkJitterBufferPushPop(b *testing.B) {
	jb := NewJitterBuffer(JitterConfig{})
	pkt := synthTone(440, 0.3, FrameSamples)
	frame := make([]int16, FrameSamples)
	t0 := time.Unix(0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i
		if i%8 == 3 {
			k++ // swap pairs now and then
		} else if i%8 == 4 {
			k--
		}
		at := t0.Add(time.Duration(i)*FrameDuration + time.Duration(i%5)*time.Millisecond)
		jb.Push(uint16(k), uint32(k*FrameSamples), pkt, at)
		jb.Pop(frame, at.Add(time.Millisecond))
	}
}

// BenchmarkMixer mixes 7 peers' frames: one participant's playout in an
// 8-person mesh.
func BenchmarkMixer(b *testing.B) {
	var m Mixer
	for i := 0; i < 7; i++ {
		m.Add(constPlayout(synthTone(float64(300+200*i), 0.1, FrameSamples)))
	}
	frame := make([]int16, FrameSamples)
	b.ReportAllocs()
	b.SetBytes(7 * FrameSamples * 2)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.PopFrame(frame)
	}
}

type constPlayout []int16

func (c constPlayout) PopFrame(f []int16) FrameStatus { copy(f, c); return FrameAudio }

func BenchmarkG711Encode(b *testing.B) {
	frame := synthTone(440, 0.3, FrameSamples)
	for _, c := range []Codec{PCMU, PCMA} {
		b.Run(c.String(), func(b *testing.B) {
			buf := make([]byte, 0, FrameSamples)
			b.ReportAllocs()
			b.SetBytes(FrameSamples * 2)
			for i := 0; i < b.N; i++ {
				buf = c.Encode(buf[:0], frame)
			}
		})
	}
}

func BenchmarkG711Decode(b *testing.B) {
	payload := PCMU.Encode(nil, synthTone(440, 0.3, FrameSamples))
	out := make([]int16, 0, FrameSamples)
	b.ReportAllocs()
	b.SetBytes(FrameSamples)
	for i := 0; i < b.N; i++ {
		out = PCMU.Decode(out[:0], payload)
	}
}

// BenchmarkFanout sends one frame to 7 peers over loopback UDP: the
// sending half of an 8-person mesh, encode once, seven RTP packets.
func BenchmarkFanout(b *testing.B) {
	sink := listenUDP(b)
	f := NewFanout(FanoutConfig{})
	defer f.Close()
	for i := 0; i < 7; i++ {
		s := newStream(b, Config{PacketConn: listenUDP(b), RemoteAddr: sink.LocalAddr(), RTCPInterval: -1})
		f.Add(s)
	}
	frame := synthTone(440, 0.3, FrameSamples)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Send(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch2s(b *testing.B) {
	speech := synthSpeech()
	rec := append(make([]int16, 4000), speech...)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Match(rec, speech)
	}
}

package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// makeWAV builds a WAV file by hand (not with WriteWAV) so the reader is
// tested against the format, not against our own writer.
func makeWAV(tag uint16, channels, rate, bits int, data []byte, extra ...[]byte) []byte {
	var fmtChunk bytes.Buffer
	le := binary.LittleEndian
	binary.Write(&fmtChunk, le, tag)
	binary.Write(&fmtChunk, le, uint16(channels))
	binary.Write(&fmtChunk, le, uint32(rate))
	binary.Write(&fmtChunk, le, uint32(rate*channels*bits/8))
	binary.Write(&fmtChunk, le, uint16(channels*bits/8))
	binary.Write(&fmtChunk, le, uint16(bits))
	if tag == wavFormatExtensible {
		binary.Write(&fmtChunk, le, uint16(22))
		binary.Write(&fmtChunk, le, uint16(bits))
		binary.Write(&fmtChunk, le, uint32(3))
		fmtChunk.Write(wavPCMSubformat)
	}
	var body bytes.Buffer
	body.WriteString("WAVE")
	for _, e := range extra { // extra chunks before fmt
		body.Write(e)
	}
	body.WriteString("fmt ")
	binary.Write(&body, le, uint32(fmtChunk.Len()))
	body.Write(fmtChunk.Bytes())
	body.WriteString("data")
	binary.Write(&body, le, uint32(len(data)))
	body.Write(data)
	var out bytes.Buffer
	out.WriteString("RIFF")
	binary.Write(&out, le, uint32(body.Len()))
	out.Write(body.Bytes())
	return out.Bytes()
}

func pcmBytes(samples ...[]int16) []byte {
	// Interleave the channels.
	var b []byte
	for i := range samples[0] {
		for _, ch := range samples {
			b = binary.LittleEndian.AppendUint16(b, uint16(ch[i]))
		}
	}
	return b
}

func TestWAVRoundTrip(t *testing.T) {
	in := synthTone(440, 0.5, 1234)
	var buf bytes.Buffer
	if err := WriteWAV(&buf, in); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 44+2*len(in) {
		t.Fatalf("file is %d bytes, want 44-byte header + samples", buf.Len())
	}
	out, info, err := ReadWAV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info != (WAVInfo{SampleRate: 8000, Channels: 1, Frames: 1234}) {
		t.Errorf("info %+v", info)
	}
	if !equalSamples(in, out) {
		t.Error("samples changed in a write/read round trip")
	}
}

func equalSamples(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadWAVConvertsStereoAndRates(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     int
		channels int
		ext      bool
	}{
		{"16 kHz mono", 16000, 1, false},
		{"44.1 kHz stereo", 44100, 2, false},
		{"48 kHz stereo extensible", 48000, 2, true},
		{"11.025 kHz mono (upsampled)", 11025, 1, false},
		{"8 kHz stereo", 8000, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.rate // one second
			left := make([]int16, n)
			right := make([]int16, n)
			// 700 Hz in both channels at half level each, and 3.9 kHz
			// (inaudible after resampling to 8 kHz if it aliased well) only
			// when the source rate can carry it.
			for i := range left {
				v := 8000 * sinAt(700, i, tc.rate)
				left[i] = int16(v)
				right[i] = int16(v)
				if tc.rate >= 16000 {
					left[i] += int16(8000 * sinAt(6000, i, tc.rate)) // must be filtered, not aliased to 2 kHz
				}
			}
			chans := [][]int16{left}
			if tc.channels == 2 {
				chans = append(chans, right)
			}
			tag := uint16(wavFormatPCM)
			if tc.ext {
				tag = wavFormatExtensible
			}
			list := append([]byte("LIST\x05\x00\x00\x00hello"), 0) // odd-sized chunk with pad byte
			file := makeWAV(tag, tc.channels, tc.rate, 16, pcmBytes(chans...), list)
			out, info, err := ReadWAV(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if info.SampleRate != tc.rate || info.Channels != tc.channels || info.Frames != n {
				t.Errorf("info %+v", info)
			}
			if len(out) < 7990 || len(out) > 8000 {
				t.Fatalf("%d samples out, want one second at 8 kHz", len(out))
			}
			mid := out[400 : len(out)-400]
			if l := ToneLevel(mid, 700); l < 0.9 {
				t.Errorf("700 Hz carries %.3f of the energy after conversion, want ≥ 0.9", l)
			}
			if l := ToneLevel(mid, 2000); l > 0.01 {
				t.Errorf("6 kHz aliased to 2 kHz: level %.3f", l)
			}
		})
	}
}

func sinAt(hz float64, i, rate int) float64 {
	return math.Sin(2 * 3.141592653589793 * hz * float64(i) / float64(rate))
}

func TestReadWAVRejectsOtherFormats(t *testing.T) {
	data := make([]byte, 64)
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrNotWAV},
		{"not RIFF", []byte("OggS\x00\x02\x00\x00\x00\x00\x00\x00"), ErrNotWAV},
		{"RIFF but AVI", []byte("RIFF\x04\x00\x00\x00AVI "), ErrNotWAV},
		{"8-bit", makeWAV(1, 1, 8000, 8, data), ErrWAVFormat},
		{"24-bit", makeWAV(1, 1, 8000, 24, data), ErrWAVFormat},
		{"float", makeWAV(3, 1, 8000, 32, data), ErrWAVFormat},
		{"mu-law wav", makeWAV(7, 1, 8000, 8, data), ErrWAVFormat},
		{"6 channels", makeWAV(1, 6, 8000, 16, data), ErrWAVFormat},
		{"no data chunk", makeWAV(1, 1, 8000, 16, data)[:36], ErrWAVTruncated},
		{"cut in fmt", makeWAV(1, 1, 8000, 16, data)[:24], ErrWAVTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadWAV(bytes.NewReader(tc.file))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
		})
	}
}

func TestReadWAVTruncatedDataKeepsWhatIsThere(t *testing.T) {
	// A recorder killed mid-call leaves sizes of 0 and a partial last sample.
	file := makeWAV(1, 1, 8000, 16, pcmBytes(synthTone(440, 0.5, 800)))
	binary.LittleEndian.PutUint32(file[40:], 0)
	file = file[:len(file)-1]
	out, _, err := ReadWAV(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 799 {
		t.Fatalf("%d samples, want the 799 complete ones", len(out))
	}
}

func TestWAVRecorderPatchesHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.wav")
	r, err := CreateWAVRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	tone := NewToneSource(440, 0.3)
	var all []int16
	frame := make([]int16, FrameSamples)
	for i := 0; i < 10; i++ {
		tone.ReadFrame(frame)
		all = append(all, frame...)
		if err := r.WriteFrame(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.WriteFrame(frame); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	raw, _ := os.ReadFile(path)
	if got := binary.LittleEndian.Uint32(raw[40:]); got != 3200 {
		t.Fatalf("data size in header %d, want 3200", got)
	}
	got, err := ReadWAVFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSamples(got, all) {
		t.Fatal("recorded samples differ")
	}
}

func TestSamplesSourceLoopsAndEnds(t *testing.T) {
	s := NewSamplesSource([]int16{1, 2, 3}, false)
	frame := make([]int16, 4)
	if err := s.ReadFrame(frame); err != nil || !equalSamples(frame, []int16{1, 2, 3, 0}) {
		t.Fatalf("once: %v %v", frame, err)
	}
	if err := s.ReadFrame(frame); err == nil {
		t.Fatal("no EOF after the end")
	}
	l := NewSamplesSource([]int16{1, 2, 3}, true)
	l.ReadFrame(frame)
	if !equalSamples(frame, []int16{1, 2, 3, 1}) {
		t.Fatalf("loop: %v", frame)
	}
	l.ReadFrame(frame)
	if !equalSamples(frame, []int16{2, 3, 1, 2}) {
		t.Fatalf("loop 2: %v", frame)
	}
}

func FuzzReadWAV(f *testing.F) {
	f.Add(makeWAV(1, 1, 8000, 16, pcmBytes(synthTone(440, 0.5, 100))))
	f.Add(makeWAV(1, 2, 44100, 16, pcmBytes(synthTone(440, 0.5, 100), synthTone(440, 0.5, 100))))
	f.Add(makeWAV(wavFormatExtensible, 2, 48000, 16, pcmBytes(synthTone(440, 0.5, 50), synthTone(440, 0.5, 50))))
	f.Add(makeWAV(3, 1, 8000, 32, make([]byte, 16)))
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEdata\xff\xff\xff\xff"))
	if b, err := os.ReadFile(filepath.Join(fixtureDir, "tone-440-8k.wav")); err == nil {
		f.Add(b[:200])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, info, err := ReadWAV(bytes.NewReader(b))
		if err != nil {
			if out != nil {
				t.Fatal("samples returned with an error")
			}
			return
		}
		if info.Channels != 1 && info.Channels != 2 {
			t.Fatalf("accepted %d channels", info.Channels)
		}
		if info.Frames > len(b) {
			t.Fatalf("%d frames from %d bytes", info.Frames, len(b))
		}
		// The output is 8 kHz: its length follows the rate ratio.
		want := int(float64(info.Frames) * 8000 / float64(info.SampleRate))
		if len(out) < want-1 || len(out) > want+1 {
			t.Fatalf("%d samples out of %d at %d Hz", len(out), info.Frames, info.SampleRate)
		}
	})
}

package media

import (
	"io"
	"math"
	"os"
	"sync"
)

// Source produces audio to send, one 20 ms frame at a time.
//
// ReadFrame fills frame (FrameSamples long) and returns nil, or returns
// io.EOF when the source has ended (frame contents are then undefined).
// Sources are called from one goroutine at a time.
type Source interface {
	ReadFrame(frame []int16) error
}

// SamplesSource plays a slice of 8 kHz samples, optionally looping.
type SamplesSource struct {
	samples []int16
	loop    bool
	pos     int
}

// NewSamplesSource returns a Source that plays samples once, or forever when
// loop is true. A final partial frame is padded with silence.
func NewSamplesSource(samples []int16, loop bool) *SamplesSource {
	return &SamplesSource{samples: samples, loop: loop}
}

// NewWAVSource reads a WAV file (see ReadWAV for the accepted formats) and
// returns a Source that plays it, once or looping.
func NewWAVSource(path string, loop bool) (*SamplesSource, error) {
	s, err := ReadWAVFile(path)
	if err != nil {
		return nil, err
	}
	return NewSamplesSource(s, loop), nil
}

// ReadFrame implements Source.
func (s *SamplesSource) ReadFrame(frame []int16) error {
	if len(s.samples) == 0 {
		return io.EOF
	}
	if s.pos >= len(s.samples) {
		if !s.loop {
			return io.EOF
		}
		s.pos = 0
	}
	for i := range frame {
		if s.pos >= len(s.samples) {
			if !s.loop {
				clear(frame[i:])
				return nil
			}
			s.pos = 0
		}
		frame[i] = s.samples[s.pos]
		s.pos++
	}
	return nil
}

// ToneSource generates an endless sine wave. Its phase carries across frames
// so the tone has no clicks at frame boundaries.
type ToneSource struct {
	step, phase, amp float64
}

// DefaultToneAmplitude is the level of NewToneSource when amplitude is 0:
// -10 dBFS, loud enough for detection and clear of G.711 clipping.
const DefaultToneAmplitude = 0.316

// NewToneSource returns a sine tone of hz Hertz at amplitude (a fraction of
// full scale, 0 < amplitude ≤ 1; 0 means DefaultToneAmplitude).
func NewToneSource(hz, amplitude float64) *ToneSource {
	if amplitude <= 0 || amplitude > 1 {
		amplitude = DefaultToneAmplitude
	}
	return &ToneSource{step: 2 * math.Pi * hz / SampleRate, amp: amplitude * math.MaxInt16}
}

// ReadFrame implements Source.
func (t *ToneSource) ReadFrame(frame []int16) error {
	for i := range frame {
		frame[i] = int16(math.Round(t.amp * math.Sin(t.phase)))
		t.phase += t.step
		if t.phase > 2*math.Pi {
			t.phase -= 2 * math.Pi
		}
	}
	return nil
}

// Silence is a Source of endless digital silence.
type Silence struct{}

// ReadFrame implements Source.
func (Silence) ReadFrame(frame []int16) error {
	clear(frame)
	return nil
}

// Sink consumes played-out audio, one 20 ms frame at a time. WriteFrame must
// not keep frame after returning.
type Sink interface {
	WriteFrame(frame []int16) error
}

// Recording is a Sink that keeps everything in memory; tests and the
// conference engine read it back with Samples. It is safe for concurrent use.
type Recording struct {
	mu      sync.Mutex
	samples []int16
}

// WriteFrame implements Sink.
func (r *Recording) WriteFrame(frame []int16) error {
	r.mu.Lock()
	r.samples = append(r.samples, frame...)
	r.mu.Unlock()
	return nil
}

// Samples returns a copy of what was recorded so far.
func (r *Recording) Samples() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.samples...)
}

// WAVRecorder is a Sink that streams frames into an 8 kHz mono PCM16 WAV
// file. The RIFF sizes are patched on Close, so a recording cut short by a
// crash still has all its samples (ReadWAV tolerates the zero sizes).
type WAVRecorder struct {
	mu     sync.Mutex
	w      io.WriteSeeker
	closer io.Closer
	n      uint32 // data bytes written
	buf    []byte
	err    error
	closed bool
}

// NewWAVRecorder writes a WAV header to w and returns a recorder appending
// to it. If w is also an io.Closer, Close closes it.
func NewWAVRecorder(w io.WriteSeeker) (*WAVRecorder, error) {
	if _, err := w.Write(wavHeader(0)); err != nil {
		return nil, err
	}
	r := &WAVRecorder{w: w}
	if c, ok := w.(io.Closer); ok {
		r.closer = c
	}
	return r, nil
}

// WriteFrame implements Sink.
func (r *WAVRecorder) WriteFrame(frame []int16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.err != nil {
		return r.err
	}
	r.buf = r.buf[:0]
	for _, s := range frame {
		r.buf = append(r.buf, byte(s), byte(uint16(s)>>8))
	}
	if _, err := r.w.Write(r.buf); err != nil {
		r.err = err
		return err
	}
	r.n += uint32(len(r.buf))
	return nil
}

// Close patches the header sizes and closes the underlying file. It is idempotent.
func (r *WAVRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	err := r.err
	if err == nil {
		if _, err = r.w.Seek(0, io.SeekStart); err == nil {
			if _, err = r.w.Write(wavHeader(r.n)); err == nil {
				_, err = r.w.Seek(0, io.SeekEnd)
			}
		}
	}
	if r.closer != nil {
		if cerr := r.closer.Close(); err == nil {
			err = cerr
		}
	}
	r.err = err
	return err
}

// CreateWAVRecorder creates (or truncates) the file at path and records into it.
func CreateWAVRecorder(path string) (*WAVRecorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	r, err := NewWAVRecorder(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

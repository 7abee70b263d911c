package media

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
)

// Playout is anything that yields received audio one frame at a time on
// demand: a Stream (its jitter buffers), a Mixer of Streams.
type Playout interface {
	PopFrame(frame []int16) FrameStatus
}

// MixInto adds src into dst sample by sample, saturating at the int16 limits
// instead of wrapping (a wrap turns two loud talkers into loud clicks).
func MixInto(dst, src []int16) {
	n := min(len(dst), len(src))
	for i := 0; i < n; i++ {
		v := int32(dst[i]) + int32(src[i])
		if v > 32767 {
			v = 32767
		} else if v < -32768 {
			v = -32768
		}
		dst[i] = int16(v)
	}
}

// Mix sets dst to the saturating sum of srcs.
func Mix(dst []int16, srcs ...[]int16) {
	clear(dst)
	for _, s := range srcs {
		MixInto(dst, s)
	}
}

// Mixer plays out several inputs as one: each input (typically one Stream
// per conference peer, each with its own jitter buffers) yields a frame and
// the frames are summed with saturation. A Mixer is itself a Playout, so it
// can feed a Player and a recording. Safe for concurrent use.
type Mixer struct {
	mu     sync.Mutex
	inputs []Playout
	tmp    []int16
}

// Add starts mixing p.
func (m *Mixer) Add(p Playout) {
	m.mu.Lock()
	m.inputs = append(m.inputs, p)
	m.mu.Unlock()
}

// Remove stops mixing p. Inputs are matched by ==, so use comparable
// Playouts (pointers such as *Stream and *Mixer); an input of an
// uncomparable type can never be removed, and Remove ignores it rather than
// panic.
func (m *Mixer) Remove(p Playout) {
	if p == nil || !reflect.TypeOf(p).Comparable() {
		return
	}
	m.mu.Lock()
	m.inputs = slices.DeleteFunc(m.inputs, func(q Playout) bool {
		return reflect.TypeOf(q) == reflect.TypeOf(p) && q == p
	})
	m.mu.Unlock()
}

// Len returns the number of inputs.
func (m *Mixer) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.inputs)
}

// PopFrame pops one frame from every input and mixes them into frame. The
// status is FrameAudio if any input had audio, else FrameConcealed if any
// concealed, else FrameSilent.
func (m *Mixer) PopFrame(frame []int16) FrameStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cap(m.tmp) < len(frame) {
		m.tmp = make([]int16, len(frame))
	}
	tmp := m.tmp[:len(frame)]
	clear(frame)
	status := FrameSilent
	for _, in := range m.inputs {
		switch in.PopFrame(tmp) {
		case FrameSilent:
			continue
		case FrameAudio:
			status = FrameAudio
		case FrameConcealed:
			if status == FrameSilent {
				status = FrameConcealed
			}
		}
		MixInto(frame, tmp)
	}
	return status
}

// runPlayout pops a frame from p every 20 ms and writes it to sink until
// ctx ends or the sink fails.
func runPlayout(ctx context.Context, p Playout, sink Sink, log *slog.Logger) {
	frame := make([]int16, FrameSamples)
	failed := false
	pace(ctx, func() {
		p.PopFrame(frame)
		if failed {
			return
		}
		if err := sink.WriteFrame(frame); err != nil {
			log.Warn("audio sink failed; playout continues without it", "err", err)
			failed = true
		}
	}, func(n int) {
		// Keep the jitter buffers on the wall clock; write the missed
		// frames too so a recording keeps real time.
		for i := 0; i < n; i++ {
			p.PopFrame(frame)
			if !failed && sink.WriteFrame(frame) != nil {
				failed = true
			}
		}
	})
}

// Player drives a Playout on a 20 ms clock into a Sink: the conference
// engine's speaker or recorder behind a Mixer.
type Player struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewPlayer starts playing p into sink. log may be nil.
func NewPlayer(p Playout, sink Sink, log *slog.Logger) *Player {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pl := &Player{cancel: cancel}
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		runPlayout(ctx, p, sink, log.With("subsystem", "media"))
	}()
	return pl
}

// Close stops the player and waits for it. It does not close the sink.
// Idempotent.
func (p *Player) Close() error {
	p.once.Do(func() {
		p.cancel()
		p.wg.Wait()
	})
	return nil
}

// FanoutConfig configures a Fanout.
type FanoutConfig struct {
	// Source, if set, is paced out every 20 ms by the Fanout's goroutine.
	// Nil means the caller calls Send itself. After the Source ends the
	// Fanout sends silence.
	Source Source
	// Logger for send errors; nil discards.
	Logger *slog.Logger
}

// Fanout is the sending half of a mesh conference: one 20 ms frame of our
// audio is encoded once per codec in use and the same payload goes to every
// peer's Stream ("encode once, send to N−1"). Each Stream still numbers and
// timestamps its packets itself. Streams in a Fanout must not have their own
// Config.Source.
type Fanout struct {
	mu      sync.Mutex
	streams []*Stream
	enc     [2][]byte // per codec: PCMU, PCMA

	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewFanout returns a Fanout, pacing cfg.Source if set.
func NewFanout(cfg FanoutConfig) *Fanout {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fanout{log: log.With("subsystem", "media"), cancel: cancel}
	if cfg.Source != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			frame := make([]int16, FrameSamples)
			ended := false
			next := func() {
				if !ended {
					if err := cfg.Source.ReadFrame(frame); err != nil {
						if !errors.Is(err, io.EOF) {
							f.log.Warn("audio source failed", "err", err)
						}
						ended = true
					}
				}
				if ended {
					clear(frame)
				}
			}
			pace(ctx, func() {
				next()
				f.Send(frame)
			}, func(n int) {
				for i := 0; i < n; i++ {
					next()
				}
				f.skip(n)
			})
		}()
	}
	return f
}

// Add starts sending to s.
func (f *Fanout) Add(s *Stream) {
	f.mu.Lock()
	f.streams = append(f.streams, s)
	f.mu.Unlock()
}

// Remove stops sending to s. It does not close s.
func (f *Fanout) Remove(s *Stream) {
	f.mu.Lock()
	f.streams = slices.DeleteFunc(f.streams, func(t *Stream) bool { return t == s })
	f.mu.Unlock()
}

// Len returns the number of Streams.
func (f *Fanout) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// Send encodes frame once per codec in use and sends it to every Stream.
// It returns the first send error; the other Streams are still served.
func (f *Fanout) Send(frame []int16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var have [2]bool
	var first error
	for _, s := range f.streams {
		i := 0
		if s.Codec() == PCMA {
			i = 1
		}
		if !have[i] {
			f.enc[i] = s.Codec().Encode(f.enc[i][:0], frame)
			have[i] = true
		}
		if err := s.SendPayload(s.Codec(), f.enc[i]); err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		f.log.Debug("fanout send failed", "err", first)
	}
	return first
}

// skip advances every Stream's media clock over n frames that were not sent.
func (f *Fanout) skip(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.streams {
		s.sendMu.Lock()
		s.ts += uint32(n * FrameSamples)
		s.sendMu.Unlock()
	}
}

// Close stops the pacing goroutine and waits. The Streams stay open.
// Idempotent.
func (f *Fanout) Close() error {
	f.once.Do(func() {
		f.cancel()
		f.wg.Wait()
	})
	return nil
}

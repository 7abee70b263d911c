package media

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Config configures a Stream. Exactly one of Conn and PacketConn must be set;
// every other field has a working zero value.
type Config struct {
	// Conn is a connected datagram conn to the peer, e.g. the net.Conn that
	// an ICE agent returns. RTP and RTCP share it (rtcp-mux). Latching does
	// not apply: the conn already knows where the peer is.
	Conn net.Conn
	// PacketConn is an unconnected UDP socket for a peer without ICE. RTP
	// goes to RemoteAddr (the SDP c=/m= address) until symmetric-RTP
	// latching finds where the peer's packets really come from.
	PacketConn net.PacketConn
	// RemoteAddr is where to send on a PacketConn. Nil means latch onto the
	// first valid RTP source and stay silent until then.
	RemoteAddr net.Addr
	// RTCPAddr, if set, is where RTCP goes on a PacketConn for a peer that
	// did not accept rtcp-mux (usually RTP port + 1). Default: the RTP
	// remote address (RFC 5761 multiplexing). Incoming RTCP is only read on
	// our one socket either way.
	RTCPAddr net.Addr
	// DisableLatching keeps sending to RemoteAddr whatever the source of
	// incoming RTP, and accepts RTP from any source.
	DisableLatching bool
	// LatchPackets is how many consecutive valid RTP packets with the same
	// SSRC a new source must send before we latch onto it. Default 2.
	LatchPackets int

	// Codec is what we send: PCMU (the zero value) or PCMA. Received audio
	// is decoded by its payload type, either G.711 variant.
	Codec Codec
	// TelephoneEventPT is the RFC 4733 payload type. Default 101.
	TelephoneEventPT uint8
	// SSRC of what we send. 0 picks a random one (RFC 3550 §8.1).
	SSRC uint32
	// CNAME for RTCP SDES. Default "punchline-<ssrc>@<local address>".
	CNAME string

	// Source, if set, is paced out every 20 ms by the Stream itself. Leave it
	// nil when a Fanout sends for several Streams or the caller uses
	// SendFrame. After the Source ends (io.EOF) the Stream sends silence, to
	// keep NAT bindings and the peer's jitter buffer alive, and closes
	// SourceDone.
	Source Source
	// Sink, if set, receives the played-out audio every 20 ms from a
	// goroutine the Stream owns (silence before the first packet, so a
	// recording keeps wall-clock time). Leave it nil to pull with PopFrame
	// (e.g. into a Mixer). The Stream does not close it.
	Sink Sink
	// Jitter configures the per-SSRC jitter buffers.
	Jitter JitterConfig
	// RTCPInterval is the mean interval between our RTCP reports, randomised
	// ±50% as RFC 3550 §6.3.1 asks. Default 1 s: far below the RFC's 5 s
	// minimum (which is for large sessions), so that even a 10 s call gets
	// RTT and loss feedback, as WebRTC does for audio. Negative disables RTCP.
	RTCPInterval time.Duration

	// OnDTMF is called once per received telephone-event, when its first
	// packet arrives, on the Stream's receive goroutine. It must not block
	// or call Close.
	OnDTMF func(DTMF)
	// OnRTP, if set, sees every accepted RTP packet (audio and events) on the
	// receive goroutine before it is buffered: a conference forwarder relays
	// them with WriteRTP. The packet and its payload are only valid during
	// the call.
	OnRTP func(pkt *rtp.Packet)
	// Logger receives debug and warning logs. Nil discards them.
	Logger *slog.Logger
}

// Stream is one RTP session with one peer: it sends our audio (G.711, 20 ms
// packets), receives and buffers theirs (a jitter buffer per remote SSRC),
// exchanges RTCP reports on the same port, sends and receives DTMF, and keeps
// statistics. Create it with New; it runs until Close. All methods are safe
// for concurrent use.
type Stream struct {
	cfg       Config
	log       *slog.Logger
	ssrc      uint32
	cname     string
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	firstPkt   chan struct{}
	firstOnce  sync.Once
	sourceDone chan struct{}

	dtmfMu sync.Mutex // serialises SendDTMF calls

	sendMu      sync.Mutex // guards the fields below
	seq         uint16
	ts          uint32 // timestamp of the next audio frame
	sentAny     bool
	dtmfBusy    bool // an event is being sent: audio is suppressed
	lastSentAt  time.Time
	lastSentTS  uint32
	pktsSent    uint64
	bytesSent   uint64
	octetsSent  uint64 // payload octets, for the SR
	sentSinceSR bool
	sendBuf     []byte
	encBuf      []byte

	remoteMu   sync.Mutex // guards the fields below
	remote     net.Addr
	rtcpRemote net.Addr
	latched    bool
	lastRemote time.Time // last RTP from remote
	remoteSSRC uint32    // SSRC last received from remote
	cand       net.Addr  // latching candidate
	candSSRC   uint32
	candCount  int

	recvMu      sync.Mutex // guards the fields below
	sources     map[uint32]*rxSource
	pktsRecv    uint64
	bytesRecv   uint64
	discarded   uint64
	rtcpSent    uint64
	rtcpRecv    uint64
	rtt         time.Duration
	haveRTT     bool
	remoteLoss  float64 // fraction lost the peer reported for our stream
	remoteJit   float64 // jitter the peer reported, ms
	popBuf      []int16
	retiredStat rxTotals // totals of evicted sources
}

// maxSources bounds per-SSRC state so that a flood of random SSRCs cannot
// exhaust memory; a conference forwarder relays at most a handful.
const maxSources = 16

// relatchIdle is how long the latched source must be silent before a source
// with a different SSRC may take over (a peer restarting its RTP stack).
const relatchIdle = time.Second

// New validates cfg and starts the Stream's goroutines: the receive loop, and
// as configured the sender, the RTCP reporter and the playout loop.
func New(cfg Config) (*Stream, error) {
	if (cfg.Conn == nil) == (cfg.PacketConn == nil) {
		return nil, ErrNoConn
	}
	if !cfg.Codec.Valid() {
		return nil, fmt.Errorf("%w: payload type %d", ErrUnknownCodec, cfg.Codec)
	}
	if cfg.TelephoneEventPT == 0 {
		cfg.TelephoneEventPT = DefaultTelephoneEventPT
	}
	if cfg.TelephoneEventPT > 127 || cfg.TelephoneEventPT == uint8(PCMA) || (cfg.TelephoneEventPT >= 64 && cfg.TelephoneEventPT <= 95) {
		return nil, fmt.Errorf("media: telephone-event payload type %d is not usable", cfg.TelephoneEventPT)
	}
	if cfg.LatchPackets <= 0 {
		cfg.LatchPackets = 2
	}
	if cfg.RTCPInterval == 0 {
		cfg.RTCPInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stream{
		cfg:        cfg,
		ssrc:       cfg.SSRC,
		firstPkt:   make(chan struct{}),
		sourceDone: make(chan struct{}),
		sources:    make(map[uint32]*rxSource),
		remote:     cfg.RemoteAddr,
		rtcpRemote: cfg.RTCPAddr,
	}
	for s.ssrc == 0 {
		s.ssrc = randUint32()
	}
	// RFC 3550 §5.1: sequence number and timestamp start at random values.
	s.seq = uint16(randUint32())
	s.ts = randUint32()
	s.log = log.With("subsystem", "media", "ssrc", s.ssrc)
	s.cname = cfg.CNAME
	if s.cname == "" {
		s.cname = fmt.Sprintf("punchline-%08x@%s", s.ssrc, s.localAddr())
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// A conn handed over from a closed Stream still has the deadline that
	// Close used to stop its reader.
	s.clearDeadline()

	s.wg.Add(1)
	go s.readLoop()
	if cfg.Source != nil {
		s.wg.Add(1)
		go s.sendLoop()
	}
	if cfg.RTCPInterval > 0 {
		s.wg.Add(1)
		go s.rtcpLoop()
	}
	if cfg.Sink != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			runPlayout(s.ctx, s, cfg.Sink, s.log)
		}()
	}
	return s, nil
}

func randUint32() uint32 {
	var b [4]byte
	if _, err := crand.Read(b[:]); err != nil {
		return rand.Uint32()
	}
	return binary.BigEndian.Uint32(b[:])
}

func (s *Stream) localAddr() string {
	if s.cfg.Conn != nil && s.cfg.Conn.LocalAddr() != nil {
		return s.cfg.Conn.LocalAddr().String()
	}
	if s.cfg.PacketConn != nil && s.cfg.PacketConn.LocalAddr() != nil {
		return s.cfg.PacketConn.LocalAddr().String()
	}
	return "local"
}

func (s *Stream) clearDeadline() {
	if s.cfg.Conn != nil {
		_ = s.cfg.Conn.SetReadDeadline(time.Time{})
	} else {
		_ = s.cfg.PacketConn.SetReadDeadline(time.Time{})
	}
}

// SSRC returns the synchronisation source of what this Stream sends.
func (s *Stream) SSRC() uint32 { return s.ssrc }

// Codec returns the codec this Stream sends.
func (s *Stream) Codec() Codec { return s.cfg.Codec }

// FirstPacket is closed when the first valid RTP packet from the peer
// arrives (call setup time ends there).
func (s *Stream) FirstPacket() <-chan struct{} { return s.firstPkt }

// SourceDone is closed when Config.Source has ended (never, for a looping
// or endless source or without one).
func (s *Stream) SourceDone() <-chan struct{} { return s.sourceDone }

// RemoteAddr returns where RTP is being sent now: the connected peer, the
// configured address, or the latched source.
func (s *Stream) RemoteAddr() net.Addr {
	if s.cfg.Conn != nil {
		return s.cfg.Conn.RemoteAddr()
	}
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	return s.remote
}

// SetRemote points a PacketConn stream at a new address (a re-INVITE with a
// new c=/m=) and re-arms latching. A separate RTCP address (Config.RTCPAddr)
// moves with it, keeping its port offset from the RTP port.
func (s *Stream) SetRemote(addr net.Addr) {
	s.remoteMu.Lock()
	oldR, okR := s.remote.(*net.UDPAddr)
	oldC, okC := s.rtcpRemote.(*net.UDPAddr)
	newR, okN := addr.(*net.UDPAddr)
	if okR && okC && okN {
		s.rtcpRemote = &net.UDPAddr{IP: newR.IP, Port: newR.Port + oldC.Port - oldR.Port, Zone: newR.Zone}
	}
	s.remote = addr
	s.latched = false
	s.cand = nil
	s.candCount = 0
	s.remoteMu.Unlock()
}

// Close stops all goroutines, sends an RTCP BYE and waits. It does not close
// the Conn or PacketConn (the caller owns them), unless the conn cannot
// interrupt a blocked read with a deadline, in which case it must be closed
// to stop the receive loop. Close is idempotent.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		if s.cfg.RTCPInterval > 0 {
			s.sendBye()
		}
		s.cancel()
		var err error
		if s.cfg.Conn != nil {
			err = s.cfg.Conn.SetReadDeadline(time.Now())
		} else {
			err = s.cfg.PacketConn.SetReadDeadline(time.Now())
		}
		if err != nil {
			s.log.Debug("read deadline unsupported, closing conn", "err", err)
			if s.cfg.Conn != nil {
				s.closeErr = s.cfg.Conn.Close()
			} else {
				s.closeErr = s.cfg.PacketConn.Close()
			}
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// ---- sending ----

func (s *Stream) sendLoop() {
	defer s.wg.Done()
	frame := make([]int16, FrameSamples)
	ended := false
	pace(s.ctx, func() {
		if !ended {
			if err := s.cfg.Source.ReadFrame(frame); err != nil {
				if !errors.Is(err, io.EOF) {
					s.log.Warn("audio source failed", "err", err)
				}
				ended = true
				close(s.sourceDone)
			}
		}
		if ended {
			clear(frame)
		}
		if err := s.SendFrame(frame); err != nil && s.ctx.Err() == nil {
			s.log.Debug("send failed", "err", err)
		}
	}, func(n int) {
		// Frames we never sent still take media time (RFC 3550 §5.1).
		s.sendMu.Lock()
		s.ts += uint32(n * FrameSamples)
		s.sendMu.Unlock()
		for i := 0; i < n && !ended; i++ {
			if s.cfg.Source.ReadFrame(frame) != nil {
				ended = true
				close(s.sourceDone)
			}
		}
	})
}

// SendFrame encodes one frame of audio with the Stream's codec and sends it
// as the next RTP packet. Callers that pace audio themselves use it; they
// must call it once per 20 ms of audio.
func (s *Stream) SendFrame(pcm []int16) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.encBuf = s.cfg.Codec.Encode(s.encBuf[:0], pcm)
	return s.sendAudioLocked(s.encBuf)
}

// SendPayload sends an already encoded frame: len(payload) samples of codec
// c, which must be the Stream's codec. A Fanout uses it to encode once for
// many Streams. The payload is not retained.
func (s *Stream) SendPayload(c Codec, payload []byte) error {
	if c != s.cfg.Codec {
		return fmt.Errorf("%w: payload is %v, stream sends %v", ErrUnknownCodec, c, s.cfg.Codec)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.sendAudioLocked(payload)
}

// sendAudioLocked sends one audio packet; sendMu is held.
func (s *Stream) sendAudioLocked(payload []byte) error {
	ts := s.ts
	s.ts += uint32(len(payload)) // G.711: one byte per sample
	if s.dtmfBusy {
		// RFC 4733 §2.5.1.3 lets the audio stop while an event is sent;
		// its media time still passes.
		return nil
	}
	marker := !s.sentAny // first packet of the stream (RFC 3551 §4.1)
	return s.writeRTPLocked(s.cfg.Codec.PayloadType(), marker, ts, payload)
}

// writeRTPLocked builds and sends one of our RTP packets; sendMu is held.
func (s *Stream) writeRTPLocked(pt uint8, marker bool, ts uint32, payload []byte) error {
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			Marker:         marker,
			PayloadType:    pt,
			SequenceNumber: s.seq,
			Timestamp:      ts,
			SSRC:           s.ssrc,
		},
		Payload: payload,
	}
	size := pkt.MarshalSize()
	if cap(s.sendBuf) < size {
		s.sendBuf = make([]byte, size+64)
	}
	n, err := pkt.MarshalTo(s.sendBuf[:size])
	if err != nil {
		return err
	}
	s.seq++
	s.sentAny = true
	s.sentSinceSR = true
	s.lastSentAt = time.Now()
	s.lastSentTS = ts
	if err := s.write(s.sendBuf[:n], false); err != nil {
		return err
	}
	s.pktsSent++
	s.bytesSent += uint64(n)
	s.octetsSent += uint64(len(payload))
	return nil
}

// WriteRTP sends a packet as given (its own SSRC, sequence number and
// timestamp): a conference participant forwarding another peer's stream.
func (s *Stream) WriteRTP(pkt *rtp.Packet) error {
	b, err := pkt.Marshal()
	if err != nil {
		return err
	}
	if err := s.write(b, false); err != nil {
		return err
	}
	s.sendMu.Lock()
	s.pktsSent++
	s.bytesSent += uint64(len(b))
	s.sendMu.Unlock()
	return nil
}

// write sends one datagram to the peer.
func (s *Stream) write(b []byte, isRTCP bool) error {
	if s.cfg.Conn != nil {
		_, err := s.cfg.Conn.Write(b)
		return err
	}
	s.remoteMu.Lock()
	to := s.remote
	if isRTCP && s.rtcpRemote != nil {
		to = s.rtcpRemote
	}
	s.remoteMu.Unlock()
	if to == nil {
		return ErrNoRemote
	}
	_, err := s.cfg.PacketConn.WriteTo(b, to)
	return err
}

// dtmfUpdate is how often an ongoing event is re-sent (RFC 4733 §2.5.1.2
// suggests the audio packetization interval).
const dtmfUpdate = FrameDuration

// SendDTMF sends digits as RFC 4733 telephone-events, each lasting duration
// (default 100 ms; 40 ms to 5 s) with a 60 ms pause between digits. Audio is
// suppressed while an event is on. It blocks until the digits are sent or
// ctx ends.
func (s *Stream) SendDTMF(ctx context.Context, digits string, duration time.Duration) error {
	if duration <= 0 {
		duration = 100 * time.Millisecond
	}
	// The duration field is 16 bits of 1/8000 s; 5 s is far beyond any keypress.
	duration = min(max(duration, 2*dtmfUpdate), 5*time.Second)
	events := make([]uint8, 0, len(digits))
	for _, d := range digits {
		ev, err := DigitEvent(d)
		if err != nil {
			return err
		}
		events = append(events, ev)
	}
	s.dtmfMu.Lock()
	defer s.dtmfMu.Unlock()
	for i, ev := range events {
		if i > 0 {
			if err := sleepCtx(ctx, s.ctx, 60*time.Millisecond); err != nil {
				return err
			}
		}
		if err := s.sendEvent(ctx, ev, duration); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx, own context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-own.Done():
		return ErrClosed
	}
}

func (s *Stream) sendEvent(ctx context.Context, ev uint8, duration time.Duration) error {
	total := uint16(durToSamples(duration))
	s.sendMu.Lock()
	s.dtmfBusy = true
	evTS := s.ts
	s.sendMu.Unlock()
	defer func() {
		s.sendMu.Lock()
		s.dtmfBusy = false
		// Without audio flowing the timestamp would not have moved; the
		// next event must not reuse this one's start time.
		if int32(s.ts-(evTS+uint32(total))) < 0 {
			s.ts = evTS + uint32(total)
		}
		s.sendMu.Unlock()
	}()
	send := func(d uint16, end, marker bool) error {
		p := TelephoneEvent{Event: ev, End: end, Volume: 10, Duration: d}.Marshal()
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		return s.writeRTPLocked(s.cfg.TelephoneEventPT, marker, evTS, p)
	}
	t := time.NewTicker(dtmfUpdate)
	defer t.Stop()
	step := uint16(durToSamples(dtmfUpdate))
	for d := step; ; d += step {
		if d >= total {
			d = total
		}
		end := d == total
		reps := 1
		if end {
			reps = 3 // RFC 4733 §2.5.1.4: the end packet is sent three times.
		}
		for r := 0; r < reps; r++ {
			if err := send(d, end, d == step && r == 0); err != nil {
				return err
			}
			if r < reps-1 {
				select {
				case <-t.C:
				case <-ctx.Done():
					return ctx.Err()
				case <-s.ctx.Done():
					return ErrClosed
				}
			}
		}
		if end {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// ---- receiving ----

func (s *Stream) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		var (
			n    int
			from net.Addr
			err  error
		)
		if s.cfg.Conn != nil {
			n, err = s.cfg.Conn.Read(buf)
		} else {
			n, from, err = s.cfg.PacketConn.ReadFrom(buf)
		}
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
				s.log.Debug("conn closed, receive loop ends", "err", err)
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// A deadline someone else set (or one left by a previous
				// Stream's Close on a reused conn): clear it, or every read
				// would fail at once.
				s.clearDeadline()
				// Close cancels before it sets its own deadline, so if we
				// just cleared that one, the cancellation is visible here.
				if s.ctx.Err() != nil {
					return
				}
				continue
			}
			// ICMP errors (connection refused while the peer is not up yet)
			// surface here on connected UDP sockets; they are not fatal.
			s.log.Debug("read error", "err", err)
			if sleepCtx(s.ctx, s.ctx, 5*time.Millisecond) != nil {
				return
			}
			continue
		}
		s.handlePacket(buf[:n], from, time.Now())
	}
}

// handlePacket processes one datagram: RTCP or RTP, from address from
// (nil on a connected Conn), arriving at now.
func (s *Stream) handlePacket(b []byte, from net.Addr, now time.Time) {
	if isRTCP(b) {
		s.handleRTCP(b, from, now)
		return
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(b); err != nil || pkt.Version != 2 {
		s.countDiscard()
		return
	}
	pt := pkt.PayloadType
	isEvent := pt == s.cfg.TelephoneEventPT
	isAudio := pt == uint8(PCMU) || pt == uint8(PCMA)
	if !isEvent && !isAudio {
		// Comfort noise (RFC 3389, PT 13) or another payload type we do
		// not play: it shares the sender's sequence space, so count it for
		// loss accounting if the source is known, but never let it start
		// a source or move the latch.
		ok := from == nil || s.fromRemote(from)
		s.recvMu.Lock()
		if src, known := s.sources[pkt.SSRC]; ok && known {
			s.pktsRecv++
			s.bytesRecv += uint64(len(b))
			src.updateSeq(pkt.SequenceNumber)
			src.lastPacket = now
		} else {
			s.discarded++
		}
		s.recvMu.Unlock()
		return
	}
	if from != nil && !s.admit(from, pkt.SSRC, now) {
		s.countDiscard()
		return
	}
	s.firstOnce.Do(func() { close(s.firstPkt) })
	if s.cfg.OnRTP != nil {
		s.cfg.OnRTP(&pkt)
	}

	var dtmf *DTMF
	s.recvMu.Lock()
	src := s.sourceLocked(pkt.SSRC, now)
	if src == nil {
		s.discarded++
		s.recvMu.Unlock()
		return
	}
	s.pktsRecv++
	s.bytesRecv += uint64(len(b))
	if !src.updateSeq(pkt.SequenceNumber) {
		s.recvMu.Unlock()
		return
	}
	src.lastPacket = now
	if isEvent {
		dtmf = src.handleEvent(&pkt)
	} else {
		src.updateJitter(pkt.Timestamp, now)
		src.pcm = Codec(pt).Decode(src.pcm[:0], pkt.Payload)
		src.jb.Push(pkt.SequenceNumber, pkt.Timestamp, src.pcm, now)
	}
	s.recvMu.Unlock()
	if dtmf != nil && s.cfg.OnDTMF != nil {
		s.cfg.OnDTMF(*dtmf)
	}
}

func (s *Stream) countDiscard() {
	s.recvMu.Lock()
	s.discarded++
	s.recvMu.Unlock()
}

// sameAddr compares two transport addresses.
func sameAddr(a, b net.Addr) bool {
	if a == nil || b == nil {
		return a == b
	}
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP)
	}
	return a.Network() == b.Network() && a.String() == b.String()
}

func sameIP(a, b net.Addr) bool {
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 {
		return ua.IP.Equal(ub.IP)
	}
	return sameAddr(a, b)
}

// admit applies the symmetric-RTP latching rules in the package doc to a
// valid RTP packet from address from on a PacketConn, and reports whether to
// accept it.
func (s *Stream) admit(from net.Addr, ssrc uint32, now time.Time) bool {
	if s.cfg.DisableLatching {
		return true
	}
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	if s.remote != nil && sameAddr(from, s.remote) {
		s.latched = true
		s.lastRemote = now
		s.remoteSSRC = ssrc
		s.cand = nil
		s.candCount = 0
		return true
	}
	if s.cand != nil && sameAddr(from, s.cand) && ssrc == s.candSSRC {
		s.candCount++
	} else {
		s.cand, s.candSSRC, s.candCount = from, ssrc, 1
	}
	mayTakeOver := !s.latched || ssrc == s.remoteSSRC || now.Sub(s.lastRemote) > relatchIdle
	if s.candCount >= s.cfg.LatchPackets && mayTakeOver {
		s.log.Info("symmetric RTP: latched onto media source", "from", from, "was", s.remote)
		s.remote = from
		s.latched = true
		s.lastRemote = now
		s.remoteSSRC = ssrc
		s.cand = nil
		s.candCount = 0
		return true
	}
	return !s.latched
}

// fromRemote reports whether from is the address we send to (or anything,
// before latching or with latching off).
func (s *Stream) fromRemote(from net.Addr) bool {
	if s.cfg.DisableLatching {
		return true
	}
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	return !s.latched || sameAddr(from, s.remote)
}

// sourceLocked returns the state for ssrc, creating it if there is room.
func (s *Stream) sourceLocked(ssrc uint32, now time.Time) *rxSource {
	if src, ok := s.sources[ssrc]; ok {
		return src
	}
	if len(s.sources) >= maxSources {
		// Evict the longest-idle source if it has been quiet a while.
		var oldest *rxSource
		for _, src := range s.sources {
			if oldest == nil || src.lastPacket.Before(oldest.lastPacket) {
				oldest = src
			}
		}
		if now.Sub(oldest.lastPacket) < 5*time.Second {
			return nil
		}
		s.retiredStat.add(oldest.totals())
		delete(s.sources, oldest.ssrc)
	}
	src := newRxSource(ssrc, s.cfg.Jitter)
	s.sources[ssrc] = src
	return src
}

// PopFrame plays out the next 20 ms of received audio into frame (normally
// FrameSamples long): each remote source's jitter buffer yields a frame and
// they are mixed. Call it once per 20 ms, or set Config.Sink and let the
// Stream do it.
func (s *Stream) PopFrame(frame []int16) FrameStatus {
	now := time.Now()
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	switch len(s.sources) {
	case 0:
		clear(frame)
		return FrameSilent
	case 1:
		for _, src := range s.sources {
			return src.jb.Pop(frame, now)
		}
	}
	if cap(s.popBuf) < len(frame) {
		s.popBuf = make([]int16, len(frame))
	}
	tmp := s.popBuf[:len(frame)]
	clear(frame)
	status := FrameSilent
	for _, src := range s.sources {
		switch src.jb.Pop(tmp, now) {
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

// ---- RTCP ----

func (s *Stream) rtcpLoop() {
	defer s.wg.Done()
	for {
		// Randomised interval (RFC 3550 §6.3.1) so peers do not synchronise.
		d := time.Duration(float64(s.cfg.RTCPInterval) * (0.5 + rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.sendReport(); err != nil && s.ctx.Err() == nil {
			s.log.Debug("rtcp send failed", "err", err)
		}
	}
}

// buildReport returns our compound RTCP packet: an SR if we sent RTP since
// the last report (else an RR), with one reception block per remote source
// (at most 31), followed by SDES CNAME (RFC 3550 §6.1).
func (s *Stream) buildReport(now time.Time) []rtcp.Packet {
	s.recvMu.Lock()
	var blocks []rtcp.ReceptionReport
	for _, src := range s.sources {
		if len(blocks) == 31 {
			break
		}
		if src.received == 0 {
			continue
		}
		blocks = append(blocks, src.receptionReport(now))
	}
	s.recvMu.Unlock()

	s.sendMu.Lock()
	sender := s.sentSinceSR
	s.sentSinceSR = false
	var sr *rtcp.SenderReport
	if sender {
		// The RTP time that corresponds to now, extrapolated from the last
		// packet sent, so the peer can relate our media to wall-clock time.
		rtpNow := s.lastSentTS + uint32(durToSamples(now.Sub(s.lastSentAt)))
		sr = &rtcp.SenderReport{
			SSRC:        s.ssrc,
			NTPTime:     ntpTime(now),
			RTPTime:     rtpNow,
			PacketCount: uint32(s.pktsSent),
			OctetCount:  uint32(s.octetsSent),
			Reports:     blocks,
		}
	}
	s.sendMu.Unlock()
	var first rtcp.Packet = &rtcp.ReceiverReport{SSRC: s.ssrc, Reports: blocks}
	if sr != nil {
		first = sr
	}
	return []rtcp.Packet{first, rtcp.NewCNAMESourceDescription(s.ssrc, s.cname)}
}

func (s *Stream) sendReport() error {
	b, err := rtcp.Marshal(s.buildReport(time.Now()))
	if err != nil {
		return err
	}
	if err := s.write(b, true); err != nil {
		return err
	}
	s.recvMu.Lock()
	s.rtcpSent++
	s.recvMu.Unlock()
	return nil
}

func (s *Stream) sendBye() {
	pkts := s.buildReport(time.Now())
	pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{s.ssrc}})
	if b, err := rtcp.Marshal(pkts); err == nil {
		_ = s.write(b, true) // best effort: the peer also notices silence
	}
}

func (s *Stream) handleRTCP(b []byte, from net.Addr, now time.Time) {
	if from != nil && !s.cfg.DisableLatching {
		s.remoteMu.Lock()
		ok := !s.latched || sameIP(from, s.remote)
		s.remoteMu.Unlock()
		if !ok {
			s.countDiscard()
			return
		}
	}
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		s.countDiscard()
		return
	}
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	s.rtcpRecv++
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			if src, ok := s.sources[p.SSRC]; ok {
				src.lastSR = ntpMiddle(p.NTPTime)
				src.lastSRAt = now
			}
			s.takeReportsLocked(p.Reports, now)
		case *rtcp.ReceiverReport:
			s.takeReportsLocked(p.Reports, now)
		case *rtcp.Goodbye:
			for _, ssrc := range p.Sources {
				if src, ok := s.sources[ssrc]; ok {
					src.bye = true
				}
			}
		}
	}
}

// takeReportsLocked uses the reception blocks about our own stream: RTT
// from LSR/DLSR and what the peer says about loss and jitter.
func (s *Stream) takeReportsLocked(reports []rtcp.ReceptionReport, now time.Time) {
	for _, r := range reports {
		if r.SSRC != s.ssrc {
			continue
		}
		if rtt, ok := rttFromReport(now, r.LastSenderReport, r.Delay); ok {
			s.rtt, s.haveRTT = rtt, true
		}
		s.remoteLoss = float64(r.FractionLost) / 256
		s.remoteJit = float64(r.Jitter) * 1000 / SampleRate
	}
}

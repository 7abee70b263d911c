package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
)

// SRTP (RFC 3711) for a Stream: an SRTP value holds one sending and one
// receiving crypto context and wraps the Stream's conn, so that what the
// Stream writes leaves encrypted and authenticated, and what it reads is
// only ever what authenticated under the peer's key. Packets that fail
// (a wrong auth tag, a replayed index, garbage) are dropped and counted
// before the Stream sees them: they are never played and never move the
// symmetric-RTP latch. RTP and RTCP share the conn (RFC 5761 demux by
// payload type); RTCP goes out as SRTCP. Keys come from the signaling
// (SDES, RFC 4568, in package ice); the encryption is pion/srtp's.

// Errors of Unprotect.
var (
	// ErrSRTPAuth means a packet failed authentication (or was not SRTP).
	ErrSRTPAuth = errors.New("media: SRTP packet failed authentication")
	// ErrSRTPReplay means a packet's index was already received or is
	// older than the replay window (RFC 3711 §3.3.2).
	ErrSRTPReplay = errors.New("media: SRTP packet replayed")
)

// SRTPKey is the keying of one direction.
type SRTPKey struct {
	// Suite is the SDES crypto-suite name: AES_CM_128_HMAC_SHA1_80 (the
	// RFC 4568 mandatory one), AES_CM_128_HMAC_SHA1_32, AES_256_CM_HMAC_SHA1_80,
	// AES_256_CM_HMAC_SHA1_32, AEAD_AES_128_GCM or AEAD_AES_256_GCM.
	Suite string
	// MasterKey and MasterSalt are the SDES key material.
	MasterKey, MasterSalt []byte
	// MKI, if set, is the master key identifier the peer puts in its
	// packets (receiving key only; we send without one).
	MKI []byte
	// ReplayWindow is the receive replay window in packets. Zero means
	// DefaultSRTPReplayWindow; less than 64 means 64 (RFC 3711 §3.3.2).
	ReplayWindow int
}

// DefaultSRTPReplayWindow is the receive replay window: RFC 3711 asks for
// at least 64; 128 leaves room for the reordering a jitter buffer absorbs.
const DefaultSRTPReplayWindow = 128

// srtpRekeyGrace is how long the receiving key before a rekey stays
// usable: the peer switches when it gets our answer (or we get its), so
// packets under the old key are still in flight for a round trip or two.
const srtpRekeyGrace = 5 * time.Second

var srtpProfiles = map[string]srtp.ProtectionProfile{
	"AES_CM_128_HMAC_SHA1_80": srtp.ProtectionProfileAes128CmHmacSha1_80,
	"AES_CM_128_HMAC_SHA1_32": srtp.ProtectionProfileAes128CmHmacSha1_32,
	"AES_256_CM_HMAC_SHA1_80": srtp.ProtectionProfileAes256CmHmacSha1_80,
	"AES_256_CM_HMAC_SHA1_32": srtp.ProtectionProfileAes256CmHmacSha1_32,
	"AEAD_AES_128_GCM":        srtp.ProtectionProfileAeadAes128Gcm,
	"AEAD_AES_256_GCM":        srtp.ProtectionProfileAeadAes256Gcm,
}

// SRTPSuites lists the SDES suites the SRTP transform runs.
func SRTPSuites() []string {
	return []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AES_256_CM_HMAC_SHA1_80",
		"AES_256_CM_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"}
}

// SRTPStats count what the transform did.
type SRTPStats struct {
	// Suite is the suite we send with.
	Suite string `json:"srtp_suite,omitempty"`
	// Protected and Unprotected count packets (RTP and RTCP) encrypted
	// and successfully authenticated and decrypted.
	Protected   uint64 `json:"srtp_packets_protected"`
	Unprotected uint64 `json:"srtp_packets_unprotected"`
	// AuthFailures counts received packets dropped because they did not
	// authenticate (tampered, wrong key, not SRTP at all).
	AuthFailures uint64 `json:"srtp_auth_failures"`
	// Replays counts received packets dropped as replays.
	Replays uint64 `json:"srtp_replays"`
	// Rekeys counts key changes after the first keying, both directions.
	Rekeys uint64 `json:"srtp_rekeys"`
}

// SRTP is the crypto state of one stream. It is safe for concurrent use;
// the conns it wraps expect one reader at a time, as a Stream does.
type SRTP struct {
	log *slog.Logger

	// sendMu guards send, suite and sendBuf; it is held across the write
	// of a protected packet so that the buffer is not reused meanwhile.
	sendMu  sync.Mutex
	send    *srtp.Context
	suite   string
	sendBuf []byte

	// recvMu guards the fields below.
	recvMu     sync.Mutex
	recv       *srtp.Context
	prev       *srtp.Context // the receiving context before the last rekey
	prevUntil  time.Time
	sawReplay  bool // set by the replay detectors during one Unprotect
	recvSuite  string
	lastWarned time.Time

	protected, unprotected, authFail, replays, rekeys atomic.Uint64
}

// NewSRTP creates the transform from our sending key and the peer's.
// logger may be nil.
func NewSRTP(local, remote SRTPKey, logger *slog.Logger) (*SRTP, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &SRTP{log: logger.With("subsystem", "srtp")}
	var err error
	if s.send, err = s.newContext(local, false); err != nil {
		return nil, fmt.Errorf("SRTP sending key: %w", err)
	}
	if s.recv, err = s.newContext(remote, true); err != nil {
		return nil, fmt.Errorf("SRTP receiving key: %w", err)
	}
	s.suite, s.recvSuite = local.Suite, remote.Suite
	return s, nil
}

// countingDetector wraps a replay detector to tell Unprotect that a
// failure was a replay (pion/srtp's replay error is not exported).
type countingDetector struct {
	replaydetector.ReplayDetector
	s *SRTP
}

func (d countingDetector) Check(seq uint64) (func() bool, bool) {
	accept, ok := d.ReplayDetector.Check(seq)
	if !ok {
		d.s.sawReplay = true // recvMu is held: Unprotect is the only caller
	}
	return accept, ok
}

func (s *SRTP) newContext(k SRTPKey, receiving bool) (*srtp.Context, error) {
	profile, ok := srtpProfiles[k.Suite]
	if !ok {
		return nil, fmt.Errorf("unsupported crypto suite %q", k.Suite)
	}
	var opts []srtp.ContextOption
	if receiving {
		w := k.ReplayWindow
		if w == 0 {
			w = DefaultSRTPReplayWindow
		}
		w = min(max(w, 64), 1<<15)
		opts = append(opts,
			srtp.SRTPReplayDetectorFactory(func() replaydetector.ReplayDetector {
				return countingDetector{replaydetector.New(uint(w), 1<<48-1), s}
			}),
			srtp.SRTCPReplayDetectorFactory(func() replaydetector.ReplayDetector {
				return countingDetector{replaydetector.New(uint(w), 0x7fffffff), s}
			}))
		if len(k.MKI) > 0 {
			opts = append(opts, srtp.MasterKeyIndicator(k.MKI))
		}
	}
	return srtp.CreateContext(k.MasterKey, k.MasterSalt, profile, opts...)
}

// SetLocalKey rekeys what we send from the next packet on.
func (s *SRTP) SetLocalKey(k SRTPKey) error {
	c, err := s.newContext(k, false)
	if err != nil {
		return fmt.Errorf("SRTP sending key: %w", err)
	}
	s.sendMu.Lock()
	s.send, s.suite = c, k.Suite
	s.sendMu.Unlock()
	s.rekeys.Add(1)
	return nil
}

// SetRemoteKey rekeys what we receive. The previous key stays usable for
// a few seconds, for packets the peer sent before it switched.
func (s *SRTP) SetRemoteKey(k SRTPKey) error {
	c, err := s.newContext(k, true)
	if err != nil {
		return fmt.Errorf("SRTP receiving key: %w", err)
	}
	s.recvMu.Lock()
	s.prev, s.prevUntil = s.recv, time.Now().Add(srtpRekeyGrace)
	s.recv, s.recvSuite = c, k.Suite
	s.recvMu.Unlock()
	s.rekeys.Add(1)
	return nil
}

// Suite returns the suite we send with.
func (s *SRTP) Suite() string {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.suite
}

// Stats returns the counters.
func (s *SRTP) Stats() SRTPStats {
	return SRTPStats{
		Suite:        s.Suite(),
		Protected:    s.protected.Load(),
		Unprotected:  s.unprotected.Load(),
		AuthFailures: s.authFail.Load(),
		Replays:      s.replays.Load(),
		Rekeys:       s.rekeys.Load(),
	}
}

// isRTCPPacket applies the RFC 5761 §4 demultiplexing rule: RTCP packet
// types 192-223 occupy the byte where RTP has marker and payload type.
func isRTCPPacket(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// protectLocked encrypts one plaintext RTP or RTCP packet into s.sendBuf.
func (s *SRTP) protectLocked(pkt []byte) ([]byte, error) {
	var (
		out []byte
		err error
	)
	if isRTCPPacket(pkt) {
		out, err = s.send.EncryptRTCP(s.sendBuf[:0], pkt, nil)
	} else {
		out, err = s.send.EncryptRTP(s.sendBuf[:0], pkt, nil)
	}
	if err != nil {
		return nil, err
	}
	s.sendBuf = out[:0]
	s.protected.Add(1)
	return out, nil
}

// Protect encrypts one RTP or RTCP packet into dst (grown as needed) and
// returns the SRTP or SRTCP packet.
func (s *SRTP) Protect(dst, pkt []byte) ([]byte, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	out, err := s.protectLocked(pkt)
	if err != nil {
		return nil, err
	}
	return append(dst[:0], out...), nil
}

// Unprotect authenticates and decrypts one SRTP or SRTCP packet into dst
// (grown as needed). A packet that fails is counted and reported with
// ErrSRTPAuth or ErrSRTPReplay; nothing of it may be used.
func (s *SRTP) Unprotect(dst, pkt []byte) ([]byte, error) {
	rtcp := isRTCPPacket(pkt)
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	s.sawReplay = false
	out, err := decrypt(s.recv, dst, pkt, rtcp)
	if err != nil && s.prev != nil {
		if time.Now().After(s.prevUntil) {
			s.prev = nil
		} else if o, perr := decrypt(s.prev, dst, pkt, rtcp); perr == nil {
			out, err = o, nil
			s.sawReplay = false
		}
	}
	if err != nil {
		now := time.Now()
		warn := now.Sub(s.lastWarned) > 10*time.Second
		if warn {
			s.lastWarned = now
		}
		if s.sawReplay {
			s.replays.Add(1)
			if warn {
				s.log.Warn("dropped a replayed SRTP packet", "rtcp", rtcp, "len", len(pkt))
			}
			return nil, ErrSRTPReplay
		}
		s.authFail.Add(1)
		if warn {
			s.log.Warn("dropped an SRTP packet that failed authentication", "rtcp", rtcp, "len", len(pkt), "err", err)
		}
		return nil, fmt.Errorf("%w: %v", ErrSRTPAuth, err)
	}
	s.unprotected.Add(1)
	return out, nil
}

func decrypt(c *srtp.Context, dst, pkt []byte, rtcp bool) ([]byte, error) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return nil, errors.New("not an SRTP packet")
	}
	if rtcp {
		return c.DecryptRTCP(dst[:0], pkt, nil)
	}
	return c.DecryptRTP(dst[:0], pkt, nil)
}

// Conn wraps a connected conn (an ICE conn): Write protects, Read returns
// only packets that authenticated. Closing it closes c.
func (s *SRTP) Conn(c net.Conn) net.Conn {
	return &srtpConn{Conn: c, s: s, rbuf: make([]byte, 2048)}
}

// PacketConn wraps an unconnected socket (a plain peer without ICE) the
// same way.
func (s *SRTP) PacketConn(pc net.PacketConn) net.PacketConn {
	return &srtpPacketConn{PacketConn: pc, s: s, rbuf: make([]byte, 2048)}
}

type srtpConn struct {
	net.Conn
	s    *SRTP
	rbuf []byte // one reader at a time
}

func (c *srtpConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(c.rbuf)
		if err != nil {
			return 0, err
		}
		out, err := c.s.Unprotect(b, c.rbuf[:n])
		if err != nil {
			continue
		}
		return copy(b, out), nil
	}
}

func (c *srtpConn) Write(b []byte) (int, error) {
	c.s.sendMu.Lock()
	defer c.s.sendMu.Unlock()
	out, err := c.s.protectLocked(b)
	if err != nil {
		return 0, err
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

type srtpPacketConn struct {
	net.PacketConn
	s    *SRTP
	rbuf []byte // one reader at a time
}

func (c *srtpPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(c.rbuf)
		if err != nil {
			return 0, from, err
		}
		out, err := c.s.Unprotect(b, c.rbuf[:n])
		if err != nil {
			continue
		}
		return copy(b, out), from, nil
	}
}

func (c *srtpPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.s.sendMu.Lock()
	defer c.s.sendMu.Unlock()
	out, err := c.s.protectLocked(b)
	if err != nil {
		return 0, err
	}
	if _, err := c.PacketConn.WriteTo(out, to); err != nil {
		return 0, err
	}
	return len(b), nil
}

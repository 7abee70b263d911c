package phone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
)

// LegConfig configures a Leg.
type LegConfig struct {
	// ICE configures the session (servers, policy, network, filters).
	ICE ice.Config
	// LocalIP is the address for a plain RTP socket when the peer does not
	// do ICE. Nil means the address the kernel would use to reach the peer.
	LocalIP net.IP
	// Net opens the plain RTP socket. Nil means the operating system's.
	Net transport.Net
	// Media is the template for the RTP stream: Source, Sink, OnDTMF,
	// Jitter, RTCPInterval. Conn, PacketConn, RemoteAddr, Codec and
	// TelephoneEventPT are set by the Leg from the negotiation.
	Media media.Config
	// SRTP says whether media is encrypted; the zero value is
	// SRTPOptional (see SRTPMode).
	SRTP SRTPMode
	// Logger receives the leg's logs; nil discards them.
	Logger *slog.Logger
}

// Leg is the media half of a call with one peer: one ICE session (or, for
// a peer without ICE, one plain UDP socket with symmetric-RTP latching),
// one RTP stream, and their statistics. The offerer calls Offer,
// SetAnswer, Connect; the answerer Answer, Connect. Re-offers from the
// peer go to HandleOffer; an ICE restart we start is Restart then
// SetAnswer.
type Leg struct {
	cfg         LegConfig
	log         *slog.Logger
	controlling bool

	// mu guards every field below.
	mu        sync.Mutex
	sess      *ice.Session
	pre       *ice.Session // pre-gathered answerer session, see Pregather
	plain     net.PacketConn
	local     *ice.Description // what we last sent
	remote    *ice.Description // what the peer last sent
	codec     media.Codec
	tePT      uint8
	stream    *media.Stream
	route     ice.RouteInfo
	routeOK   bool
	restarts  int
	iceRTT    time.Duration // last ICE check round trip read, for Stats
	pathLost  func()
	closed    bool
	connected bool

	// SRTP state (srtp.go). offered are the a=crypto lines of our last
	// offer; tx and rx the negotiated keys (nil: plain RTP); proto the
	// negotiated m= profile; srtp the transform once media runs.
	offered []ice.Crypto
	tx, rx  *ice.Crypto
	proto   string
	srtp    *media.SRTP
}

// NewLeg creates a leg. The offerer of the session is controlling.
func NewLeg(cfg LegConfig, controlling bool) *Leg {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Leg{cfg: cfg, log: log.With("subsystem", "leg"), controlling: controlling}
}

// OnPathLost registers f, called (from an ICE goroutine; it must not
// block) when the selected pair stops working: disconnected or failed.
func (l *Leg) OnPathLost(f func()) {
	l.mu.Lock()
	l.pathLost = f
	l.mu.Unlock()
}

func (l *Leg) newSession(controlling bool) (*ice.Session, error) {
	s, err := ice.NewSession(l.cfg.ICE, controlling)
	if err != nil {
		return nil, err
	}
	s.OnRouteChange(func(ri ice.RouteInfo) {
		l.mu.Lock()
		l.route, l.routeOK = ri, true
		l.mu.Unlock()
		l.log.Info("media path", "route", ri.Route, "local", ri.LocalType+" "+ri.LocalAddr, "remote", ri.RemoteType+" "+ri.RemoteAddr)
	})
	s.OnStateChange(func(st ice.State) {
		if st != ice.StateDisconnected && st != ice.StateFailed {
			return
		}
		l.mu.Lock()
		f, connected := l.pathLost, l.connected
		l.mu.Unlock()
		if f != nil && connected {
			f()
		}
	})
	return s, nil
}

// Offer gathers candidates and returns our SDP offer.
func (l *Leg) Offer(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	l.mu.Unlock()
	s, err := l.newSession(true)
	if err != nil {
		return nil, err
	}
	loc, err := s.Gather(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("gather candidates: %w", err)
	}
	d := ice.NewAudio()
	if err := d.SetICE(loc); err != nil {
		s.Close()
		return nil, err
	}
	l.mu.Lock()
	err = l.offerCryptoLocked(d)
	l.mu.Unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	body, err := d.Marshal()
	if err != nil {
		s.Close()
		return nil, err
	}
	l.mu.Lock()
	l.sess, l.local = s, d
	l.mu.Unlock()
	return body, nil
}

// errNoICE means the answer came from a peer without ICE.
var errNoICE = errors.New("peer does not do ICE")

// SetAnswer applies the peer's answer to our offer (or re-offer). It
// returns errNoICE if the peer answered without ICE; the caller then
// re-offers plain RTP with PlainOffer.
func (l *Leg) SetAnswer(answer []byte) error {
	d, err := ice.Parse(answer)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	if d.Port == 0 {
		return fmt.Errorf("%w: the peer rejected the audio stream", ErrBadOffer)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.takeCodecLocked(d); err != nil {
		return err
	}
	if err := l.takeAnswerCryptoLocked(d); err != nil {
		return err
	}
	prev := l.remote
	l.remote = d
	if l.plain != nil {
		return l.pointPlainLocked(d)
	}
	if !d.HasICE() {
		return errNoICE
	}
	if prev != nil && prev.Ufrag == d.Ufrag && prev.Pwd == d.Pwd {
		return nil // same ICE generation: nothing to tell the agent
	}
	if d.Lite {
		if err := l.sess.SetRemoteLite(true); err != nil {
			return err
		}
	}
	if err := l.sess.SetRemote(d.Ufrag, d.Pwd, d.Candidates); err != nil && !errors.Is(err, ice.ErrNoCandidates) {
		return err
	}
	return nil
}

// takeCodecLocked picks what we send from the peer's description: the
// first of its codecs we speak, and its telephone-event payload type.
func (l *Leg) takeCodecLocked(d *ice.Description) error {
	c, err := ice.Negotiate(d.Codecs)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	l.codec = media.PCMU
	if c.IsPCMA() {
		l.codec = media.PCMA
	}
	l.tePT = d.TelephoneEvent
	return nil
}

// PlainOffer replaces ICE with one plain UDP socket and returns a new
// offer without ICE attributes, for a peer that answered without ICE.
func (l *Leg) PlainOffer() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		l.sess.Close()
		l.sess = nil
	}
	if err := l.openPlainLocked(l.remote); err != nil {
		return nil, err
	}
	d := ice.NewAudio()
	la := l.plain.LocalAddr().(*net.UDPAddr)
	d.Address, d.Port = la.IP.String(), la.Port
	if l.local != nil {
		d.SessionID, d.SessionVersion = l.local.SessionID, l.local.SessionVersion+1
	}
	// Same keys as the first offer: no packet went out under them yet,
	// and phones without ICE may not take new keys in a re-INVITE
	// (baresip 1.0 keeps decrypting with the first key it got).
	if l.local != nil && len(l.offered) > 0 {
		d.Proto, d.Crypto = l.local.Proto, l.offered
	} else if err := l.offerCryptoLocked(d); err != nil {
		return nil, err
	}
	l.local = d
	return d.Marshal()
}

// Pregather starts an answerer's ICE session and gathers its candidates
// before any offer arrived, so that Answer need not wait for the STUN and
// TURN round trips (a TURN allocation alone is two). Answer uses it for a
// full-ICE offer and discards it otherwise. Pregather returns at once.
func (l *Leg) Pregather() error {
	s, err := l.newSession(false)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed || l.pre != nil || l.sess != nil {
		l.mu.Unlock()
		s.Close()
		return ErrClosed
	}
	l.pre = s
	l.mu.Unlock()
	// The first Gather call starts pion's gathering, which runs on the
	// agent's own goroutines; with a done context it returns at once.
	// Answer's Gather later waits for the same generation to complete.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = s.Gather(ctx)
	return nil
}

// Answer answers the peer's offer: with ICE if the offer has it, else with
// a plain RTP socket.
func (l *Leg) Answer(ctx context.Context, offer []byte) ([]byte, error) {
	od, err := ice.Parse(offer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if err := l.takeCodecLocked(od); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	l.remote = od
	l.mu.Unlock()

	local := ice.NewAudio()
	l.mu.Lock()
	pre := l.pre
	l.pre = nil
	l.mu.Unlock()
	if pre != nil && (!od.HasICE() || od.Lite) {
		pre.Close() // gathered as controlled for a full-ICE peer: no use
		pre = nil
	}
	if od.HasICE() {
		s := pre
		if s == nil {
			// An ICE-lite peer never checks: we must control (RFC 8445 §6.1.1).
			if s, err = l.newSession(od.Lite); err != nil {
				return nil, err
			}
			if od.Lite {
				_ = s.SetRemoteLite(true)
			}
		}
		loc, err := s.Gather(ctx)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("gather candidates: %w", err)
		}
		if err := s.SetRemote(od.Ufrag, od.Pwd, od.Candidates); err != nil && !errors.Is(err, ice.ErrNoCandidates) {
			s.Close()
			return nil, fmt.Errorf("%w: %v", ErrBadOffer, err)
		}
		if err := local.SetICE(loc); err != nil {
			s.Close()
			return nil, err
		}
		l.mu.Lock()
		l.sess = s
		l.mu.Unlock()
	} else {
		l.mu.Lock()
		err := l.openPlainLocked(od)
		if err == nil {
			err = l.pointPlainLocked(od)
		}
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		la := l.plain.LocalAddr().(*net.UDPAddr)
		local.Address, local.Port = la.IP.String(), la.Port
		local.ClearICE()
		l.mu.Unlock()
	}
	l.mu.Lock()
	ours, theirs, err := l.answerCryptoLocked(od, false)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	local.Crypto = ours
	ans, err := ice.NewAnswer(od, local)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	body, err := ans.Marshal()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.local = ans
	err = l.takeOwnAnswerLocked(ans, theirs)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return body, nil
}

// openPlainLocked opens the plain RTP socket on LocalIP, or on the
// address the kernel routes towards the peer's c= address.
func (l *Leg) openPlainLocked(peer *ice.Description) error {
	if l.plain != nil {
		return nil
	}
	n := l.cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			return err
		}
	}
	ip := l.cfg.LocalIP
	if ip == nil && peer != nil {
		if pip := net.ParseIP(peer.Address); pip != nil && !pip.IsUnspecified() {
			if c, err := n.DialUDP("udp4", nil, &net.UDPAddr{IP: pip, Port: 9}); err == nil {
				ip = c.LocalAddr().(*net.UDPAddr).IP
				c.Close()
			}
		}
	}
	if ip == nil {
		ip = net.IPv4zero
	}
	pc, err := n.ListenPacket("udp4", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return fmt.Errorf("open RTP socket: %w", err)
	}
	l.plain = pc
	return nil
}

// pointPlainLocked aims the plain stream at the peer's c=/m=.
func (l *Leg) pointPlainLocked(d *ice.Description) error {
	ip := net.ParseIP(d.Address)
	if ip == nil {
		return fmt.Errorf("%w: c= address %q is not an IP address", ErrBadOffer, d.Address)
	}
	if l.stream != nil && !ip.IsUnspecified() {
		l.stream.SetRemote(&net.UDPAddr{IP: ip, Port: d.Port})
	}
	return nil
}

// Connect runs ICE checks (or nothing, for plain RTP) and starts the RTP
// stream. It returns once media can flow; the first RTP packet from the
// peer is signalled by FirstRTP.
func (l *Leg) Connect(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	s, plain, remote := l.sess, l.plain, l.remote
	tx, rx := l.tx, l.rx
	mc := l.cfg.Media
	mc.Codec, mc.TelephoneEventPT = l.codec, l.tePT
	if mc.Logger == nil {
		mc.Logger = l.log
	}
	l.mu.Unlock()
	if mc.TelephoneEventPT == 0 {
		mc.TelephoneEventPT = media.DefaultTelephoneEventPT
	}
	if tx == nil && l.cfg.SRTP == SRTPMandatory {
		return ErrSRTPRequired // negotiation lets no such call get here
	}
	var sr *media.SRTP
	if tx != nil {
		var err error
		if sr, err = media.NewSRTP(mediaKey(*tx), mediaKey(*rx), mc.Logger); err != nil {
			return err
		}
	}
	if s != nil {
		conn, err := s.Connect(ctx)
		if err != nil {
			if errors.Is(err, ice.ErrFailed) || errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%w: %v", ErrICEFailed, err)
			}
			return err
		}
		mc.Conn = conn
		if sr != nil {
			mc.Conn = sr.Conn(conn)
		}
	} else {
		mc.PacketConn = plain
		if sr != nil {
			mc.PacketConn = sr.PacketConn(plain)
		}
		if ip := net.ParseIP(remote.Address); ip != nil && !ip.IsUnspecified() && remote.Port > 0 {
			mc.RemoteAddr = &net.UDPAddr{IP: ip, Port: remote.Port}
		}
		if !remote.RTCPMux && mc.RemoteAddr != nil {
			// RFC 3550 §11: RTCP on the next port up when not multiplexed.
			mc.RTCPAddr = &net.UDPAddr{IP: mc.RemoteAddr.(*net.UDPAddr).IP, Port: remote.Port + 1}
		}
	}
	st, err := media.New(mc)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.stream, l.connected, l.srtp = st, true, sr
	if sr != nil && l.tx != nil && l.rx != nil && (!sameKey(l.tx, tx) || !sameKey(l.rx, rx)) {
		// A re-offer changed the keys while ICE was still checking.
		_ = sr.SetLocalKey(mediaKey(*l.tx))
		_ = sr.SetRemoteKey(mediaKey(*l.rx))
	}
	l.log.Info("media protection", "encryption", l.encryptionLocked())
	if l.closed {
		l.mu.Unlock()
		st.Close()
		return ErrClosed
	}
	l.mu.Unlock()
	return nil
}

// FirstRTP is closed when the first RTP packet from the peer arrives; nil
// before Connect.
func (l *Leg) FirstRTP() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stream == nil {
		return nil
	}
	return l.stream.FirstPacket()
}

// Stream returns the RTP stream once connected (nil before).
func (l *Leg) Stream() *media.Stream {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stream
}

// HandleOffer answers a re-offer from the peer (re-INVITE): an ICE
// restart when its ICE credentials changed, a new address for a plain
// peer, otherwise (hold, a default-candidate update) our current session
// with the direction answered.
func (l *Leg) HandleOffer(ctx context.Context, offer []byte) ([]byte, error) {
	od, err := ice.Parse(offer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadOffer, err)
	}
	l.mu.Lock()
	s, prev, local := l.sess, l.remote, l.local
	if l.closed || local == nil {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if err := l.takeCodecLocked(od); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	// An ICE restart renews our key (the peer's offer brings its own);
	// anything else keeps it unless the peer changed its own, since
	// phones without ICE may not take new keys mid-call (see PlainOffer).
	restart := s != nil && od.HasICE() && prev != nil && (od.Ufrag != prev.Ufrag || od.Pwd != prev.Pwd)
	ours, theirs, err := l.answerCryptoLocked(od, restart)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	l.remote = od
	if l.plain != nil {
		err := l.pointPlainLocked(od)
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return l.answerWith(od, local, ours, theirs)
	}
	l.mu.Unlock()
	if restart {
		l.log.Info("peer restarts ICE")
		loc, err := s.Restart(ctx)
		if err != nil {
			return nil, fmt.Errorf("ICE restart: %w", err)
		}
		if err := s.SetRemote(od.Ufrag, od.Pwd, od.Candidates); err != nil && !errors.Is(err, ice.ErrNoCandidates) {
			return nil, err
		}
		nl := ice.NewAudio()
		nl.SessionID, nl.SessionVersion = local.SessionID, local.SessionVersion+1
		if err := nl.SetICE(loc); err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.restarts++
		l.mu.Unlock()
		return l.answerWith(od, nl, ours, theirs)
	}
	if s != nil && od.HasICE() {
		// Same generation: the peer may list candidates we had not seen.
		for _, c := range od.Candidates {
			_ = s.AddRemoteCandidate(c)
		}
	}
	return l.answerWith(od, local, ours, theirs)
}

// answerWith derives the answer to offer from our local description and
// the crypto lines answerCryptoLocked chose, and remembers both. mu must
// not be held.
func (l *Leg) answerWith(offer, local *ice.Description, ours []ice.Crypto, theirs *ice.Crypto) ([]byte, error) {
	base := *local
	base.Codecs = ice.NewAudio().Codecs
	base.TelephoneEvent = ice.TelephoneEventPT
	base.Direction = ice.SendRecv
	base.Crypto = ours
	ans, err := ice.NewAnswer(offer, &base)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	body, err := ans.Marshal()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.local = ans
	if err := l.takeOwnAnswerLocked(ans, theirs); err != nil {
		return nil, err
	}
	return body, nil
}

// Restart begins an ICE restart we initiate: new credentials and
// candidates; it returns the re-offer. Pass the peer's answer to SetAnswer.
func (l *Leg) Restart(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	s, local := l.sess, l.local
	l.mu.Unlock()
	if s == nil || local == nil {
		return nil, errors.New("no ICE session to restart")
	}
	loc, err := s.Restart(ctx)
	if err != nil {
		return nil, fmt.Errorf("ICE restart: %w", err)
	}
	d := ice.NewAudio()
	d.SessionID, d.SessionVersion = local.SessionID, local.SessionVersion+1
	if err := d.SetICE(loc); err != nil {
		return nil, err
	}
	// New transport addresses, new keys (RFC 4568 §7.1.4); the answer
	// switches both directions over (SetAnswer).
	l.mu.Lock()
	err = l.offerCryptoLocked(d)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	body, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.local = d
	l.restarts++
	l.mu.Unlock()
	return body, nil
}

// UsesICE reports whether the leg runs ICE (false for a plain RTP peer).
func (l *Leg) UsesICE() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess != nil
}

// Route describes the media path: the selected ICE pair, or for a plain
// peer "direct" host to host, with the remote marked peer-reflexive once
// latching found that its RTP comes from elsewhere than its SDP said.
func (l *Leg) Route() (ice.RouteInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		return l.route, l.routeOK
	}
	if l.plain == nil || l.remote == nil {
		return ice.RouteInfo{}, false
	}
	ri := ice.RouteInfo{Route: ice.RouteDirect, LocalType: "host", RemoteType: "host",
		LocalAddr:  l.plain.LocalAddr().String(),
		RemoteAddr: net.JoinHostPort(l.remote.Address, strconv.Itoa(l.remote.Port))}
	if l.stream != nil {
		if ra := l.stream.RemoteAddr(); ra != nil && ra.String() != ri.RemoteAddr {
			ri.RemoteType, ri.RemoteAddr = "prflx", ra.String()
		}
	}
	return ri, true
}

// Close stops the stream and releases the ICE session or socket. It is
// idempotent.
func (l *Leg) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	st, s, pc, pre := l.stream, l.sess, l.plain, l.pre
	l.pre = nil
	l.mu.Unlock()
	if pre != nil {
		pre.Close()
	}
	if st != nil {
		st.Close()
	}
	if s != nil {
		s.Close()
	}
	if pc != nil {
		pc.Close()
	}
	return nil
}

// HoldOffer returns a re-offer that puts the peer on hold (a=sendonly,
// RFC 3264 §8.4) or takes it off hold (a=sendrecv), with the same ICE
// credentials, so that it is not mistaken for an ICE restart. Pass the
// answer to SetAnswer.
func (l *Leg) HoldOffer(hold bool) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.local == nil {
		return nil, ErrClosed
	}
	d := *l.local
	d.SessionVersion++
	d.Direction = ice.SendRecv
	if hold {
		d.Direction = ice.SendOnly
	}
	// Same transport, same keys: offer the line in use (RFC 4568
	// §7.1.4), so the peer keeps its crypto context.
	d.Crypto, l.offered = nil, nil
	if l.tx != nil {
		d.Crypto = []ice.Crypto{*l.tx}
		l.offered = d.Crypto
	}
	body, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	l.local = &d
	return body, nil
}

// RemoteHolds reports whether the peer's current description puts us on
// hold (sendonly, inactive, or c=0.0.0.0).
func (l *Leg) RemoteHolds() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.remote != nil && l.remote.OnHold()
}

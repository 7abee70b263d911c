package phone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip/ua"
)

// Phone is one SIP account with its media engine.
type Phone struct {
	cfg      Config
	log      *slog.Logger
	ua       *ua.UA
	serverIP net.IP

	mu     sync.Mutex // guards calls and closed
	calls  map[*Call]struct{}
	closed bool
}

// New creates a phone; it does not register yet.
func New(cfg Config) (*Phone, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if _, err := cfg.iceServers(); err != nil {
		return nil, err
	}
	ucfg := ua.Config{
		Server:    cfg.Server,
		Transport: cfg.Transport,
		User:      cfg.User,
		Password:  cfg.Password,
		Domain:    cfg.Realm,
		Net:       cfg.SIPNet,
		KeepAlive: cfg.KeepAlive,
		Logger:    cfg.Logger,
	}
	if ucfg.Net == nil {
		ucfg.Net = cfg.Net
	}
	if cfg.LocalIP != nil {
		ucfg.LocalAddr = cfg.LocalIP.String()
	}
	u, err := ua.New(ucfg)
	if err != nil {
		return nil, err
	}
	p := &Phone{cfg: cfg, log: cfg.Logger.With("subsystem", "phone"), ua: u, calls: map[*Call]struct{}{}}
	if h, _, err := net.SplitHostPort(u.ServerAddr()); err == nil {
		p.serverIP = net.ParseIP(h)
	}
	return p, nil
}

// SIP returns the phone's user agent, for features built on top (the
// conference helper subscribes to rosters through it).
func (p *Phone) SIP() *ua.UA { return p.ua }

// AOR returns the phone's address-of-record, "user@domain".
func (p *Phone) AOR() string { return p.ua.AOR() }

// Register registers with the server and keeps the registration fresh
// until Close.
func (p *Phone) Register(ctx context.Context) error { return p.ua.Register(ctx) }

// MediaOptions say what a call plays and where what it hears goes.
type MediaOptions struct {
	// Source is what we send; nil sends silence.
	Source media.Source
	// Sink receives the played-out audio; nil discards it.
	Sink media.Sink
	// OnDTMF sees received telephone-events.
	OnDTMF func(media.DTMF)
}

// NewLeg returns a leg configured from the phone's settings: the ICE
// servers and policy, local address and network. The conference helper
// runs one per participant.
func (p *Phone) NewLeg(opts MediaOptions, controlling bool) (*Leg, error) {
	return p.newLeg(opts, controlling, p.cfg.SRTP)
}

func (p *Phone) newLeg(opts MediaOptions, controlling bool, mode SRTPMode) (*Leg, error) {
	ic, err := p.cfg.ICEConfig(p.serverIP)
	if err != nil {
		return nil, err
	}
	src := opts.Source
	if src == nil {
		src = media.Silence{}
	}
	return NewLeg(LegConfig{
		ICE:     ic,
		LocalIP: p.cfg.LocalIP,
		Net:     p.cfg.Net,
		Media:   media.Config{Source: src, Sink: opts.Sink, OnDTMF: opts.OnDTMF},
		SRTP:    mode,
		Logger:  p.log,
	}, controlling), nil
}

// Call places a call to target ("bob", "bob@example.org" or a SIP URI)
// and returns it once media is connected. Failures read as one line:
// "call bob@example.org: 480 Temporarily Unavailable: user offline",
// "ICE failed: ...".
func (p *Phone) Call(ctx context.Context, target string, opts MediaOptions) (*Call, error) {
	var start time.Time
	iopts := ua.InviteOptions{
		OnSent: func() {
			if start.IsZero() {
				start = time.Now()
			}
		},
		OnProgress: func(code int, reason string) { p.log.Info("progress", "code", code, "reason", reason) },
	}
	leg, sc, err := p.invite(ctx, target, opts, p.cfg.SRTP, iopts)
	if is488(err) && p.cfg.SRTP == SRTPOptional {
		// A phone that requires SRTP may refuse best-effort SRTP, whose
		// m-line says RTP/AVP (baresip's srtp-mand answers 488): offer
		// RTP/SAVP in a new INVITE. A phone that refused for another
		// reason refuses again.
		p.log.Info("488 to our best-effort SRTP offer; offering RTP/SAVP")
		leg, sc, err = p.invite(ctx, target, opts, SRTPMandatory, iopts)
	}
	if err != nil {
		return nil, p.explain488(err)
	}
	c := p.newCall(sc, leg, start)
	if err := leg.SetAnswer(sc.RemoteSDP()); err != nil {
		if err != errNoICE {
			return nil, c.fail(err)
		}
		// The peer is a plain SIP phone: offer it plain RTP instead.
		p.log.Info("peer answered without ICE; re-offering plain RTP")
		re, err := leg.PlainOffer()
		if err != nil {
			return nil, c.fail(err)
		}
		ans, err := sc.ReInvite(ctx, re)
		if err != nil {
			return nil, c.fail(err)
		}
		if err := leg.SetAnswer(ans); err != nil {
			return nil, c.fail(err)
		}
	}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Answer waits for the next incoming call, answers it and returns it
// once media is connected. A call the caller cancels before we could
// answer (a forked call another of our devices took) does not count: Answer
// goes on waiting.
func (p *Phone) Answer(ctx context.Context, opts MediaOptions) (*Call, error) {
	for {
		c, err := p.answerOne(ctx, opts)
		if errors.Is(err, ua.ErrCanceled) && ctx.Err() == nil {
			p.log.Info("caller gave up before the answer; waiting for the next call", "err", err)
			continue
		}
		return c, err
	}
}

// pregatherFor is how long a pre-gathered leg waits for a call before it
// is replaced by a fresh one: its server-reflexive mapping may lapse in a
// NAT after a minute of silence (the relayed candidate would not, pion
// refreshes the allocation, but a fresh srflx keeps direct calls direct).
const pregatherFor = 45 * time.Second

func (p *Phone) answerOne(ctx context.Context, opts MediaOptions) (*Call, error) {
	var (
		ic  *ua.IncomingCall
		leg *Leg
		err error
	)
	for ic == nil {
		// Gather while waiting, so the answer need not wait for STUN and
		// TURN round trips.
		if leg, err = p.NewLeg(opts, false); err != nil {
			return nil, err
		}
		if err := leg.Pregather(); err != nil {
			p.log.Debug("pre-gather", "err", err)
		}
		wctx, cancel := context.WithTimeout(ctx, pregatherFor)
		ic, err = p.ua.Accept(wctx)
		cancel()
		if err != nil {
			leg.Close()
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				continue // nobody called yet: gather afresh
			}
			return nil, err
		}
	}
	start := time.Now()
	p.log.Info("incoming call", "from", ic.From())
	answer, err := leg.Answer(ctx, ic.Offer())
	if err != nil {
		leg.Close()
		switch {
		case errors.Is(err, ErrSRTPRequired):
			ic.Reject(488, "Not Acceptable Here (SRTP required)")
		case errors.Is(err, ice.ErrUnsupportedTransport) && p.cfg.SRTP == SRTPOff:
			ic.Reject(488, "Not Acceptable Here (SRTP turned off)")
		case errors.Is(err, ErrBadOffer):
			ic.Reject(488, "Not Acceptable Here") // their SDP
		default:
			ic.Reject(503, "Service Unavailable") // our side: no candidates, no socket
		}
		return nil, fmt.Errorf("call from %s: %w", ic.From(), err)
	}
	sc, err := ic.Answer(ctx, answer)
	if err != nil {
		leg.Close()
		return nil, err
	}
	c := p.newCall(sc, leg, start)
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Phone) newCall(sc *ua.Call, leg *Leg, start time.Time) *Call {
	c := &Call{p: p, sip: sc, leg: leg, start: start, firstRTP: make(chan struct{}), done: make(chan struct{}),
		restartC: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	sc.OnReInvite(leg.HandleOffer)
	leg.OnPathLost(func() {
		select {
		case c.restartC <- struct{}{}:
		default:
		}
	})
	p.mu.Lock()
	p.calls[c] = struct{}{}
	n := len(p.calls)
	p.mu.Unlock()
	if n == 1 {
		p.ua.SetKeepAlive(p.cfg.KeepAliveInCall)
	}
	return c
}

func (p *Phone) forget(c *Call) {
	p.mu.Lock()
	delete(p.calls, c)
	n := len(p.calls)
	p.mu.Unlock()
	if n == 0 {
		p.ua.SetKeepAlive(0)
	}
}

// Close hangs up every call, unregisters and stops. It is idempotent.
func (p *Phone) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	calls := make([]*Call, 0, len(p.calls))
	for c := range p.calls {
		calls = append(calls, c)
	}
	p.mu.Unlock()
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c.Hangup(ctx)
		cancel()
	}
	return p.ua.Close()
}

// invite offers a new leg with SRTP mode to target; on failure the leg is
// closed.
func (p *Phone) invite(ctx context.Context, target string, opts MediaOptions, mode SRTPMode, iopts ua.InviteOptions) (*Leg, *ua.Call, error) {
	leg, err := p.newLeg(opts, true, mode)
	if err != nil {
		return nil, nil, err
	}
	offer, err := leg.Offer(ctx)
	if err != nil {
		leg.Close()
		return nil, nil, err
	}
	sc, err := p.ua.Invite(ctx, target, offer, iopts)
	if err != nil {
		leg.Close()
		return nil, nil, err
	}
	return leg, sc, nil
}

func is488(err error) bool {
	var se *ua.StatusError
	return errors.As(err, &se) && se.Code == 488
}

// explain488 adds what a 488 to our INVITE most likely means given our
// SRTP setting: the other phone refuses what we offered.
func (p *Phone) explain488(err error) error {
	var se *ua.StatusError
	if !errors.As(err, &se) || se.Code != 488 {
		return err
	}
	switch p.cfg.SRTP {
	case SRTPMandatory:
		return fmt.Errorf("%w (we offered only SRTP-encrypted media, RTP/SAVP, because of --srtp mandatory; the other phone does not take it)", err)
	case SRTPOff:
		return fmt.Errorf("%w (we offered unencrypted media because of --srtp off; the other phone may require SRTP)", err)
	}
	return fmt.Errorf("%w (the other phone took neither our codecs, PCMU/PCMA, nor our media transport, plain or SRTP)", err)
}

// routeOf maps a leg's route to the stats' fields.
func routeOf(l *Leg) ice.RouteInfo {
	ri, _ := l.Route()
	return ri
}

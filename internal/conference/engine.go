package conference

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip/focus"
	"github.com/punchline/punchline/sip/ua"
)

// Config configures a conference participant.
type Config struct {
	// UA is the participant's registered SIP user agent. The engine places
	// and takes the legs' calls with it and is the only caller of its
	// Accept while it runs. Its MaxCalls must allow one call per other
	// participant. Required.
	UA *ua.UA
	// Server, Transport, User, Password and Domain reach the room's focus
	// for the roster subscription (normally the same as the UA's).
	Server, Transport, User, Password, Domain string
	// Room is the room name without "room-". Required.
	Room string
	// PIN is the room PIN, if any.
	PIN string
	// UploadKbps is the participant's upload budget; 0 = unlimited.
	UploadKbps int
	// ICE configures each leg's ICE session (servers, policy, network).
	ICE ice.Config
	// Source is what we say; nil sends silence.
	Source media.Source
	// Sink receives the mix of everyone else every 20 ms; nil discards.
	Sink media.Sink
	// ListenPacket opens the UDP socket towards the server's media port
	// (bridge or forwarder). Default net.ListenPacket.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// LocalIP is where that socket binds. Default: all addresses.
	LocalIP string
	// Log is the logger; nil discards.
	Log *slog.Logger
}

// Engine is one participant in a room. Join starts it; Close leaves.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	sub     *Subscriber
	me      string
	mySSRC  uint32
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards every field below.
	mu        sync.Mutex
	legs      map[string]*leg
	pending   map[string]bool
	users     map[string]focus.User // roster, by user name (not us)
	mySeq     uint64
	inRoster  bool
	plan      focus.Plan
	everyone  []string // mesh users including us, join order
	hasBridge bool
	ssrcUser  map[uint32]string
	counters  map[string]*seqCounter
	server    *serverLeg
	rosterCh  chan struct{} // closed and replaced on every roster change
	forwarded map[string]bool
	closed    bool

	// departed keeps the last statistics of participants who left.
	departed map[string]PeerStats
	// lastLeg is the most recent leg with each peer, kept after it ends
	// so that statistics still name its route.
	lastLeg map[string]*leg

	pktsSent    atomic.Uint64
	serverBytes atomic.Uint64
	doneUpload  atomic.Uint64
}

// leg is our call with one other participant.
type leg struct {
	peer   string
	call   *ua.Call
	sess   *ice.Session
	stream *media.Stream
	route  ice.RouteInfo
	setup  time.Duration
	closed atomic.Bool
}

func (l *leg) close() {
	if l.closed.Swap(true) {
		return
	}
	if l.call != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.call.Hangup(ctx) //nolint:errcheck // best effort: the peer may be gone.
		cancel()
	}
	if l.stream != nil {
		l.stream.Close()
	}
	if l.sess != nil {
		l.sess.Close()
	}
}

// serverLeg is our plain RTP stream with the server's media port.
type serverLeg struct {
	// keepalive is our token packet (focus.MediaKeepalive).
	keepalive []byte
	addr      string
	raddr     *net.UDPAddr
	pc        net.PacketConn
	stream    *media.Stream
}

func (s *serverLeg) close() {
	s.stream.Close()
	s.pc.Close()
}

// Join subscribes to the room and starts the engine's goroutines: roster
// handling, taking incoming legs, and the 20 ms media clock.
func Join(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.UA == nil || cfg.Room == "" || cfg.User == "" {
		return nil, errors.New("join: UA, user and room are required")
	}
	if err := focus.ValidRoomName(cfg.Room); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenPacket == nil {
		cfg.ListenPacket = net.ListenPacket
	}
	sub, err := Subscribe(ctx, SubscriberConfig{
		Server: cfg.Server, Transport: cfg.Transport, User: cfg.User, Password: cfg.Password,
		Domain: cfg.Domain, Room: cfg.Room, PIN: cfg.PIN, UploadKbps: cfg.UploadKbps, Log: cfg.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("join room-%s: %w", cfg.Room, err)
	}
	ectx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, log: cfg.Log.With("subsystem", "conference", "room", cfg.Room, "user", cfg.User),
		sub: sub, me: cfg.User, mySSRC: focus.SSRCFor(cfg.User), started: time.Now(),
		ctx: ectx, cancel: cancel,
		legs: map[string]*leg{}, pending: map[string]bool{}, users: map[string]focus.User{},
		ssrcUser: map[uint32]string{}, counters: map[string]*seqCounter{},
		rosterCh: make(chan struct{}), forwarded: map[string]bool{},
		departed: map[string]PeerStats{},
		lastLeg:  map[string]*leg{},
	}
	e.wg.Add(3)
	go e.rosterLoop()
	go e.acceptLoop()
	go e.mediaLoop()
	return e, nil
}

// Close leaves the room: unsubscribes, hangs up every leg and waits for
// the engine's goroutines. It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.sub.Close()
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	legs := e.legs
	e.legs = map[string]*leg{}
	srv := e.server
	e.server = nil
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.close()
		}()
	}
	wg.Wait()
	if srv != nil {
		srv.close()
	}
	return nil
}

// Abandon stops the engine the way a crash would: no unsubscribe, no BYE,
// media just stops. The focus and the other participants must notice on
// their own; tests use it.
func (e *Engine) Abandon() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.sub.Abandon()
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	legs := e.legs
	e.legs = map[string]*leg{}
	srv := e.server
	e.server = nil
	e.mu.Unlock()
	for _, l := range legs {
		l.call = nil // no BYE
		l.close()
	}
	if srv != nil {
		srv.close()
	}
}

// Members returns the current roster as user names, us included, in join
// order.
func (e *Engine) Members() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.everyone...)
}

// RosterChanged is closed at the next roster change.
func (e *Engine) RosterChanged() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rosterCh
}

func userOf(u focus.User) string {
	if u.DisplayText != "" {
		return u.DisplayText
	}
	s := strings.TrimPrefix(strings.TrimPrefix(u.Entity, "sips:"), "sip:")
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *Engine) rosterLoop() {
	defer e.wg.Done()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-e.sub.Updates():
		}
		if ci := e.sub.Roster(); ci != nil {
			e.reconcile(ci)
		}
	}
}

// reconcile brings legs, plan and server stream in line with a roster.
func (e *Engine) reconcile(ci *focus.ConferenceInfo) {
	var toDial []string
	var toClose []*leg
	var oldServer *serverLeg
	newServer := ""

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	users := map[string]focus.User{}
	var leaving []peerItem
	var peers []focus.Peer
	var everyone []string
	hasBridge := false
	inRoster := false
	myForwarder := ""
	for _, u := range ci.Users {
		name := userOf(u)
		if u.State == focus.StateDeleted {
			continue
		}
		bridge := u.Kind == focus.KindBridge
		peers = append(peers, focus.Peer{User: name, Seq: u.Seq, UploadKbps: u.UploadKbps, Bridge: bridge})
		if bridge {
			hasBridge = true
		} else {
			everyone = append(everyone, name)
		}
		if name == e.me {
			inRoster = true
			e.mySeq = u.Seq
			myForwarder = u.Forwarder
			continue
		}
		users[name] = u
	}
	for name, u := range e.users {
		if _, still := users[name]; !still {
			it := e.peerItemLocked(name, u)
			leaving = append(leaving, it)
			// A first record at once, so that a Stats call before the full
			// one below does not miss the participant.
			ps := e.peerStatsFrom(it, false)
			ps.Left = true
			e.departed[name] = ps
		}
	}
	e.users = users
	e.everyone = everyone
	e.hasBridge = hasBridge
	e.inRoster = inRoster
	e.plan = focus.MakePlan(peers)
	e.ssrcUser = map[uint32]string{}
	for name := range users {
		e.ssrcUser[focus.SSRCFor(name)] = name
		if e.counters[name] == nil {
			e.counters[name] = &seqCounter{}
		}
	}
	for name := range e.plan.Routes {
		if e.plan.Routes[name].Via == e.me {
			e.forwarded[name] = true
		}
	}
	for name, l := range e.legs {
		if _, ok := users[name]; !ok {
			toClose = append(toClose, l)
			delete(e.legs, name)
		}
	}
	if inRoster {
		for name, u := range users {
			if u.Kind == focus.KindBridge {
				continue
			}
			if e.legs[name] == nil && !e.pending[name] && e.mySeq > u.Seq {
				e.pending[name] = true
				toDial = append(toDial, name)
			}
		}
	}
	if e.server != nil && e.server.addr != myForwarder {
		oldServer = e.server
		e.server = nil
	}
	if myForwarder != "" && e.server == nil {
		newServer = myForwarder
	}
	close(e.rosterCh)
	e.rosterCh = make(chan struct{})
	e.mu.Unlock()

	for _, it := range leaving {
		ps := e.peerStats(it)
		ps.Left = true
		e.mu.Lock()
		e.departed[it.user] = ps
		e.mu.Unlock()
	}
	for _, l := range toClose {
		e.log.Info("peer left", "peer", l.peer)
		e.goOwned(func() { e.retire(l) })
	}
	if oldServer != nil {
		oldServer.close()
	}
	if newServer != "" {
		if err := e.openServer(newServer); err != nil {
			e.log.Warn("server media port", "addr", newServer, "err", err)
		}
	}
	for _, name := range toDial {
		e.goOwned(func() { e.dial(name) })
	}
}

func (e *Engine) goOwned(f func()) {
	e.mu.Lock()
	if e.closed && e.ctx.Err() != nil {
		e.mu.Unlock()
		f()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		f()
	}()
}

func (e *Engine) stillPeer(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.users[name]
	return ok && !e.closed
}

// dial sets up our leg with an earlier joiner, retrying a few times: the
// peer's phone may answer 486 while it is taking another newcomer's INVITE.
func (e *Engine) dial(peer string) {
	defer func() {
		e.mu.Lock()
		delete(e.pending, peer)
		e.mu.Unlock()
	}()
	for attempt := 0; attempt < 6 && e.ctx.Err() == nil && e.stillPeer(peer); attempt++ {
		if attempt > 0 {
			select {
			case <-e.ctx.Done():
				return
			case <-time.After(time.Duration(150*attempt) * time.Millisecond):
			}
		}
		l, err := e.dialLeg(peer)
		if err != nil {
			e.log.Info("leg failed", "peer", peer, "attempt", attempt+1, "err", err)
			continue
		}
		if !e.addLeg(l) {
			l.close()
		}
		return
	}
}

func (e *Engine) newStream(peer string, conn net.Conn) (*media.Stream, error) {
	return media.New(media.Config{
		Conn:   conn,
		Codec:  media.PCMU,
		SSRC:   e.mySSRC,
		CNAME:  e.me + "@" + e.cfg.Domain,
		OnRTP:  func(pkt *rtp.Packet) { e.onRTP(peer, pkt) },
		Logger: e.log,
	})
}

func (e *Engine) dialLeg(peer string) (*leg, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	sess, err := ice.NewSession(e.cfg.ICE, true)
	if err != nil {
		return nil, err
	}
	l := &leg{peer: peer, sess: sess}
	local, err := sess.Gather(ctx)
	if err != nil {
		l.close()
		return nil, err
	}
	d := ice.NewAudio()
	d.SessionName = e.legMarker()
	if err := d.SetICE(local); err != nil {
		l.close()
		return nil, err
	}
	offer, err := d.Marshal()
	if err != nil {
		l.close()
		return nil, err
	}
	call, err := e.cfg.UA.Invite(ctx, peer, offer, ua.InviteOptions{})
	if err != nil {
		l.close()
		return nil, err
	}
	l.call = call
	ans, err := ice.Parse(call.RemoteSDP())
	if err != nil {
		l.close()
		return nil, fmt.Errorf("answer from %s: %w", peer, err)
	}
	if err := e.connect(ctx, l, ans, start); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (e *Engine) connect(ctx context.Context, l *leg, remote *ice.Description, start time.Time) error {
	if !remote.HasICE() {
		return fmt.Errorf("leg with %s: peer offers no ICE", l.peer)
	}
	if err := l.sess.SetRemote(remote.Ufrag, remote.Pwd, remote.Candidates); err != nil {
		return err
	}
	conn, err := l.sess.Connect(ctx)
	if err != nil {
		return fmt.Errorf("leg with %s: %w", l.peer, err)
	}
	l.setup = time.Since(start)
	if ri, err := l.sess.Route(); err == nil {
		l.route = ri
	}
	st, err := e.newStream(l.peer, conn)
	if err != nil {
		return err
	}
	l.stream = st
	e.log.Info("leg up", "peer", l.peer, "route", l.route.Route, "local", l.route.LocalType, "remote", l.route.RemoteType, "setup", l.setup)
	return nil
}

// addLeg installs an established leg and watches it; false if the engine
// or the peer is gone meanwhile.
func (e *Engine) addLeg(l *leg) bool {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	if _, ok := e.users[l.peer]; !ok {
		e.mu.Unlock()
		return false
	}
	old := e.legs[l.peer]
	e.legs[l.peer] = l
	e.lastLeg[l.peer] = l
	e.mu.Unlock()
	if old != nil {
		e.goOwned(func() { e.retire(old) })
	}
	l.sess.OnRouteChange(func(ri ice.RouteInfo) {
		e.mu.Lock()
		l.route = ri
		e.mu.Unlock()
	})
	// A leg whose every path failed is hung up; the later joiner of the
	// pair then sets it up again from scratch (fresh candidates, so a
	// relay if the direct path is gone for good).
	l.sess.OnStateChange(func(st ice.State) {
		if st == ice.StateFailed && !l.closed.Load() {
			e.log.Info("leg failed, hanging up", "peer", l.peer)
			e.goOwned(func() {
				ctx, cancel := context.WithTimeout(e.ctx, time.Second)
				defer cancel()
				l.call.Hangup(ctx) //nolint:errcheck // watch cleans up either way.
			})
		}
	})
	e.goOwned(func() { e.watch(l) })
	return true
}

// watch removes a leg whose call ended (the peer hung up or vanished) and
// lets the roster decide whether to set it up again.
func (e *Engine) watch(l *leg) {
	select {
	case <-e.ctx.Done():
		return
	case <-l.call.Done():
	}
	e.mu.Lock()
	mine := e.legs[l.peer] == l
	if mine {
		delete(e.legs, l.peer)
	}
	e.mu.Unlock()
	e.retire(l)
	if mine {
		e.log.Info("leg ended", "peer", l.peer)
		if ci := e.sub.Roster(); ci != nil {
			e.reconcile(ci)
		}
	}
}

func (e *Engine) acceptLoop() {
	defer e.wg.Done()
	for {
		ic, err := e.cfg.UA.Accept(e.ctx)
		if err != nil {
			return
		}
		e.goOwned(func() { e.answer(ic) })
	}
}

// answer takes a leg INVITE from a later joiner. The INVITE may arrive
// before the NOTIFY that lists the newcomer, so it waits for the roster a
// little before refusing a caller who is not in the room.
func (e *Engine) answer(ic *ua.IncomingCall) {
	peer := ic.From()
	if i := strings.IndexByte(peer, '@'); i >= 0 {
		peer = peer[:i]
	}
	offer, err := ice.Parse(ic.Offer())
	if err != nil || offer.SessionName != e.legMarker() {
		// Not a leg of this room: a phone in a room takes no other calls.
		ic.Reject(486, "Busy Here (In A Conference)") //nolint:errcheck
		return
	}
	deadline := time.After(5 * time.Second)
	for {
		e.mu.Lock()
		u, ok := e.users[peer]
		ready := ok && e.inRoster && u.Seq > e.mySeq && u.Kind != focus.KindBridge
		ch := e.rosterCh
		e.mu.Unlock()
		if ready {
			break
		}
		select {
		case <-ch:
			continue
		case <-ic.Canceled():
			return
		case <-deadline:
		case <-e.ctx.Done():
		}
		ic.Reject(403, "Not In Room") //nolint:errcheck // nothing else to do.
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	if !offer.HasICE() {
		ic.Reject(488, "Not Acceptable Here") //nolint:errcheck
		return
	}
	sess, err := ice.NewSession(e.cfg.ICE, false)
	if err != nil {
		ic.Reject(500, "ICE") //nolint:errcheck
		return
	}
	l := &leg{peer: peer, sess: sess}
	local, err := sess.Gather(ctx)
	if err != nil {
		l.close()
		ic.Reject(500, "ICE") //nolint:errcheck
		return
	}
	d := ice.NewAudio()
	if err := d.SetICE(local); err != nil {
		l.close()
		ic.Reject(500, "ICE") //nolint:errcheck
		return
	}
	ans, err := ice.NewAnswer(offer, d)
	if err != nil {
		l.close()
		ic.Reject(488, "Not Acceptable Here") //nolint:errcheck
		return
	}
	body, err := ans.Marshal()
	if err != nil {
		l.close()
		ic.Reject(500, "SDP") //nolint:errcheck
		return
	}
	call, err := ic.Answer(ctx, body)
	if err != nil {
		l.close()
		return
	}
	l.call = call
	if err := e.connect(ctx, l, offer, start); err != nil {
		e.log.Info("leg failed", "peer", peer, "err", err)
		l.close()
		return
	}
	if !e.addLeg(l) {
		l.close()
	}
}

// legMarker is the SDP session name (s=) of a room leg's offer: it marks
// the INVITE as a leg of this room for the answering participant. It rides
// in the SDP, which punchline's proxy never rewrites, so no SIP extension
// header has to survive the path.
func (e *Engine) legMarker() string {
	return "punchline " + focus.RoomPrefix + e.cfg.Room
}

// onRTP sees every packet a leg (or the server stream, peer "") accepts:
// it counts the speaker's packets and, as a supernode, forwards the
// streams the plan routes through us.
func (e *Engine) onRTP(peer string, pkt *rtp.Packet) {
	e.mu.Lock()
	speaker, known := e.ssrcUser[pkt.SSRC]
	ctr := e.counters[speaker]
	var fwd []*leg
	if known && speaker == peer && e.plan.Routes[speaker].Via == e.me {
		for name, l := range e.legs {
			if name != speaker && l.stream != nil {
				fwd = append(fwd, l)
			}
		}
	}
	e.mu.Unlock()
	if ctr != nil && pkt.PayloadType != 101 {
		ctr.add(pkt.SequenceNumber)
	}
	for _, l := range fwd {
		l.stream.WriteRTP(pkt) //nolint:errcheck // a dead leg is cleaned up by watch.
	}
}

func (e *Engine) openServer(addr string) error {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	pc, err := e.cfg.ListenPacket("udp", net.JoinHostPort(e.cfg.LocalIP, "0"))
	if err != nil {
		return err
	}
	st, err := media.New(media.Config{
		PacketConn:      pc,
		RemoteAddr:      raddr,
		DisableLatching: true,
		Codec:           media.PCMU,
		SSRC:            e.mySSRC,
		CNAME:           e.me + "@" + e.cfg.Domain,
		OnRTP:           func(pkt *rtp.Packet) { e.onRTP("", pkt) },
		Logger:          e.log,
	})
	if err != nil {
		pc.Close()
		return err
	}
	// Tell the port where we are before anything else: it forwards to us
	// only once it has heard from us.
	ka := focus.MediaKeepalive(e.sub.MediaToken())
	pc.WriteTo(ka, raddr) //nolint:errcheck // repeated every second.
	s := &serverLeg{addr: addr, raddr: raddr, pc: pc, stream: st, keepalive: ka}
	e.mu.Lock()
	if e.closed || e.server != nil {
		e.mu.Unlock()
		s.close()
		return nil
	}
	e.server = s
	e.mu.Unlock()
	e.log.Info("server media port", "addr", addr)
	return nil
}

// mediaLoop is the 20 ms clock: read our frame, encode it once, send the
// payload on every leg the plan says, then mix what every leg plays out.
func (e *Engine) mediaLoop() {
	defer e.wg.Done()
	// A deadline clock rather than a Ticker: a Ticker drops ticks when the
	// loop runs late (a busy machine), and every dropped tick would be a
	// lost packet on every leg. Late ticks are caught up, up to 200 ms
	// (the peers' jitter buffers absorb the burst); after a longer stall
	// the clock jumps, as a sound card would.
	const frame = 20 * time.Millisecond
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	pcm := make([]int16, media.FrameSamples)
	tmp := make([]int16, media.FrameSamples)
	mix := make([]int32, media.FrameSamples)
	out := make([]int16, media.FrameSamples)
	var payload []byte
	srcDone := e.cfg.Source == nil
	tick := 0
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-timer.C:
		}
		next = next.Add(frame)
		if late := time.Since(next); late > 10*frame {
			next = time.Now().Add(frame)
		}
		timer.Reset(time.Until(next))
		tick++
		if srcDone {
			clear(pcm)
		} else if err := e.cfg.Source.ReadFrame(pcm); err != nil {
			if !errors.Is(err, io.EOF) {
				e.log.Warn("audio source", "err", err)
			}
			srcDone = true
			clear(pcm)
		}
		payload = media.PCMU.Encode(payload[:0], pcm)

		e.mu.Lock()
		var sendTo, all []*leg
		sends := e.plan.Sends(e.me, e.everyone)
		for _, name := range sends {
			if l := e.legs[name]; l != nil && l.stream != nil {
				sendTo = append(sendTo, l)
			}
		}
		for _, l := range e.legs {
			if l.stream != nil {
				all = append(all, l)
			}
		}
		srv := e.server
		toServer := srv != nil && (e.hasBridge || e.plan.Routes[e.me].Via == focus.Server)
		e.mu.Unlock()

		for _, l := range sendTo {
			if err := l.stream.SendPayload(media.PCMU, payload); err == nil {
				e.pktsSent.Add(1)
			}
		}
		if srv != nil {
			if toServer {
				if err := srv.stream.SendPayload(media.PCMU, payload); err == nil {
					e.pktsSent.Add(1)
					e.serverBytes.Add(uint64(len(payload) + 12))
				}
			}
			// Every second, even while RTP flows: the port takes RTP only
			// from where the token last came from, so a NAT rebinding is
			// followed within a second.
			if tick%50 == 0 {
				if n, err := srv.pc.WriteTo(srv.keepalive, srv.raddr); err == nil {
					e.serverBytes.Add(uint64(n))
				}
			}
		}

		clear(mix)
		for _, l := range all {
			if l.stream.PopFrame(tmp) != media.FrameSilent {
				for i, s := range tmp {
					mix[i] += int32(s)
				}
			}
		}
		if srv != nil && srv.stream.PopFrame(tmp) != media.FrameSilent {
			for i, s := range tmp {
				mix[i] += int32(s)
			}
		}
		if e.cfg.Sink != nil {
			for i, v := range mix {
				out[i] = clamp(v)
			}
			if err := e.cfg.Sink.WriteFrame(out); err != nil {
				e.log.Warn("audio sink", "err", err)
			}
		}
	}
}

func clamp(v int32) int16 {
	switch {
	case v > 32767:
		return 32767
	case v < -32768:
		return -32768
	}
	return int16(v)
}

// peerItem is what Stats needs about one peer, taken under e.mu.
type peerItem struct {
	user  string
	kind  string
	leg   *leg
	route focus.Route
	ri    ice.RouteInfo
	ctr   *seqCounter
}

func (e *Engine) peerItemLocked(name string, u focus.User) peerItem {
	it := peerItem{user: name, kind: u.Kind, leg: e.legs[name], route: e.plan.Routes[name], ctr: e.counters[name]}
	if it.leg == nil {
		it.leg = e.lastLeg[name]
	}
	if it.leg != nil {
		it.ri = it.leg.route
	}
	return it
}

// peerStats computes one peer's statistics; it calls into the leg's ICE
// session, so e.mu must not be held.
func (e *Engine) peerStats(it peerItem) PeerStats {
	return e.peerStatsFrom(it, true)
}

// peerStatsFrom computes one peer's statistics, with the ICE session's
// figures (RTT, bytes) only if withSession: without them it is safe under
// e.mu (pion's callbacks take e.mu, so calling into pion under it could
// deadlock).
func (e *Engine) peerStatsFrom(it peerItem, withSession bool) PeerStats {
	ps := PeerStats{User: it.user}
	var rtt time.Duration
	if it.leg != nil {
		ps.LocalCandidateType, ps.RemoteCandidateType = it.ri.LocalType, it.ri.RemoteType
		ps.SetupMS = it.leg.setup.Milliseconds()
	}
	if withSession && it.leg != nil && it.leg.sess != nil {
		is := it.leg.sess.Stats()
		rtt = is.RTT
		ps.BytesSent, ps.BytesReceived = is.BytesSent, is.BytesReceived
	}
	switch {
	case it.kind == focus.KindBridge || it.route.Via == focus.Server:
		ps.Route, ps.Via = RouteForwarded, focus.Server
	case it.route.Via != "" && it.route.Via != e.me:
		ps.Route, ps.Via = RouteForwarded, it.route.Via
	case it.leg != nil && it.ri.Route == ice.RouteRelayed:
		ps.Route = RouteRelayed
	case it.leg != nil:
		ps.Route = RouteDirect
	}
	if it.ctr != nil {
		ps.RTPPacketsReceived, ps.LossFraction = it.ctr.snapshot()
	}
	ps.RTTMS = float64(rtt.Microseconds()) / 1000
	ps.MOS = mos(rtt, ps.LossFraction)
	return ps
}

// retire closes a leg, keeping what it sent in the upload total.
func (e *Engine) retire(l *leg) {
	if l.sess != nil {
		e.doneUpload.Add(l.sess.Stats().BytesSent)
	}
	l.close()
}

// Stats reports every participant we shared the room with (those who
// left with Left set and their figures from when they left) and our
// upload.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	st := Stats{Room: e.cfg.Room, User: e.me, DurationMS: time.Since(e.started).Milliseconds()}
	var items []peerItem
	for name, u := range e.users {
		items = append(items, e.peerItemLocked(name, u))
	}
	for name, ps := range e.departed {
		if _, back := e.users[name]; !back {
			st.Peers = append(st.Peers, ps)
		}
	}
	legs := make([]*leg, 0, len(e.legs))
	for _, l := range e.legs {
		legs = append(legs, l)
	}
	for u := range e.forwarded {
		st.ForwardedFor = append(st.ForwardedFor, u)
	}
	e.mu.Unlock()
	sort.Strings(st.ForwardedFor)

	for _, it := range items {
		st.Peers = append(st.Peers, e.peerStats(it))
	}
	sortPeers(st.Peers)
	up := e.doneUpload.Load()
	for _, l := range legs {
		if l.sess != nil {
			up += l.sess.Stats().BytesSent
		}
	}
	up += e.serverBytes.Load()
	st.UploadBytes = up
	st.RTPPacketsSent = e.pktsSent.Load()
	if d := time.Since(e.started).Seconds(); d > 0 {
		st.UploadKbps = float64(up) * 8 / 1000 / d
	}
	return st
}

// Package focus is punchline's conference focus: the part of `punchline
// serve` that owns rooms (sip:room-NAME@REALM), keeps each room's roster and
// tells participants who is in it, so they can build a peer-to-peer mesh of
// pairwise ICE calls between themselves.
//
// Signaling (RFC 6665 event framework, RFC 4575 conference event package):
//
//   - A participant joins by sending SUBSCRIBE to the room URI with
//     "Event: conference". The server authenticates it first (digest, like
//     any request from a user) and hands the request to Focus.Handle with the
//     authenticated user name. Optional request headers:
//     X-Punchline-Pin (the room PIN; the first joiner of an unconfigured
//     room sets it) and X-Punchline-Upload-Kbps (the upload budget the
//     participant declares for the uplink rule).
//   - The focus grants at most Config.SubscriptionTTL (4 s by default) and
//     the participant refreshes at half of it. A participant whose refresh
//     does not arrive in time, or whose NOTIFY fails, is dropped from the
//     roster; Expires: 0 leaves the room at once.
//   - Every change of a room's roster is sent to each subscriber as a
//     NOTIFY carrying a full application/conference-info+xml document
//     (RFC 4575) with punchline's mesh extension per user: join sequence
//     number, kind (mesh or bridge), upload budget and, where one is
//     assigned, the server media port for that participant.
//
// Media: when every pair of mesh participants reaches each other, the
// focus carries no media at all. It carries media only for two kinds of
// participant, through one UDP port per participant that needs it (see
// hub.go): plain SIP phones that called the room URI with INVITE (the
// focus answers, bridges them: mixes the room for them and passes their
// audio on), and uplink-limited participants for which no supernode has
// spare upload (the focus forwards their single stream to the others).
// Bytes through those ports are counted per room in Prometheus metrics.
package focus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Header names of punchline's room extensions.
const (
	// HeaderPIN carries a room PIN on SUBSCRIBE or INVITE to a room.
	HeaderPIN = "X-Punchline-Pin"
	// HeaderUploadKbps carries a participant's upload budget on SUBSCRIBE.
	HeaderUploadKbps = "X-Punchline-Upload-Kbps"
	// HeaderRoom marks an INVITE between two participants as a leg of the
	// named room's mesh (value: the room name). The proxy routes it like
	// any call; the answering phone uses it to attach the leg to the room
	// instead of treating it as a new call.
	HeaderRoom = "X-Punchline-Room"
)

// Defaults.
const (
	// DefaultSubscriptionTTL is the longest subscription the focus grants.
	// Short, because a subscription that is not refreshed is how the focus
	// learns that a participant vanished: with refreshes every 2 s, a
	// crashed participant is gone from the roster at most 5 s (TTL plus 1 s
	// of grace) after its last refresh, well inside the 10 s the design
	// promises even on a loaded machine. The cost is one SUBSCRIBE (and its
	// digest challenge) per participant every 2 s.
	DefaultSubscriptionTTL = 4 * time.Second
	// notifyTimeout bounds one NOTIFY transaction. A subscriber that does
	// not answer within it is treated as gone (RFC 6665 §4.2.2 lets a
	// notifier end a subscription whose NOTIFY fails).
	notifyTimeout = 3 * time.Second
	// sweepInterval is how often expired memberships are looked for.
	sweepInterval = 250 * time.Millisecond
)

// Config configures a Focus.
type Config struct {
	// Realm is the SIP domain of room and user URIs. Default "punchline".
	Realm string
	// Client sends the focus's own requests (NOTIFY). The server passes the
	// client that shares its transports, so that NOTIFY leaves from the SIP
	// port the subscriber sent SUBSCRIBE to (the subscriber's NAT lets
	// replies from there in) and reuses TCP connections. It may be set
	// after New with SetClient, as the server's client exists only once the
	// server (which needs the focus as its room handler) does; until then
	// no NOTIFY is sent.
	Client *sipgo.Client
	// ContactHost and ContactPort are written into the focus's Contact
	// header (the server's own SIP address). Default: the local address
	// the SUBSCRIBE arrived on is not known to the focus, so ContactHost
	// defaults to "127.0.0.1" and ContactPort to 5060.
	ContactHost string
	ContactPort int
	// PINs fixes PINs for rooms by name (without "room-").
	PINs map[string]string
	// SubscriptionTTL is the longest subscription granted. Default
	// DefaultSubscriptionTTL.
	SubscriptionTTL time.Duration
	// MaxParticipants bounds each room. Default 32.
	MaxParticipants int
	// MediaIP is the address the focus's media ports (bridge, forwarder)
	// listen on and advertise. Default "127.0.0.1".
	MediaIP string
	// AdvertiseIP, if set, is written into SDP and roster instead of
	// MediaIP (the server behind a 1:1 NAT).
	AdvertiseIP string
	// ListenPacket opens media sockets. Default net.ListenPacket.
	ListenPacket func(network, address string) (net.PacketConn, error)
	// Metrics receives the focus's metrics. Nil means not registered.
	Metrics prometheus.Registerer
	// RelayBytes, if set, returns the bytes the TURN relay has relayed so
	// far per authenticated user name. The focus polls it every second and
	// attributes each member's growth to its room
	// (punchline_conference_relay_bytes_total{room}): a TURN allocation does
	// not know which call it serves, but in a room its user's relayed bytes
	// are the room's (a user in a room and in another call at once would be
	// counted to the room).
	RelayBytes func() map[string]uint64
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

func (c *Config) validate() error {
	if c.Realm == "" {
		c.Realm = "punchline"
	}
	if c.ContactHost == "" {
		c.ContactHost = "127.0.0.1"
	}
	if c.ContactPort == 0 {
		c.ContactPort = 5060
	}
	if c.SubscriptionTTL <= 0 {
		c.SubscriptionTTL = DefaultSubscriptionTTL
	}
	if c.MediaIP == "" {
		c.MediaIP = "127.0.0.1"
	}
	if c.AdvertiseIP == "" {
		c.AdvertiseIP = c.MediaIP
	}
	if c.ListenPacket == nil {
		c.ListenPacket = net.ListenPacket
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// subscription is one participant's SUBSCRIBE dialog.
type subscription struct {
	room, user string
	callID     string
	// remoteTag is the subscriber's From tag, localTag our To tag.
	remoteTag, localTag string
	// target is the subscriber's Contact URI (the NOTIFY request-URI).
	target sip.Uri
	// source and transport are where the SUBSCRIBE really came from; NOTIFY
	// goes there (the Contact may name a private address behind a NAT).
	source, transport string
	// cseq and version are owned by the notify path (guarded by Focus.mu).
	cseq    uint32
	version uint32
}

// Focus is the conference focus. Create it with New, feed it requests for
// room URIs with Handle, stop it with Close.
type Focus struct {
	cfg    Config
	roster *Roster
	log    *slog.Logger
	met    *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards subs, hubs, bridges and closed.
	mu      sync.Mutex
	subs    map[string]*subscription // by Call-ID
	hubs    map[string]*hub          // by room
	bridges map[string]*bridgeCall   // by Call-ID
	closed  bool

	// relaySeen is the last RelayBytes snapshot (owned by sweepLoop).
	relaySeen map[string]uint64

	// kick wakes the notifier for a room.
	kick    chan string
	pending map[string]bool // guarded by mu; rooms waiting for a NOTIFY round
}

// New starts a focus. It owns two goroutines (expiry sweep, notifier)
// until Close.
func New(cfg Config) (*Focus, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Focus{
		cfg: cfg,
		roster: NewRoster(RosterConfig{
			Realm:           cfg.Realm,
			PINs:            cfg.PINs,
			MaxParticipants: cfg.MaxParticipants,
		}),
		log:     cfg.Log.With("subsystem", "focus"),
		ctx:     ctx,
		cancel:  cancel,
		subs:    map[string]*subscription{},
		hubs:    map[string]*hub{},
		bridges: map[string]*bridgeCall{},
		kick:    make(chan string, 1),
		pending: map[string]bool{},
	}
	f.met = newMetrics(f)
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(f.met); err != nil {
			cancel()
			return nil, fmt.Errorf("focus metrics: %w", err)
		}
	}
	f.wg.Add(2)
	go f.sweepLoop()
	go f.notifyLoop()
	return f, nil
}

// SetClient sets the client NOTIFYs are sent with.
func (f *Focus) SetClient(c *sipgo.Client) {
	f.mu.Lock()
	f.cfg.Client = c
	f.mu.Unlock()
}

// SetContact sets the host and port written into the focus's Contact
// header, for servers that learn their bound address only after the
// focus was created.
func (f *Focus) SetContact(host string, port int) {
	f.mu.Lock()
	f.cfg.ContactHost, f.cfg.ContactPort = host, port
	f.mu.Unlock()
}

// Roster exposes the room state (read-only use).
func (f *Focus) Roster() *Roster { return f.roster }

// Close ends every subscription and bridge, closes media ports and waits
// for the focus's goroutines. It is idempotent.
func (f *Focus) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	hubs := f.hubs
	f.hubs = map[string]*hub{}
	f.mu.Unlock()
	f.cancel()
	for _, h := range hubs {
		h.close()
	}
	f.wg.Wait()
	if f.cfg.Metrics != nil {
		f.cfg.Metrics.Unregister(f.met)
	}
	return nil
}

// IsRoomRequest reports whether req is addressed to a room: its
// request-URI user part is room-NAME. The server calls Handle for those.
func IsRoomRequest(req *sip.Request) bool {
	_, err := RoomName(req.Recipient.User)
	return err == nil
}

// HandleRoom processes one request addressed to a room (it implements the
// SIP server's RoomHandler). user is the
// authenticated user name; the server must have authenticated SUBSCRIBE
// and INVITE (rooms need an authenticated user) and passes "" for requests
// it does not challenge (ACK, CANCEL, BYE, in-dialog requests), which the
// focus matches to its dialogs by Call-ID instead.
func (f *Focus) HandleRoom(req *sip.Request, tx sip.ServerTransaction, user string) {
	name, err := RoomName(req.Recipient.User)
	if err != nil {
		f.respond(req, tx, 404, "Not Found", nil)
		return
	}
	switch req.Method {
	case sip.SUBSCRIBE:
		f.handleSubscribe(name, req, tx, user)
	case sip.INVITE:
		f.handleInvite(name, req, tx, user)
	case sip.ACK:
		// The 2xx ACK of a bridge call: nothing to do, media already flows.
	case sip.BYE:
		f.handleBye(req, tx)
	case sip.CANCEL:
		f.respond(req, tx, 200, "OK", nil)
	case sip.OPTIONS:
		f.respond(req, tx, 200, "OK", nil, sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE"))
	default:
		f.respond(req, tx, 405, "Method Not Allowed", nil, sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE"))
	}
}

func (f *Focus) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if tx != nil {
		if err := tx.Respond(res); err != nil {
			f.log.Debug("respond", "method", req.Method, "code", code, "err", err)
		}
	}
	return res
}

func (f *Focus) contact(room string) *sip.ContactHeader {
	f.mu.Lock()
	host, port := f.cfg.ContactHost, f.cfg.ContactPort
	f.mu.Unlock()
	return &sip.ContactHeader{Address: sip.Uri{
		Scheme: "sip",
		User:   RoomPrefix + room,
		Host:   host,
		Port:   port,
	}}
}

func headerValue(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

// pinOf returns the PIN a request carries: the X-Punchline-Pin header, or a
// "pin" URI parameter for phones that can only dial a URI.
func pinOf(req *sip.Request) string {
	if v := headerValue(req, HeaderPIN); v != "" {
		return v
	}
	if req.Recipient.UriParams != nil {
		if v, ok := req.Recipient.UriParams.Get("pin"); ok {
			return v
		}
	}
	return ""
}

func (f *Focus) handleSubscribe(room string, req *sip.Request, tx sip.ServerTransaction, user string) {
	if user == "" {
		// Rooms need an authenticated user; the server challenges first.
		f.respond(req, tx, 403, "Forbidden", nil)
		return
	}
	ev := headerValue(req, "Event")
	if i := strings.IndexByte(ev, ';'); i >= 0 {
		ev = ev[:i]
	}
	if !strings.EqualFold(strings.TrimSpace(ev), EventPackage) {
		f.respond(req, tx, 489, "Bad Event", nil, sip.NewHeader("Allow-Events", EventPackage))
		return
	}
	ttl := f.cfg.SubscriptionTTL
	if h := req.GetHeader("Expires"); h != nil {
		secs, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || secs < 0 {
			f.respond(req, tx, 400, "Bad Expires", nil)
			return
		}
		if d := time.Duration(secs) * time.Second; d < ttl {
			ttl = d
		}
	}
	upload := 0
	if v := headerValue(req, HeaderUploadKbps); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			f.respond(req, tx, 400, "Bad "+HeaderUploadKbps, nil)
			return
		}
		upload = n
	}
	callID := ""
	if req.CallID() != nil {
		callID = req.CallID().Value()
	}
	from := req.From()
	if callID == "" || from == nil {
		f.respond(req, tx, 400, "Missing Call-ID or From", nil)
		return
	}
	fromTag, _ := from.Params.Get("tag")

	toTag, inDialog := req.To().Params.Get("tag")

	f.mu.Lock()
	sub := f.subs[callID]
	if sub != nil && (sub.user != user || sub.room != room) {
		f.mu.Unlock()
		f.respond(req, tx, 403, "Forbidden", nil)
		return
	}
	if inDialog && (sub == nil || toTag != sub.localTag || fromTag != sub.remoteTag) {
		// A refresh of a subscription we no longer have (it expired, or
		// its NOTIFY failed): RFC 6665 §4.2.1.2 says 481, and the
		// subscriber starts a new one.
		f.mu.Unlock()
		f.respond(req, tx, 481, "Subscription Does Not Exist", nil)
		return
	}
	f.mu.Unlock()

	if ttl == 0 {
		// Unsubscribe: leave now (RFC 6665 §4.1.2.3).
		f.respond(req, tx, 200, "OK", nil, sip.NewHeader("Expires", "0"), f.contact(room))
		if sub != nil {
			f.endSubscription(sub, "unsubscribed")
		} else if f.roster.Leave(room, user) {
			f.schedule(room)
		}
		return
	}

	now := f.cfg.Now()
	// The membership outlives the subscription by a little so that a
	// refresh arriving just on time is not a leave and rejoin.
	member, changed, err := f.roster.Join(room, JoinRequest{User: user, Kind: KindMesh, UploadKbps: upload, PIN: pinOf(req), TTL: ttl + time.Second}, now)
	switch {
	case errors.Is(err, ErrWrongPIN):
		f.respond(req, tx, 403, "Wrong Room PIN", nil)
		return
	case errors.Is(err, ErrRoomFull):
		f.respond(req, tx, 486, "Room Full", nil)
		return
	case err != nil:
		f.respond(req, tx, 400, "Bad Room", nil)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(ttl/time.Second))))
	res.AppendHeader(f.contact(room))
	res.AppendHeader(sip.NewHeader(HeaderMediaToken, member.Token))
	toTag, _ = res.To().Params.Get("tag")

	target := from.Address
	if c := req.Contact(); c != nil {
		target = c.Address
	}
	f.mu.Lock()
	if sub == nil {
		// One member, one subscription: a new dialog of the same user
		// (its phone re-subscribed, or restarted) replaces older ones.
		// Left in place, an old one would end the membership the moment
		// a NOTIFY to it is refused (481 from the new dialog's phone).
		for id, old := range f.subs {
			if old.room == room && old.user == user {
				delete(f.subs, id)
			}
		}
		sub = &subscription{room: room, user: user, callID: callID, remoteTag: fromTag, localTag: toTag}
		f.subs[callID] = sub
		f.log.Info("joined", "room", room, "user", user, "source", req.Source())
	}
	sub.target = target
	sub.source = req.Source()
	sub.transport = req.Transport()
	f.mu.Unlock()
	if err := tx.Respond(res); err != nil {
		f.log.Debug("respond subscribe", "err", err)
	}
	f.updateMedia(room)
	if changed {
		f.schedule(room)
	} else {
		// RFC 6665 §4.2.1.2: a refresh is answered by a NOTIFY too. Only
		// the refreshing subscriber gets it.
		f.scheduleSub(sub)
	}
}

// endSubscription removes a subscription, its member and tells the others.
func (f *Focus) endSubscription(sub *subscription, why string) {
	f.mu.Lock()
	if f.subs[sub.callID] != sub {
		f.mu.Unlock()
		return
	}
	delete(f.subs, sub.callID)
	f.mu.Unlock()
	if f.roster.Leave(sub.room, sub.user) {
		f.log.Info("left", "room", sub.room, "user", sub.user, "why", why)
		f.updateMedia(sub.room)
		f.schedule(sub.room)
	}
}

// schedule asks the notifier to send the room's roster to every subscriber.
func (f *Focus) schedule(room string) {
	f.mu.Lock()
	f.pending[room] = true
	f.mu.Unlock()
	select {
	case f.kick <- room:
	default:
	}
}

// scheduleSub sends the current roster to one subscriber, off the caller's
// goroutine.
func (f *Focus) scheduleSub(sub *subscription) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		f.notify(sub, false)
	}()
}

func (f *Focus) sweepLoop() {
	defer f.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		if f.cfg.RelayBytes != nil && tick%4 == 0 {
			f.attributeRelayBytes()
		}
		for _, d := range f.roster.Expire(f.cfg.Now()) {
			f.log.Info("left", "room", d.Room, "user", d.User, "why", "subscription expired")
			f.mu.Lock()
			for id, s := range f.subs {
				if s.room == d.Room && s.user == d.User {
					delete(f.subs, id)
				}
			}
			f.mu.Unlock()
			f.dropBridgeOf(d.Room, d.User)
			f.updateMedia(d.Room)
			f.schedule(d.Room)
		}
	}
}

// attributeRelayBytes adds each room member's relayed-bytes growth since
// the last poll to its room.
func (f *Focus) attributeRelayBytes() {
	snap := f.cfg.RelayBytes()
	if f.relaySeen == nil {
		f.relaySeen = snap
		return
	}
	for _, room := range f.roster.Rooms() {
		var delta uint64
		for _, m := range f.roster.Members(room) {
			now, before := snap[m.User], f.relaySeen[m.User]
			if now > before {
				delta += now - before
			}
		}
		if delta > 0 {
			f.met.room(room).relay.Add(delta)
		}
	}
	f.relaySeen = snap
}

func (f *Focus) notifyLoop() {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.kick:
		}
		f.mu.Lock()
		rooms := make([]string, 0, len(f.pending))
		for r := range f.pending {
			rooms = append(rooms, r)
		}
		f.pending = map[string]bool{}
		f.mu.Unlock()
		for _, r := range rooms {
			f.notifyRoom(r)
		}
	}
}

// notifyRoom sends the roster to every subscriber of the room in parallel
// and waits for their answers.
func (f *Focus) notifyRoom(room string) {
	f.mu.Lock()
	var subs []*subscription
	for _, s := range f.subs {
		if s.room == room {
			subs = append(subs, s)
		}
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.notify(s, false)
		}()
	}
	wg.Wait()
}

// notify sends one NOTIFY with the room's full state. A subscriber that
// answers with an error or not at all is dropped from the room.
func (f *Focus) notify(s *subscription, terminated bool) {
	f.mu.Lock()
	if f.subs[s.callID] != s && !terminated {
		f.mu.Unlock()
		return
	}
	s.cseq++
	s.version++
	cseq, version := s.cseq, s.version
	target, source, transport := s.target, s.source, s.transport
	client := f.cfg.Client
	f.mu.Unlock()
	if client == nil {
		return
	}

	body, err := f.roster.Info(s.room, version).Marshal()
	if err != nil {
		f.log.Error("roster encode", "room", s.room, "err", err)
		return
	}
	req := sip.NewRequest(sip.NOTIFY, target)
	fromURI := sip.Uri{Scheme: "sip", User: RoomPrefix + s.room, Host: f.cfg.Realm}
	from := &sip.FromHeader{Address: fromURI, Params: sip.NewParams()}
	from.Params.Add("tag", s.localTag)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: s.user, Host: f.cfg.Realm}, Params: sip.NewParams()}
	to.Params.Add("tag", s.remoteTag)
	callID := sip.CallIDHeader(s.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(f.contact(s.room))
	req.AppendHeader(sip.NewHeader("Event", EventPackage))
	state := "active;expires=" + strconv.Itoa(int(f.cfg.SubscriptionTTL/time.Second))
	if terminated {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", ContentType))
	req.SetBody(body)
	req.SetDestination(source)
	req.SetTransport(transport)

	ctx, cancel := context.WithTimeout(f.ctx, notifyTimeout)
	defer cancel()
	res, err := client.Do(ctx, req)
	switch {
	case err != nil && f.ctx.Err() != nil:
		return
	case err != nil:
		f.log.Info("notify failed", "room", s.room, "user", s.user, "err", err)
		if !terminated {
			f.endSubscription(s, "notify failed")
		}
	case res.StatusCode >= 300:
		f.log.Info("notify refused", "room", s.room, "user", s.user, "status", res.StatusCode)
		if !terminated {
			f.endSubscription(s, "notify refused")
		}
	}
}

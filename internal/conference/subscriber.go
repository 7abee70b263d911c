package conference

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

	"github.com/punchline/punchline/sip/focus"
)

// SubscriberConfig configures a roster subscription.
type SubscriberConfig struct {
	// Server is the SIP server "host:port". Required.
	Server string
	// Transport is "udp" (default) or "tcp".
	Transport string
	// User and Password are the account's credentials. User is required.
	User, Password string
	// Domain is the SIP domain (realm) of room and user URIs. Default: the
	// host of Server.
	Domain string
	// Room is the room name (without "room-"). Required.
	Room string
	// PIN is the room PIN, if the room has one.
	PIN string
	// UploadKbps is the upload budget to declare; 0 = unlimited.
	UploadKbps int
	// Expires is the subscription lifetime to ask for. Default 4 s (the
	// focus grants at most its SubscriptionTTL); refreshes go out at half
	// the granted time.
	Expires time.Duration
	// Log is the logger; nil discards.
	Log *slog.Logger
}

// Subscriber holds one participant's subscription to a room's roster: the
// join itself. It refreshes the subscription until Close (which leaves the
// room) and delivers every roster the focus NOTIFYs.
type Subscriber struct {
	cfg    SubscriberConfig
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client

	// pc is our own UDP socket (nil over TCP); laddr names it for sipgo's
	// connection pool. Owning it means Close ends its read goroutine for
	// sure: a socket sipgo opens itself is closed by reference counting,
	// which can go negative under retransmissions, and then nothing closes
	// it (its reader outlives the subscriber).
	pc        net.PacketConn
	laddr     sip.Addr
	serveDone chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the dialog state and latest.
	mu      sync.Mutex
	callID  string
	fromTag string
	toTag   string
	// target is the focus's Contact from the last 2xx: the Request-URI
	// of requests inside the subscription's dialog.
	target  *sip.Uri
	cseq    uint32
	granted time.Duration
	latest  *focus.ConferenceInfo
	// latestDialog is the Call-ID of the subscription latest came from.
	latestDialog string
	token        string
	updates      chan struct{}
	closeOnce    sync.Once
	lastErr      error
}

// Subscribe joins the room: it sends the authenticated SUBSCRIBE and
// returns once the focus accepted it. The first roster arrives on Updates
// shortly after.
func Subscribe(ctx context.Context, cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.Server == "" || cfg.User == "" || cfg.Room == "" {
		return nil, errors.New("subscribe: server, user and room are required")
	}
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	if cfg.Domain == "" {
		host, _, err := net.SplitHostPort(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("subscribe: server %q: %w", cfg.Server, err)
		}
		cfg.Domain = host
	}
	if cfg.Expires <= 0 {
		cfg.Expires = focus.DefaultSubscriptionTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// s is set below, before the socket is served (the filter only runs
	// then).
	var s *Subscriber
	filter := func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		return s.readFilter(props, data)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(cfg.User), sipgo.WithUserAgentHostname(cfg.Domain),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(filter)))
	if err != nil {
		return nil, err
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		ua.Close()
		return nil, err
	}
	// rport (RFC 3581): behind a NAT that changes our port (symmetric), the
	// server must answer where the SUBSCRIBE came from, not to the port in
	// our Via.
	client, err := sipgo.NewClient(ua, sipgo.WithClientNAT())
	if err != nil {
		ua.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s = &Subscriber{
		cfg: cfg, log: cfg.Log.With("subsystem", "conference", "room", cfg.Room),
		ua: ua, srv: srv, client: client,
		ctx: sctx, cancel: cancel,
		callID:  sip.GenerateTagN(24),
		fromTag: sip.GenerateTagN(12),
		cseq:    1,
		updates: make(chan struct{}, 1),
	}
	srv.OnNotify(s.onNotify)
	if cfg.Transport == "udp" {
		if err := s.listenUDP(); err != nil {
			s.shutdown()
			return nil, err
		}
	}
	granted, err := s.subscribe(ctx, cfg.Expires)
	if err != nil {
		s.shutdown()
		return nil, err
	}
	s.mu.Lock()
	s.granted = granted
	s.mu.Unlock()
	s.wg.Add(1)
	go s.refreshLoop()
	return s, nil
}

// Updates signals that a newer roster is available from Roster.
func (s *Subscriber) Updates() <-chan struct{} { return s.updates }

// Roster returns the latest roster (nil before the first NOTIFY).
func (s *Subscriber) Roster() *focus.ConferenceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// MediaToken returns the secret the focus gave us for our server media
// port ("" before the first answer).
func (s *Subscriber) MediaToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Err returns the last refresh error (the subscription may have ended).
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Subscriber) roomURI() sip.Uri {
	return sip.Uri{Scheme: "sip", User: focus.RoomPrefix + s.cfg.Room, Host: s.cfg.Domain}
}

// subscribe sends one SUBSCRIBE (initial, refresh or, with expires 0,
// unsubscribe) and returns the granted lifetime.
func (s *Subscriber) subscribe(ctx context.Context, expires time.Duration) (time.Duration, error) {
	host, portStr, err := net.SplitHostPort(s.cfg.Server)
	if err != nil {
		return 0, err
	}
	port, _ := strconv.Atoi(portStr)
	s.mu.Lock()
	s.cseq++
	cseq := s.cseq
	toTag := s.toTag
	callID := sip.CallIDHeader(s.callID)
	fromTag := s.fromTag
	ruri := s.roomURI()
	if toTag != "" && s.target != nil {
		// Inside the dialog, requests go to the focus's Contact, the
		// remote target (RFC 3261 §12.2.1.1); the server still carries
		// them.
		ruri = *s.target
	}
	s.mu.Unlock()

	req := sip.NewRequest(sip.SUBSCRIBE, ruri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: s.cfg.User, Host: s.cfg.Domain}, Params: sip.NewParams()}
	from.Params.Add("tag", fromTag)
	to := &sip.ToHeader{Address: s.roomURI(), Params: sip.NewParams()}
	// Refreshes and the unsubscribe go inside the subscription's dialog,
	// with the focus's To tag (RFC 6665 §4.1.2.1). They are still sent to
	// the server (the destination below), which authenticates them and
	// hands them to the focus.
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: s.cfg.User, Host: s.cfg.Domain}})
	req.AppendHeader(sip.NewHeader("Event", focus.EventPackage))
	req.AppendHeader(sip.NewHeader("Accept", focus.ContentType))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	if s.cfg.PIN != "" {
		req.AppendHeader(sip.NewHeader(focus.HeaderPIN, s.cfg.PIN))
	}
	if s.cfg.UploadKbps > 0 {
		req.AppendHeader(sip.NewHeader(focus.HeaderUploadKbps, strconv.Itoa(s.cfg.UploadKbps)))
	}
	req.SetTransport(s.cfg.Transport)
	req.SetDestination(net.JoinHostPort(host, strconv.Itoa(port)))
	if s.pc != nil {
		s.laddr.Copy(&req.Laddr)
	}

	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := s.client.Do(tctx, req)
	if err != nil {
		return 0, fmt.Errorf("subscribe room-%s: %w", s.cfg.Room, err)
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		// The digest retry is a new transaction with CSeq+1 (sipgo bumps it).
		res, err = s.client.DoDigestAuth(tctx, req, res, sipgo.DigestAuth{Username: s.cfg.User, Password: s.cfg.Password})
		if err != nil {
			return 0, fmt.Errorf("subscribe room-%s: %w", s.cfg.Room, err)
		}
		s.mu.Lock()
		if c := req.CSeq(); c != nil && c.SeqNo > s.cseq {
			s.cseq = c.SeqNo
		}
		s.mu.Unlock()
	}
	if res.StatusCode == 481 && toTag != "" {
		return 0, fmt.Errorf("subscribe room-%s: %w", s.cfg.Room, errSubscriptionGone)
	}
	if !res.IsSuccess() {
		return 0, fmt.Errorf("subscribe room-%s: %d %s", s.cfg.Room, res.StatusCode, res.Reason)
	}
	if t, ok := res.To().Params.Get("tag"); ok {
		s.mu.Lock()
		s.toTag = t
		if c := res.Contact(); c != nil && c.Address.Host != "" {
			u := sip.Uri{Scheme: c.Address.Scheme, User: c.Address.User, Host: c.Address.Host, Port: c.Address.Port}
			if u.Scheme == "" {
				u.Scheme = "sip"
			}
			s.target = &u
		}
		s.mu.Unlock()
	}
	if h := res.GetHeader(focus.HeaderMediaToken); h != nil {
		s.mu.Lock()
		s.token = strings.TrimSpace(h.Value())
		s.mu.Unlock()
	}
	granted := expires
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil && n >= 0 {
			granted = time.Duration(n) * time.Second
		}
	}
	return granted, nil
}

func (s *Subscriber) refreshLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		wait := s.granted / 2
		s.mu.Unlock()
		if wait < 500*time.Millisecond {
			wait = 500 * time.Millisecond
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		g, err := s.subscribe(s.ctx, s.cfg.Expires)
		if errors.Is(err, errSubscriptionGone) {
			// The focus ended our subscription (it expired, or a NOTIFY to
			// us failed): join again at once in a new dialog.
			s.log.Info("roster subscription ended by the focus, subscribing again")
			s.newDialog()
			g, err = s.subscribe(s.ctx, s.cfg.Expires)
		}
		s.mu.Lock()
		s.lastErr = err
		if err == nil {
			s.granted = g
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("roster refresh failed", "err", err)
		}
	}
}

// errSubscriptionGone is a 481 to a refresh: the focus no longer has our
// subscription.
var errSubscriptionGone = errors.New("481 subscription does not exist")

// newDialog forgets the ended subscription's dialog; the next SUBSCRIBE
// starts a new one.
func (s *Subscriber) newDialog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callID = sip.GenerateTagN(24)
	s.fromTag = sip.GenerateTagN(12)
	s.toTag = ""
	s.target = nil
	s.cseq = 1
}

func (s *Subscriber) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	code, reason := s.takeNotify(req)
	tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)) //nolint:errcheck // the focus retransmits.
}

// takeNotify takes a NOTIFY's roster and returns the status to answer.
func (s *Subscriber) takeNotify(req *sip.Request) (int, string) {
	s.mu.Lock()
	callID := s.callID
	s.mu.Unlock()
	if req.CallID() == nil || req.CallID().Value() != callID {
		return 481, "Subscription Does Not Exist"
	}
	ci, err := focus.ParseConferenceInfo(req.Body())
	if err != nil {
		return 400, "Bad Conference Info"
	}
	s.mu.Lock()
	// RFC 4575 §4.6: drop documents older than what we have. Equal versions
	// carry the same full state and are harmless.
	// Versions count per subscription: a new dialog starts again at 1.
	if s.latest != nil && s.latestDialog == callID && ci.Version < s.latest.Version {
		s.mu.Unlock()
		return 200, "OK"
	}
	s.latest = ci
	s.latestDialog = callID
	s.mu.Unlock()
	select {
	case s.updates <- struct{}{}:
	default:
	}
	return 200, "OK"
}

// readFilter sees every datagram on our UDP socket, in the socket's read
// goroutine, before sipgo does. It answers requests (NOTIFY, and 405 to
// anything else) itself, straight from the socket, and passes only
// responses on to sipgo's client transactions. sipgo would handle a
// request in a goroutine of its own that can outlive Close and, finding
// the socket gone from its pool, open a new one that nothing closes.
func (s *Subscriber) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if s.pc == nil || len(data) < 4 || string(data[:4]) == "SIP/" {
		// Over TCP sipgo answers on the connection (srv.OnNotify).
		return data, nil
	}
	msg, err := sip.ParseMessage(data)
	if err != nil {
		return nil, nil // not SIP, or broken: nothing to answer
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return data, nil
	}
	if req.IsAck() {
		return nil, nil
	}
	req.SetSource(props.RemoteAddr.String())
	code, reason := 405, "Method Not Allowed"
	if req.Method == sip.NOTIFY {
		code, reason = s.takeNotify(req)
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if _, err := s.pc.WriteTo([]byte(res.String()), props.RemoteAddr); err != nil {
		s.log.Debug("answer", "method", req.Method, "err", err)
	}
	return nil, nil
}

// Close leaves the room (SUBSCRIBE with Expires: 0) and stops. It is
// idempotent.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.subscribe(ctx, 0)
		cancel()
		if err != nil {
			s.log.Debug("unsubscribe", "err", err)
		}
		s.shutdown()
	})
	return nil
}

// Abandon stops refreshing without telling the focus, as a crashed phone
// would; tests use it to show that the focus notices on its own.
func (s *Subscriber) Abandon() {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.shutdown()
	})
}

func (s *Subscriber) shutdown() {
	s.cancel()
	s.client.Close()
	s.srv.Close()
	s.ua.Close()
	if s.pc != nil {
		s.pc.Close()
		<-s.serveDone
	}
}

// listenUDP opens our SIP socket on an ephemeral port of every address
// and serves it; requests are sent from it (req.Laddr), so the focus's
// NOTIFYs, which go where our SUBSCRIBE came from (rport), arrive on it.
func (s *Subscriber) listenUDP() error {
	network := "udp4"
	if host, _, err := net.SplitHostPort(s.cfg.Server); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			network = "udp6"
		}
	}
	pc, err := net.ListenPacket(network, ":0")
	if err != nil {
		return fmt.Errorf("subscribe: open sip socket: %w", err)
	}
	la := pc.LocalAddr().(*net.UDPAddr)
	s.pc = pc
	s.laddr = sip.Addr{IP: la.IP, Port: la.Port, Hostname: la.IP.String()}
	s.serveDone = make(chan struct{})
	tp := s.ua.TransportLayer()
	go func() {
		defer close(s.serveDone)
		// ServeUDP returns when the socket closes (shutdown).
		_ = tp.ServeUDP(pc)
	}()
	// sipgo's pool learns the socket from ServeUDP's goroutine; a request
	// sent before that would open a second socket of its own.
	for i := 0; i < 2000; i++ {
		if c, _ := tp.GetConnection("udp", pc.LocalAddr().String()); c != nil {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("subscribe: sip socket did not come up")
}

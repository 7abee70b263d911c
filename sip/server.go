package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Server is the registrar and proxy. Create it with New, bind and serve
// with Start (or Serve), stop it with Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	loc     *location
	nonces  *nonceKeeper
	limit   *limiter
	users   *userCache
	replies *replyCache
	// registerFn is wrap(handleRegister) and requestFn
	// wrap(handleRequest), built once.
	registerFn, requestFn sipgo.RequestHandler
	// macs sign the branches of statelessly forwarded requests.
	macs    *macPool
	metrics *serverMetrics
	// methodCounters are metrics.transactions for the known methods;
	// written in New only.
	methodCounters map[siplib.RequestMethod]prometheus.Counter
	// tokenKey signs Record-Route flow tokens.
	tokenKey []byte

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	txl *siplib.TransactionLayer
	tpl *siplib.TransportLayer

	mu sync.Mutex
	// started, closed and the fields below are guarded by mu.
	started, closed bool
	bound           []BoundListener
	closers         []func() error
	// local maps a lower-case transport to our advertised host:port on it,
	// used in Via and Record-Route.
	local map[string]hostPort
	// udpLocal maps a UDP listener's LocalAddr string to its Addr, so
	// requests to a flow leave from the socket the flow came in on.
	udpLocal map[string]siplib.Addr
	// udpConns maps the same keys to the sockets, for keepalive pings.
	udpConns map[string]net.PacketConn
	// doors are the UDP listeners' front doors.
	doors    []*frontDoor
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	flushMu  sync.Mutex
	stopOnce sync.Once
}

// init adjusts process-wide sipgo settings, once, before any
// goroutine can be using sipgo (so there is no data race with running
// user agents or servers, as there would be if New wrote them).
//
// sipgo refuses to send UDP messages within 200 bytes of its assumed
// 1500-byte MTU (RFC 3261 §18.1.1 would switch to TCP). A NAT'd phone can
// only be reached over the UDP flow it registered, and INVITEs carrying ICE
// candidates are often larger than 1300 bytes, so the proxy sends them
// over UDP anyway (IP fragments them), as Kamailio does.
//
// RFC 3261 keeps a completed non-INVITE server transaction for Timer J
// (64*T1 = 32 s) to absorb retransmissions. At thousands of requests a
// second that holds hundreds of thousands of parsed messages and their
// timers, and garbage collection of that heap limits the server.
// Retransmissions come T1-doubling apart, nearly all within a few seconds;
// Kamailio's tm holds completed transactions 5 s (wt_timer). Use the same.
//
// The same holds for INVITE transactions after their final response:
// RFC 6026 keeps the server transaction "Accepted" for Timer L and the
// client transaction for Timer M (both 64*T1) after a 2xx, and RFC 3261
// keeps a client transaction "Completed" for Timer D (32 s) after a
// non-2xx. At 2,000 calls/s that is 64,000 calls' parsed INVITEs and
// responses held at any moment (over a gigabyte), and the garbage
// collector's marking of them takes one of two CPUs for long stretches,
// long enough for callers to retransmit. A 2xx the callee retransmits
// after its client transaction is gone is still relayed (strayResponse);
// an INVITE retransmitted after its caller got a 2xx is not a thing.
//
// Neither change harms another user of sipgo in the same process (the
// softphone): larger UDP messages are still sent, and a user agent's
// transactions only stop absorbing retransmissions earlier.
func init() {
	if siplib.UDPMTUSize < 65000 {
		siplib.UDPMTUSize = 65000
	}
	for _, t := range []*time.Duration{&siplib.Timer_J, &siplib.Timer_L, &siplib.Timer_M, &siplib.Timer_D} {
		if *t > nonInviteLinger {
			*t = nonInviteLinger
		}
	}
}

// nonInviteLinger is how long a completed non-INVITE server transaction
// absorbs retransmissions (see New).
const nonInviteLinger = 5 * time.Second

// udpSocketBuffer is the receive and send buffer asked for on UDP
// listeners.
const udpSocketBuffer = 4 << 20

type hostPort struct {
	host string
	port int
}

// BoundListener is a listener after Start: its real address.
type BoundListener struct {
	Transport string
	Addr      net.Addr
}

// New checks cfg and prepares a server; nothing is bound until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("subsystem", "sip"),
		loc:      newLocation(),
		limit:    newLimiter(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst),
		users:    newUserCache(cfg.Store),
		replies:  newReplyCache(),
		local:    make(map[string]hostPort),
		udpLocal: make(map[string]siplib.Addr),
		udpConns: make(map[string]net.PacketConn),
	}
	secret, err := cfg.Store.Secret("sip")
	if err != nil {
		return nil, fmt.Errorf("sip: secret: %w", err)
	}
	s.tokenKey = secret
	s.macs = newMACPool(secret)
	s.nonces = newNonceKeeper(secret, cfg.NonceLifetime)
	if s.metrics, err = newMetrics(cfg.Metrics, func() float64 { return float64(s.loc.total()) }); err != nil {
		return nil, fmt.Errorf("sip: metrics: %w", err)
	}
	stored, err := cfg.Store.Bindings()
	if err != nil {
		return nil, fmt.Errorf("sip: load bindings: %w", err)
	}
	n := s.loc.load(stored, time.Now())
	s.log.Info("registrations loaded", "bindings", n)

	// sipgo logs through its own logger; give it ours, at warn level, so
	// that per-message noise stays out of operator logs.
	sipLog := s.log.With("component", "sipgo")
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentTransportLayerOptions(siplib.WithTransportLayerLogger(
			slog.New(udpParseFilter{Handler: sipLog.Handler(), malformed: s.metrics.malformed}))),
		sipgo.WithUserAgentTransactionLayerOptions(
			siplib.WithTransactionLayerLogger(sipLog),
			siplib.WithTransactionLayerUnhandledResponseHandler(s.strayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip: %w", err)
	}
	s.ua, s.srv = ua, srv
	s.methodCounters = make(map[siplib.RequestMethod]prometheus.Counter)
	for _, m := range []siplib.RequestMethod{siplib.INVITE, siplib.ACK, siplib.CANCEL, siplib.BYE, siplib.REGISTER,
		siplib.OPTIONS, siplib.INFO, siplib.UPDATE, siplib.MESSAGE, siplib.PRACK, siplib.NOTIFY, siplib.SUBSCRIBE,
		siplib.REFER, siplib.PUBLISH} {
		s.methodCounters[m] = s.metrics.transactions.WithLabelValues(string(m))
	}
	s.registerFn = s.wrap(s.handleRegister)
	s.requestFn = s.wrap(s.handleRequest)
	s.txl, s.tpl = ua.TransactionLayer(), ua.TransportLayer()
	// sipgo dispatches by method with a fallback for unregistered ones;
	// every method the proxy relays goes through handleRequest.
	srv.OnRegister(s.handlerFor(siplib.REGISTER))
	srv.OnAck(s.handlerFor(siplib.ACK))
	srv.OnCancel(s.handlerFor(siplib.CANCEL))
	srv.OnNoRoute(s.handlerFor(""))
	for _, m := range []siplib.RequestMethod{siplib.INVITE, siplib.BYE, siplib.OPTIONS, siplib.INFO,
		siplib.UPDATE, siplib.MESSAGE, siplib.PRACK, siplib.NOTIFY, siplib.SUBSCRIBE, siplib.REFER, siplib.PUBLISH} {
		srv.OnRequest(m, s.handlerFor(m))
	}
	return s, nil
}

// register is the complete REGISTER handler chain (also called by the
// front door for UDP).
func (s *Server) register(req *siplib.Request, tx siplib.ServerTransaction) {
	s.registerFn(req, tx)
}

// handlerFor returns the complete handler chain for a method.
func (s *Server) handlerFor(m siplib.RequestMethod) sipgo.RequestHandler {
	switch m {
	case siplib.REGISTER:
		return s.register
	case siplib.ACK:
		return s.wrap(s.handleAck)
	case siplib.CANCEL:
		return s.wrap(s.handleCancel)
	}
	return s.requestFn
}

// Start binds every listener, starts serving and returns once all are
// bound; Addrs then reports their real addresses. The server runs until
// ctx is done or Close is called.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return errors.New("sip: already started")
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	type serveFn func() error
	var serves []serveFn
	var doors []*frontDoor
	fail := func(err error) error {
		for _, c := range s.closers {
			c() //nolint:errcheck // unwinding after a failed bind.
		}
		s.closers = nil
		return err
	}
	for _, l := range s.cfg.Listeners {
		tr := strings.ToLower(l.Transport)
		switch tr {
		case "udp":
			pc := l.PacketConn
			if pc == nil {
				var err error
				if pc, err = net.ListenPacket("udp", l.Addr); err != nil {
					return fail(fmt.Errorf("sip: listen udp %s: %w", l.Addr, err))
				}
				// One socket carries every UDP client: give it deep
				// buffers (as Kamailio does) so that bursts, and a
				// receiver that reads slowly, do not stall or drop. The
				// kernel caps these at net.core.[rw]mem_max.
				if uc, ok := pc.(*net.UDPConn); ok {
					uc.SetReadBuffer(udpSocketBuffer)  //nolint:errcheck // best effort.
					uc.SetWriteBuffer(udpSocketBuffer) //nolint:errcheck // best effort.
				}
			}
			s.closers = append(s.closers, pc.Close)
			s.record(tr, pc.LocalAddr())
			la, err := toSipAddr(pc.LocalAddr())
			if err != nil {
				return fail(err)
			}
			s.udpLocal[pc.LocalAddr().String()] = la
			s.udpConns[pc.LocalAddr().String()] = pc
			fd := &frontDoor{PacketConn: pc, s: s, parser: siplib.NewParser()}
			doors = append(doors, fd)
			s.doors = append(s.doors, fd)
			serves = append(serves, func() error { return s.srv.ServeUDP(fd) })
		case "tcp", "tls", "ws":
			ln := l.Listener
			if ln == nil {
				var err error
				if ln, err = net.Listen("tcp", l.Addr); err != nil {
					return fail(fmt.Errorf("sip: listen %s %s: %w", tr, l.Addr, err))
				}
				if tr == "tls" {
					ln = tls.NewListener(ln, s.cfg.TLS)
				}
			}
			s.closers = append(s.closers, ln.Close)
			s.record(tr, ln.Addr())
			switch tr {
			case "tcp":
				serves = append(serves, func() error { return s.srv.ServeTCP(ln) })
			case "tls":
				serves = append(serves, func() error { return s.srv.ServeTLS(ln) })
			case "ws":
				serves = append(serves, func() error { return s.srv.ServeWS(ln) })
			}
		}
	}
	for _, fd := range doors {
		fd.serve(ctx, &s.wg, runtime.GOMAXPROCS(0))
	}
	for _, fn := range serves {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				s.log.Debug("listener stopped", "err", err)
			}
		}()
	}
	if s.cfg.PingInterval > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.pinger(ctx)
		}()
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.maintain(ctx)
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.stop()
	}()
	for _, b := range s.bound {
		s.log.Info("listening", "transport", b.Transport, "addr", b.Addr.String())
	}
	return nil
}

// Serve is Start followed by waiting for ctx; it returns after Close.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

func (s *Server) record(tr string, a net.Addr) {
	s.bound = append(s.bound, BoundListener{Transport: tr, Addr: a})
	if _, ok := s.local[tr]; ok {
		return
	}
	host, portS, _ := net.SplitHostPort(a.String())
	port, _ := strconv.Atoi(portS)
	if s.cfg.Host != "" {
		host = s.cfg.Host
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		// A wildcard bind has no address to advertise; loopback is the
		// only one sure to exist. Operators set Config.Host.
		host = "127.0.0.1"
	}
	s.local[tr] = hostPort{host, port}
}

func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return ip.Unmap(), err
}

func toSipAddr(a net.Addr) (siplib.Addr, error) {
	host, portS, err := net.SplitHostPort(a.String())
	if err != nil {
		return siplib.Addr{}, err
	}
	port, _ := strconv.Atoi(portS)
	return siplib.Addr{IP: net.ParseIP(host), Port: port, Hostname: host}, nil
}

// Addrs returns the bound listeners (valid after Start).
func (s *Server) Addrs() []BoundListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BoundListener(nil), s.bound...)
}

// Close stops the listeners, writes the registrations to the store and
// waits for the server's goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.stop()
	s.wg.Wait()
	if ferr := s.flush(); ferr != nil {
		err = errors.Join(err, ferr)
	}
	return err
}

// stop closes the sockets and sipgo's layers once; it does not wait.
func (s *Server) stop() error {
	var err error
	s.stopOnce.Do(func() {
		s.mu.Lock()
		if s.cancel != nil {
			s.cancel()
		}
		var errs []error
		for _, c := range s.closers {
			if e := c(); e != nil && !errors.Is(e, net.ErrClosed) {
				errs = append(errs, e)
			}
		}
		s.mu.Unlock()
		s.ua.Close() //nolint:errcheck // closes pooled connections; errors are of closed sockets.
		err = errors.Join(errs...)
	})
	return err
}

// maintain runs the periodic work: flushing bindings, expiring them and
// sweeping the nonce and rate tables.
func (s *Server) maintain(ctx context.Context) {
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	sweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(sweep) > 5*time.Second {
				sweep = now
				s.loc.expire(now)
				s.limit.sweep()
				s.replies.expire(now)
			}
			if err := s.flush(); err != nil {
				s.log.Warn("writing registrations to the store failed; will retry", "err", err)
			}
		}
	}
}

// flush writes changed AORs to the store in one transaction.
func (s *Server) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	batch := s.loc.takeDirty()
	if len(batch) == 0 {
		return nil
	}
	if err := s.cfg.Store.PutBindings(batch); err != nil {
		s.loc.markDirty(batch)
		return err
	}
	return nil
}

// Lookup returns the current bindings of an AOR (user name), best first.
func (s *Server) Lookup(aor string) ([]Binding, error) {
	bs := s.loc.get(aor, time.Now())
	if len(bs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, aor)
	}
	return bs, nil
}

// Client returns a sipgo client sharing the server's transports, for
// components (the conference focus) that originate requests themselves.
func (s *Server) Client() (*sipgo.Client, error) {
	return sipgo.NewClient(s.ua)
}

// strayResponse receives responses no client transaction matches: 2xx
// retransmissions of INVITEs whose transaction has ended (RFC 3261
// §16.7 step 10 says a proxy forwards those statelessly).
func (s *Server) strayResponse(res *siplib.Response) {
	if !res.IsSuccess() {
		return
	}
	if cseq := res.CSeq(); cseq == nil || cseq.MethodName != siplib.INVITE {
		return
	}
	s.relayStatelessResponse(res)
}

type handler func(req *siplib.Request, tx siplib.ServerTransaction)

// wrap does what every request needs before its method handler: counting,
// the rate limit for stream transports (UDP is limited in the front
// door), header validation (400), and RFC 3581 Via fixing.
func (s *Server) wrap(h handler) sipgo.RequestHandler {
	return func(req *siplib.Request, tx siplib.ServerTransaction) {
		s.countRequest(req.Method)
		if !strings.EqualFold(req.Transport(), "udp") {
			if host, _, err := net.SplitHostPort(req.Source()); err == nil {
				if ip, err := parseIP(host); err == nil {
					switch s.limit.check(ip) {
					case reject:
						s.metrics.rateLimited.Inc()
						res := siplib.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
						res.AppendHeader(siplib.NewHeader("Retry-After", "5"))
						s.respond(tx, res)
						return
					case drop:
						s.metrics.rateLimited.Inc()
						return
					}
				}
			}
		}
		if why := validate(req); why != "" {
			s.metrics.malformed.Inc()
			if !req.IsAck() {
				s.reply(req, tx, 400, "Bad Request", why)
			}
			return
		}
		fixVia(req)
		h(req, tx)
	}
}

// countRequest counts a request by method. The counters of the methods
// the proxy knows are looked up once (New); WithLabelValues hashes the
// label and takes a lock on every call.
func (s *Server) countRequest(m siplib.RequestMethod) {
	if c, ok := s.methodCounters[m]; ok {
		c.Inc()
		return
	}
	s.metrics.transactions.WithLabelValues(string(m)).Inc()
}

// validate checks what RFC 3261 §16.3 and §8.2 need of every request.
func validate(req *siplib.Request) string {
	switch {
	case req.From() == nil:
		return "missing From"
	case req.To() == nil:
		return "missing To"
	case req.CallID() == nil || req.CallID().Value() == "":
		return "missing Call-ID"
	case req.CSeq() == nil:
		return "missing CSeq"
	case req.Via() == nil:
		return "missing Via"
	}
	if m := req.CSeq().MethodName; m != req.Method {
		return "CSeq method " + string(m) + " does not match " + string(req.Method)
	}
	if req.Recipient.Host == "" {
		return "Request-URI has no host"
	}
	if s := req.Recipient.Scheme; s != "" && s != "sip" && s != "sips" {
		return "unsupported Request-URI scheme " + s
	}
	return ""
}

// fixVia applies RFC 3581 §4 and RFC 3261 §18.2.1 to the top Via: fill
// rport with the source port when asked, and add received whenever the
// sent-by host is not the packet's source address (sipgo does it only with
// rport). Responses then find their way back through the client's NAT.
func fixVia(req *siplib.Request) {
	via := req.Via()
	src := req.MessageData.Source()
	if via == nil || src == "" {
		return
	}
	host, port, err := net.SplitHostPort(src)
	if err != nil {
		return
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", port)
		via.Params.Add("received", host)
		return
	}
	if strings.Trim(via.Host, "[]") != host {
		via.Params.Add("received", host)
	}
}

// reply answers a request with a status and, for errors, a Warning saying
// why (RFC 3261 §20.43), so that a human reading a trace sees the reason.
func (s *Server) reply(req *siplib.Request, tx siplib.ServerTransaction, code int, phrase, why string, extra ...siplib.Header) {
	res := siplib.NewResponseFromRequest(req, code, phrase, nil)
	for _, h := range extra {
		res.AppendHeader(h)
	}
	if why != "" {
		res.AppendHeader(siplib.NewHeader("Warning", `399 punchline "`+sanitizeWarning(why)+`"`))
	}
	s.respond(tx, res)
}

func (s *Server) respond(tx siplib.ServerTransaction, res *siplib.Response) {
	res.AppendHeader(siplib.NewHeader("Server", s.cfg.UserAgent))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", "status", res.StatusCode, "err", err)
	}
}

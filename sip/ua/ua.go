package ua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// UA is one SIP account's user agent. Create it with New, then Register;
// place calls with Invite and take incoming ones with Accept. Close ends
// everything it started.
type UA struct {
	cfg  Config
	log  *slog.Logger
	aor  sip.Uri
	net  transport.Net
	sua  *sipgo.UserAgent
	cli  *sipgo.Client
	srv  *sipgo.Server
	dest string // server "ip:port" after resolution

	pc    net.PacketConn // UDP only
	laddr sip.Addr       // the local address every request leaves from

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	incoming chan *IncomingCall

	// mu guards the fields below it.
	mu         sync.Mutex
	closed     bool
	contact    sip.ContactHeader
	calls      map[string]*Call // by Call-ID
	reg        *registration
	keepaliveC chan struct{} // signals a keepalive write failed (TCP flow lost)
	kaReset    chan struct{} // signals a new keepalive period
	kaPeriod   time.Duration // overrides cfg.KeepAlive when > 0
	stunState  stunKeepalive
}

// New validates cfg, opens the local socket and starts serving incoming
// requests. It does not register; call Register.
func New(cfg Config) (*UA, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u := &UA{
		cfg:        cfg,
		log:        cfg.Logger.With("subsystem", "sip-ua", "user", cfg.User),
		net:        cfg.Net,
		incoming:   make(chan *IncomingCall, min(cfg.MaxCalls, 64)),
		calls:      map[string]*Call{},
		keepaliveC: make(chan struct{}, 1),
		kaReset:    make(chan struct{}, 1),
	}
	u.aor = sip.Uri{Scheme: "sip", User: cfg.User, Host: cfg.Domain}
	if u.net == nil {
		n, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		u.net = n
	}
	host, port, _ := splitHostPortDefault(cfg.Server, 5060)
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip4", host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolve server %q: %w", host, err)
		}
		ip = ips[0]
	}
	u.dest = net.JoinHostPort(ip.String(), strconv.Itoa(port))

	localIP, localPort, err := u.localAddress(ip)
	if err != nil {
		return nil, err
	}

	u.ctx, u.cancel = context.WithCancel(context.Background())
	sipLog := u.log.With("lib", "sipgo")
	sua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(cfg.Domain),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipLog),
			sip.WithTransportLayerReadFilter(u.readFilter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(u.onStray2xx)),
	)
	if err != nil {
		return nil, err
	}
	u.sua = sua
	u.cli, _ = sipgo.NewClient(sua, sipgo.WithClientLogger(sipLog), sipgo.WithClientNAT())
	u.srv, _ = sipgo.NewServer(sua, sipgo.WithServerLogger(sipLog))
	u.srv.OnInvite(u.onInvite)
	u.srv.OnAck(u.onAck)
	u.srv.OnBye(u.onBye)
	u.srv.OnCancel(u.onStrayCancel)
	u.srv.OnOptions(u.onOptions)
	u.srv.OnInfo(u.onOptions)
	u.srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		u.respond(tx, req, 405, "Method Not Allowed", nil)
	})

	switch cfg.Transport {
	case "udp":
		pc, err := u.net.ListenPacket("udp4", net.JoinHostPort(localIP.String(), strconv.Itoa(localPort)))
		if err != nil {
			sua.Close()
			return nil, fmt.Errorf("open sip socket: %w", err)
		}
		u.pc = pc
		la := pc.LocalAddr().(*net.UDPAddr)
		u.laddr = sip.Addr{IP: la.IP, Port: la.Port, Hostname: la.IP.String()}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			// ServeUDP returns when the socket closes.
			_ = sua.TransportLayer().ServeUDP(pc)
		}()
		// Requests find the socket in sipgo's connection pool, which
		// ServeUDP fills from its goroutine: wait until it is there, or
		// the first request would try to bind the same port again.
		for i := 0; ; i++ {
			if c, _ := sua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); c != nil {
				break
			}
			if i == 1000 {
				u.cancel()
				pc.Close()
				sua.Close()
				u.wg.Wait()
				return nil, errors.New("sip socket did not come up")
			}
			time.Sleep(time.Millisecond)
		}
	case "tcp":
		// The connection is dialled on the first request; its local port
		// is learned then (see tcpFlow).
		u.laddr = sip.Addr{IP: localIP, Hostname: localIP.String()}
	}
	u.contact = u.buildContact()
	return u, nil
}

// localAddress picks the local IP and port from cfg.LocalAddr, or asks the
// kernel which source address it would use to reach the server.
func (u *UA) localAddress(server net.IP) (net.IP, int, error) {
	if u.cfg.LocalAddr != "" {
		h, p, err := splitHostPortDefault(u.cfg.LocalAddr, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("local address %q: %w", u.cfg.LocalAddr, err)
		}
		ip := net.ParseIP(h)
		if ip == nil {
			return nil, 0, fmt.Errorf("local address %q: not an IP address", u.cfg.LocalAddr)
		}
		return ip, p, nil
	}
	c, err := u.net.DialUDP("udp4", nil, &net.UDPAddr{IP: server, Port: 9})
	if err != nil {
		return nil, 0, fmt.Errorf("no route to server %s: %w", server, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP, 0, nil
}

func (u *UA) buildContact() sip.ContactHeader {
	uri := sip.Uri{Scheme: "sip", User: u.cfg.User, Host: u.laddr.Hostname, Port: u.laddr.Port}
	if u.cfg.Transport == "tcp" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", "tcp")
	}
	return sip.ContactHeader{Address: uri}
}

// AOR returns our address-of-record, "user@domain".
func (u *UA) AOR() string { return u.cfg.User + "@" + u.cfg.Domain }

// LocalAddr returns the local SIP address ("ip:port"); for TCP the port is
// known once the connection is up.
func (u *UA) LocalAddr() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return net.JoinHostPort(u.laddr.IP.String(), strconv.Itoa(u.laddr.Port))
}

// ServerAddr returns the resolved server address, "ip:port".
func (u *UA) ServerAddr() string { return u.dest }

// Close unregisters (best effort, briefly), ends every call locally, stops
// every goroutine and closes the socket. It is safe to call more than once.
func (u *UA) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	registered := u.reg != nil
	u.mu.Unlock()
	if registered {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := u.Unregister(ctx); err != nil {
			u.log.Debug("unregister at close", "err", err)
		}
		cancel()
	}
	u.mu.Lock()
	u.closed = true
	calls := make([]*Call, 0, len(u.calls))
	for _, c := range u.calls {
		calls = append(calls, c)
	}
	u.mu.Unlock()
	for _, c := range calls {
		c.end(ErrClosed)
	}
	u.cancel()
	if u.pc != nil {
		u.pc.Close()
	}
	err := u.sua.Close()
	u.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// isClosed reports whether Close has begun.
func (u *UA) isClosed() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closed
}

// go runs f as a goroutine owned by the UA: Close waits for it.
func (u *UA) goOwned(f func()) {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		f()
	}()
}

// newRequest builds an out-of-dialog request to the server.
func (u *UA) newRequest(method sip.RequestMethod, recipient sip.Uri, to sip.Uri, body []byte) *sip.Request {
	req := sip.NewRequest(method, recipient)
	from := &sip.FromHeader{DisplayName: u.cfg.DisplayName, Address: u.aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: to, Params: sip.NewParams()})
	callID := sip.CallIDHeader(sip.GenerateTagN(24) + "@punchline")
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	u.mu.Lock()
	contact := u.contact
	u.mu.Unlock()
	req.AppendHeader(contact.Clone())
	req.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
	if body != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req
}

// prepare sets the fields every request we send needs: a fresh Via
// (sent-by filled by the transport from the real socket, rport asked for),
// the transport, the server as next hop, and the local socket.
func (u *UA) prepare(req *sip.Request) {
	req.RemoveHeader("Via")
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0",
		Transport: map[string]string{"udp": "UDP", "tcp": "TCP"}[u.cfg.Transport], Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	via.Params.Add("rport", "")
	req.PrependHeader(via)
	req.SetTransport(via.Transport)
	req.SetDestination(u.dest)
	if u.pc != nil {
		u.laddr.Copy(&req.Laddr)
	}
	if req.Body() == nil {
		req.SetBody(nil)
	}
}

// asIs is a sipgo request option that leaves our prepared request alone.
func asIs(*sipgo.Client, *sip.Request) error { return nil }

// transact sends req in a new client transaction and returns its final
// response. onProvisional sees 1xx responses.
func (u *UA) transact(ctx context.Context, req *sip.Request, onProvisional func(*sip.Response)) (*sip.Response, sip.ClientTransaction, error) {
	if u.isClosed() {
		return nil, nil, ErrClosed
	}
	u.prepare(req)
	if err := u.tcpFlow(ctx, req); err != nil {
		return nil, nil, err
	}
	tx, err := u.cli.TransactionRequest(ctx, req, asIs)
	if err != nil {
		return nil, nil, fmt.Errorf("send %s: %w", req.Method, err)
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				if onProvisional != nil {
					onProvisional(res)
				}
				continue
			}
			return res, tx, nil
		case <-tx.Done():
			err := tx.Err()
			if err == nil || errors.Is(err, sip.ErrTransactionTimeout) {
				return nil, tx, fmt.Errorf("%w: no response from %s", ErrTimeout, u.dest)
			}
			return nil, tx, fmt.Errorf("%s: %w", req.Method, err)
		case <-ctx.Done():
			tx.Terminate()
			return nil, tx, ctx.Err()
		}
	}
}

// tcpFlow makes sure the TCP connection to the server exists before a
// request goes out, so that the Contact can carry its local port.
func (u *UA) tcpFlow(ctx context.Context, req *sip.Request) error {
	if u.cfg.Transport != "tcp" {
		return nil
	}
	conn, err := u.sua.TransportLayer().ClientRequestConnection(ctx, req)
	if err != nil {
		return fmt.Errorf("connect to %s over tcp: %w", u.dest, err)
	}
	defer conn.TryClose() // drop the reference ClientRequestConnection took
	la, ok := conn.LocalAddr().(*net.TCPAddr)
	if !ok {
		return nil
	}
	u.mu.Lock()
	changed := u.laddr.Port != la.Port
	if changed {
		u.laddr = sip.Addr{IP: la.IP, Port: la.Port, Hostname: la.IP.String()}
		u.contact = u.buildContact()
	}
	contact := u.contact
	u.mu.Unlock()
	if changed {
		// The request was built before we knew the port.
		if h := req.Contact(); h != nil {
			c := contact.Clone()
			c.Params = h.Params.Clone()
			req.ReplaceHeader(c)
		}
	}
	return nil
}

// respond answers a server transaction; errors are only logged because the
// peer will retransmit or time out on its own.
func (u *UA) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, hdrs ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		u.log.Debug("respond", "code", code, "err", err)
	}
	return res
}

func (u *UA) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	u.respond(tx, req, 200, "OK", nil, sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"))
}

// onStrayCancel answers a CANCEL that matched no INVITE transaction; sipgo
// handles the matching ones itself (200 to the CANCEL, 487 to the INVITE).
func (u *UA) onStrayCancel(req *sip.Request, tx sip.ServerTransaction) {
	u.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
}

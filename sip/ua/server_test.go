package ua

// A small registrar and proxy for the UA's tests, built on sipgo the way
// the real one is: digest auth (several algorithms offered), bindings that
// remember the flow a contact registered over, Record-Route, and in-dialog
// forwarding through that flow. It is deliberately minimal; the real
// server lives in package sip.

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

type binding struct {
	contact   sip.Uri
	source    string // ip:port the REGISTER came from
	transport string
}

type testServer struct {
	t          *testing.T
	realm      string
	algorithms []string // offered challenges, in order
	users      map[string]string
	maxExpires int

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	udpAddr, tcpAddr string

	mu        sync.Mutex
	bindings  map[string]binding
	registers int
	failNext  int // answer this many REGISTERs 503
	lastOK    time.Time
	stunSeen  int
	crlfSeen  int
	invites   int
	byes      int
	reinvites int
}

func newTestServer(t *testing.T, algorithms ...string) *testServer {
	t.Helper()
	if len(algorithms) == 0 {
		algorithms = []string{"MD5"}
	}
	s := &testServer{t: t, realm: "test", algorithms: algorithms, maxExpires: 3600,
		users: map[string]string{"alice": "alicepw", "bob": "bobpw"}, bindings: map[string]binding{}}
	log := slog.New(slog.DiscardHandler)
	if l := testLogger(t); l != nil {
		log = l.With("side", "server")
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.udpAddr, s.tcpAddr = pc.LocalAddr().String(), ln.Addr().String()
	s.ua, _ = sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log),
		sip.WithTransportLayerReadFilter(func(p sip.TransportReadProps, data []byte) ([]byte, error) {
			if len(data) >= 20 && data[0] < 2 { // a STUN binding request keepalive
				s.mu.Lock()
				s.stunSeen++
				s.mu.Unlock()
				return nil, nil
			}
			if p.Transport == "TCP" && strings.Trim(string(data), "\r\n") == "" {
				s.mu.Lock()
				s.crlfSeen++
				s.mu.Unlock()
			}
			return data, nil
		})),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	s.srv, _ = sipgo.NewServer(s.ua, sipgo.WithServerLogger(log))
	s.cli, _ = sipgo.NewClient(s.ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname("127.0.0.1"))
	s.srv.OnRegister(s.onRegister)
	s.srv.OnInvite(s.onInvite)
	s.srv.OnBye(s.forwardInDialog)
	s.srv.OnAck(s.onAck)
	s.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	done := make(chan struct{}, 2)
	go func() { s.srv.ServeUDP(pc); done <- struct{}{} }()
	go func() { s.srv.ServeTCP(ln); done <- struct{}{} }()
	t.Cleanup(func() {
		s.ua.Close()
		pc.Close()
		ln.Close()
		<-done
		<-done
	})
	return s
}

func (s *testServer) addr(transport string) string {
	if transport == "tcp" {
		return s.tcpAddr
	}
	return s.udpAddr
}

func newHash(alg string) hash.Hash {
	if alg == "SHA-256" {
		return sha256.New()
	}
	return md5.New()
}

func hexHash(alg string, parts ...string) string {
	h := newHash(alg)
	h.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(h.Sum(nil))
}

// checkAuth verifies a digest Authorization (or Proxy-Authorization)
// header against the user table: 0 when fine, else the status to answer.
func (s *testServer) checkAuth(req *sip.Request, header string) (string, int) {
	h := req.GetHeader(header)
	if h == nil {
		return "", 401
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return "", 400
	}
	pw, ok := s.users[cred.Username]
	if !ok {
		return cred.Username, 404
	}
	alg := cred.Algorithm
	if alg == "" {
		alg = "MD5"
	}
	ha1 := hexHash(alg, cred.Username, cred.Realm, pw)
	ha2 := hexHash(alg, req.Method.String(), cred.URI)
	var want string
	if cred.QOP == "auth" {
		want = hexHash(alg, ha1, cred.Nonce, fmt.Sprintf("%08x", cred.Nc), cred.Cnonce, "auth", ha2)
	} else {
		want = hexHash(alg, ha1, cred.Nonce, ha2)
	}
	if want != cred.Response {
		return cred.Username, 403
	}
	return cred.Username, 0
}

func (s *testServer) challenge(req *sip.Request, tx sip.ServerTransaction, code int) {
	reason, name := "Unauthorized", "WWW-Authenticate"
	if code == 407 {
		reason, name = "Proxy Authentication Required", "Proxy-Authenticate"
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, alg := range s.algorithms {
		res.AppendHeader(sip.NewHeader(name, fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`,
			s.realm, sip.GenerateTagN(20), alg)))
	}
	tx.Respond(res)
}

func (s *testServer) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	s.mu.Lock()
	s.registers++
	fail := s.failNext > 0
	if fail {
		s.failNext--
	}
	s.mu.Unlock()
	if fail {
		tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		return
	}
	user, code := s.checkAuth(req, "Authorization")
	switch code {
	case 401:
		s.challenge(req, tx, 401)
		return
	case 403:
		tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return
	case 404:
		tx.Respond(sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	case 400:
		tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	ct := req.Contact()
	expires := 3600
	if h := req.GetHeader("Expires"); h != nil {
		expires, _ = strconv.Atoi(h.Value())
	}
	if v, ok := ct.Params.Get("expires"); ok {
		expires, _ = strconv.Atoi(v)
	}
	s.mu.Lock()
	expires = min(expires, s.maxExpires)
	if expires == 0 {
		delete(s.bindings, user)
	} else {
		s.bindings[user] = binding{contact: *ct.Address.Clone(), source: req.Source(), transport: req.Transport()}
	}
	s.lastOK = time.Now()
	s.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if expires > 0 {
		c := ct.Clone()
		c.Params = sip.NewParams()
		c.Params.Add("expires", strconv.Itoa(expires))
		res.AppendHeader(c)
	}
	tx.Respond(res)
}

func (s *testServer) binding(user string) (binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bindings[user]
	return b, ok
}

// flowFor finds the registered flow behind a contact URI.
func (s *testServer) flowFor(uri sip.Uri) (binding, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bindings {
		if b.contact.Host == uri.Host && b.contact.Port == uri.Port {
			return b, true
		}
	}
	return binding{}, false
}

func (s *testServer) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if _, inDialog := req.To().Params.Get("tag"); inDialog {
		s.mu.Lock()
		s.reinvites++
		s.mu.Unlock()
		s.forwardInDialog(req, tx)
		return
	}
	s.mu.Lock()
	s.invites++
	s.mu.Unlock()
	if _, code := s.checkAuth(req, "Proxy-Authorization"); code != 0 {
		if code == 401 {
			s.challenge(req, tx, 407)
		} else {
			tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		}
		return
	}
	if _, known := s.users[req.Recipient.User]; !known {
		tx.Respond(sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	}
	b, ok := s.binding(req.Recipient.User)
	if !ok {
		tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		return
	}
	fwd := req.Clone()
	fwd.Recipient = *b.contact.Clone()
	fwd.RemoveHeader("Proxy-Authorization")
	s.forward(req, tx, fwd, b, true)
}

// forwardInDialog sends an in-dialog request on to its Request-URI,
// through the flow that contact registered over.
func (s *testServer) forwardInDialog(req *sip.Request, tx sip.ServerTransaction) {
	if req.Method == sip.BYE {
		s.mu.Lock()
		s.byes++
		s.mu.Unlock()
	}
	b, ok := s.flowFor(req.Recipient)
	if !ok {
		tx.Respond(sip.NewResponseFromRequest(req, 404, "Not Found", nil))
		return
	}
	fwd := req.Clone()
	fwd.RemoveHeader("Route")
	s.forward(req, tx, fwd, b, false)
}

func (s *testServer) onAck(req *sip.Request, tx sip.ServerTransaction) {
	b, ok := s.flowFor(req.Recipient)
	if !ok {
		return
	}
	fwd := req.Clone()
	fwd.RemoveHeader("Route")
	fwd.SetDestination(b.source)
	fwd.SetTransport(b.transport)
	s.cli.WriteRequest(fwd, sipgo.ClientRequestAddVia)
}

func (s *testServer) forward(req *sip.Request, tx sip.ServerTransaction, fwd *sip.Request, b binding, recordRoute bool) {
	fwd.SetDestination(b.source)
	fwd.SetTransport(b.transport)
	opts := []sipgo.ClientRequestOption{sipgo.ClientRequestAddVia, sipgo.ClientRequestDecreaseMaxForward}
	if recordRoute {
		fwd.PrependHeader(&sip.RecordRouteHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1",
			Port:      portOf(s.addr(strings.ToLower(req.Transport()))),
			UriParams: sip.HeaderParams{{K: "transport", V: strings.ToLower(req.Transport())}, {K: "lr", V: ""}}}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	ctx2, stop := context.WithCancel(ctx)
	defer stop()
	ftx, err := s.cli.TransactionRequest(ctx2, fwd, opts...)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		return
	}
	defer ftx.Terminate()
	tx.OnCancel(func(*sip.Request) {
		c := sip.NewRequest(sip.CANCEL, fwd.Recipient)
		c.AppendHeader(sip.HeaderClone(fwd.Via()))
		c.AppendHeader(sip.HeaderClone(fwd.From()))
		c.AppendHeader(sip.HeaderClone(fwd.To()))
		c.AppendHeader(sip.HeaderClone(fwd.CallID()))
		c.AppendHeader(&sip.CSeqHeader{SeqNo: fwd.CSeq().SeqNo, MethodName: sip.CANCEL})
		c.SetDestination(b.source)
		c.SetTransport(b.transport)
		go s.cli.Do(context.Background(), c, func(*sipgo.Client, *sip.Request) error { return nil })
	})
	for {
		select {
		case res := <-ftx.Responses():
			r := res.Clone()
			r.RemoveHeader("Via")
			// A parsed message remembers where it arrived; the relayed copy
			// must go by its (now top) Via instead.
			r.SetDestination("")
			tx.Respond(r)
			if !res.IsProvisional() {
				return
			}
		case <-ftx.Done():
			tx.Respond(sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
			return
		case <-tx.Done():
			return
		}
	}
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

package sip

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// The UDP fast paths answer or forward, on the front door's own parse of a
// datagram, the messages of a call that need no transaction state, the way
// Kamailio's sl and stateless forward do:
//
//   - an INVITE without proxy credentials is challenged (407) statelessly,
//     its retransmissions get the same 407 from the reply cache and the ACK
//     of that 407 (RFC 3261 §17.2.1: it carries the INVITE's branch) is
//     absorbed;
//   - in-dialog requests other than INVITE and CANCEL that carry our signed
//     Record-Route flow token (the ACK of a 2xx, BYE, INFO, ...) are
//     forwarded statelessly (RFC 3261 §16.11) over the UDP flow the token
//     names, with a branch derived from the request's own (and MAC'd
//     with the server secret), so that a retransmission leaves with the
//     same branch;
//   - responses whose top Via is such a stateless branch of ours are sent
//     on by the next Via (§16.11, §18.2.2) when the branch's MAC matches
//     it, so nobody can use the proxy to reflect forged responses; a
//     final one is kept for 5 s and answers retransmissions of its
//     request, as a stateful proxy's completed transaction would (a UAS
//     that answered a BYE has ended the dialog and may not answer again).
//
// Everything else, and everything over TCP, TLS and WebSocket, still goes
// through sipgo's transaction layer: initial INVITEs with credentials (the
// proxy forks, sends 100, cancels and picks the best response there),
// re-INVITEs, CANCEL, requests for the conference focus and anything the
// fast path would have to answer with an error. Responses to those
// (toStatefulBranch) skip the front door's parse: sipgo parses them once.

// statelessBranchPrefix marks the branches of requests this proxy
// forwarded statelessly. "st" can never be a loop hash (hex), so looped
// never mistakes one for a spiral of ours.
const statelessBranchPrefix = branchPrefix + "st"

// statelessMACLen is how many bytes of the branch MAC are written (hex):
// enough that nobody guesses one, short enough to keep messages small.
const statelessMACLen = 10

// macPool holds HMAC-SHA256 states keyed with the server secret, for
// stateless branches and flow tokens, each with a scratch buffer (a
// buffer passed to a hash.Hash escapes to the heap).
type macPool struct{ p sync.Pool }

type macState struct {
	h   hash.Hash
	buf []byte
}

func newMACPool(key []byte) *macPool {
	m := &macPool{}
	m.p.New = func() any { return &macState{h: hmac.New(sha256.New, key), buf: make([]byte, 0, 256)} }
	return m
}

func (m *macPool) get() *macState  { return m.p.Get().(*macState) }
func (m *macPool) put(s *macState) { m.p.Put(s) }

// branchFor computes the stateless branch of a forwarded request from the
// client's Via (after fixVia: the branch, sent-by and the received and
// rport parameters that say where responses go). The MAC covers where a
// response will be sent back to, so a response forged with a Via of its
// own choosing is not relayed: we forward only to the hop the request
// really came from.
func (m *macPool) branchFor(via *siplib.ViaHeader) string {
	st := m.get()
	st.h.Reset()
	st.buf = appendViaIdentity(st.buf[:0], via)
	st.h.Write(st.buf)
	var sum [sha256.Size]byte
	out := st.h.Sum(sum[:0])
	m.put(st)
	var b [len(statelessBranchPrefix) + 2*statelessMACLen]byte
	n := copy(b[:], statelessBranchPrefix)
	hex.Encode(b[n:], out[:statelessMACLen])
	return string(b[:])
}

// appendViaIdentity appends the parts of a Via that identify the
// transaction and its way back.
func appendViaIdentity(b []byte, via *siplib.ViaHeader) []byte {
	br, _ := via.Params.Get("branch")
	rcv, _ := via.Params.Get("received")
	rp, _ := via.Params.Get("rport")
	b = append(b, br...)
	b = append(b, 0)
	b = append(b, via.Transport...)
	b = append(b, 0)
	b = append(b, via.Host...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(via.Port), 10)
	b = append(b, 0)
	b = append(b, rcv...)
	b = append(b, 0)
	return append(b, rp...)
}

// bufPool holds buffers for rendering messages to send.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// fastPath handles a parsed UDP message if it can; false means it goes to
// sipgo as before. The message was parsed from a private copy, so it may
// be changed in place.
func (f *frontDoor) fastPath(msg siplib.Message, addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	switch m := msg.(type) {
	case *siplib.Request:
		switch m.Method {
		case siplib.INVITE:
			return f.challengeStateless(m, ua)
		case siplib.ACK:
			return f.ackStateless(m, ua)
		case siplib.CANCEL, siplib.REGISTER:
			return false
		}
		return f.forwardStateless(m, ua)
	case *siplib.Response:
		return f.relayStatelessReply(m)
	}
	return false
}

// challengeStateless answers an initial INVITE that carries no proxy
// credentials. Every outcome of the proxy for such a request is a final
// response without forwarding (407 nearly always; 404, 482, 483 or 400 for
// the odd one), so it runs the normal handler with a transaction stand-in
// that sends from here and keeps the answer for retransmissions.
func (f *frontDoor) challengeStateless(req *siplib.Request, ua *net.UDPAddr) bool {
	if req.GetHeader("Proxy-Authorization") != nil {
		return false
	}
	if to := req.To(); to == nil {
		return false
	} else if _, inDialog := to.Params.Get("tag"); inDialog {
		return false
	}
	key := txKey(req)
	if key == "" {
		// Without an RFC 3261 branch neither a retransmission nor the
		// ACK could be recognised; leave it to sipgo.
		return false
	}
	if b, ok := f.s.replies.get(key); ok {
		f.PacketConn.WriteTo(b, ua) //nolint:errcheck // a retransmission; the client retries.
		return true
	}
	req.SetSource(ua.String())
	req.SetTransport("UDP")
	tx := &challengeTx{
		statelessTx: &statelessTx{fd: f, key: key, dest: responseAddr(req, ua), done: make(chan struct{})},
		ackKey:      ackKeyOf(key),
	}
	f.s.requestFn(req, tx)
	return true
}

// ackKeyOf is the reply cache key under which the ACK of a non-2xx final
// response to the INVITE with transaction key k is recognised: same
// branch and sent-by (§17.2.3), method ACK.
func ackKeyOf(k string) string {
	return strings.TrimSuffix(k, string(siplib.INVITE)) + string(siplib.ACK)
}

// challengeTx is statelessTx for an INVITE: a final non-2xx answer also
// arms the absorption of its ACK.
type challengeTx struct {
	*statelessTx
	ackKey string
}

func (t *challengeTx) Respond(res *siplib.Response) error {
	if res.StatusCode >= 300 {
		// Armed before sending, as the ACK may come the moment the
		// answer arrives.
		t.fd.s.replies.put(t.ackKey, nil, time.Now())
	}
	return t.statelessTx.Respond(res)
}

// ackStateless absorbs the ACK of a statelessly sent non-2xx response and
// forwards ACKs of 2xx that carry our flow token.
func (f *frontDoor) ackStateless(req *siplib.Request, ua *net.UDPAddr) bool {
	if key := txKey(req); key != "" {
		if _, ok := f.s.replies.get(key); ok {
			return true
		}
	}
	return f.forwardStateless(req, ua)
}

// forwardStateless forwards an in-dialog request that carries our flow
// token to the UDP flow the token names (RFC 3261 §16.11). Anything it
// cannot send on as is (no or a bad token, a further Route, Max-Forwards
// exhausted, a stream transport on the far side, malformed headers) goes
// to the stateful path, which answers the errors.
func (f *frontDoor) forwardStateless(req *siplib.Request, ua *net.UDPAddr) bool {
	s := f.s
	to := req.To()
	if to == nil {
		return false
	}
	if _, inDialog := to.Params.Get("tag"); !inDialog {
		return false
	}
	r := req.Route()
	if r == nil || r.Address.User == "" || !s.isOurs(&r.Address) {
		return false
	}
	if req.Method != siplib.ACK {
		// A retransmission of a request whose final response we already
		// relayed gets that response again from here, as from a
		// stateful proxy's completed transaction (§17.2.2): the response
		// may have been lost on its way back, and the far end may have
		// finished with the request (a UAS that answered a BYE has ended
		// the dialog).
		if key := txKey(req); key != "" {
			if b, ok := s.replies.get(key); ok && b != nil {
				f.PacketConn.WriteTo(b, responseAddr(req, ua)) //nolint:errcheck // the client retransmits again.
				return true
			}
		}
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return false
	}
	if validate(req) != "" {
		return false
	}
	// Pop our own entries (usually one, two when the dialog crossed
	// transports) and take the token from the first.
	token := r.Address.User
	for r != nil && s.isOurs(&r.Address) {
		req.RemoveHeader("Route")
		r = req.Route()
	}
	if r != nil {
		// Loose routing on to another proxy: rare, stateful path.
		return false
	}
	tok, err := s.decodeToken(token)
	if err != nil {
		return false
	}
	fl := tok.Callee
	if ft, _ := req.From().Params.Get("tag"); ft != tok.FromTag {
		fl = tok.Caller
	}
	if fl.Transport != "udp" {
		return false
	}
	dst, err := netip.ParseAddrPort(fl.Source)
	if err != nil {
		return false
	}
	s.mu.Lock()
	pc := s.udpConns[fl.Local]
	hp := s.local["udp"]
	s.mu.Unlock()
	if pc == nil {
		pc = f.PacketConn
	}

	s.countRequest(req.Method)
	req.SetSource(ua.String())
	req.SetTransport("UDP")
	fixVia(req)
	if mf := req.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := siplib.MaxForwardsHeader(70)
		req.AppendHeader(&m)
	}
	via := &siplib.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       "UDP",
		Host:            hp.host,
		Port:            hp.port,
		Params:          siplib.NewParams(),
	}
	via.Params.Add("branch", s.macs.branchFor(req.Via()))
	via.Params.Add("rport", "")
	req.PrependHeader(via)
	f.send(pc, req, net.UDPAddrFromAddrPort(dst), false)
	return true
}

// relayStatelessReply sends a response to a statelessly forwarded request
// back to the hop the request came from: our Via comes off and the next
// one says where (its received and rport, RFC 3581). The branch is checked
// against that next Via, so that only responses to requests we really
// forwarded are relayed, and only back to where those came from.
func (f *frontDoor) relayStatelessReply(res *siplib.Response) bool {
	via := res.Via()
	if via == nil {
		return false
	}
	br, _ := via.Params.Get("branch")
	if !strings.HasPrefix(br, statelessBranchPrefix) {
		return false
	}
	s := f.s
	if !s.isOurs(&siplib.Uri{Host: via.Host, Port: via.Port}) {
		return true // not our Via: drop
	}
	res.RemoveHeader("Via")
	next := res.Via()
	if next == nil || !strings.EqualFold(next.Transport, "udp") || s.macs.branchFor(next) != br {
		return true // forged or damaged: drop
	}
	host, port := viaReplyAddr(next)
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return true
	}
	cseq := res.CSeq()
	keep := res.StatusCode >= 200 && cseq != nil && cseq.MethodName != siplib.INVITE && cseq.MethodName != siplib.ACK
	b := f.send(f.PacketConn, res, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), keep)
	if keep {
		// Keep the final response for retransmissions of the request,
		// under the request's own transaction key (see forwardStateless).
		if cb, ok := next.Params.Get("branch"); ok && strings.HasPrefix(cb, siplib.RFC3261BranchMagicCookie) && len(cb) > len(siplib.RFC3261BranchMagicCookie) {
			key := cb + "|" + next.Host + "|" + strconv.Itoa(next.Port) + "|" + string(cseq.MethodName)
			s.replies.put(key, b, time.Now())
		}
	}
	return true
}

// send renders a message and writes it to dst; with keep it returns a
// copy of the bytes sent.
func (f *frontDoor) send(pc net.PacketConn, msg siplib.Message, dst *net.UDPAddr, keep bool) []byte {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	msg.StringWrite(b)
	if _, err := pc.WriteTo(b.Bytes(), dst); err != nil {
		f.s.log.Debug("stateless send failed", "to", dst.String(), "err", err)
	}
	var out []byte
	if keep {
		out = append([]byte(nil), b.Bytes()...)
	}
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
	return out
}

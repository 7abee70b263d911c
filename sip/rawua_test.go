package sip

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// rawUA is a hand-driven SIP endpoint on a real socket: tests write the
// exact bytes they want on the wire (including malformed ones) and parse
// what comes back with sipgo's parser.
type rawUA struct {
	t      testing.TB
	pc     net.PacketConn // udp
	conn   net.Conn       // tcp
	br     *bufio.Reader
	server string
	tr     string
	user   string
	pass   string
	cseq   int
}

func newUDPUA(t testing.TB, server, user, pass string) *rawUA {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &rawUA{t: t, pc: pc, server: server, tr: "UDP", user: user, pass: pass}
}

func newTCPUA(t testing.TB, server, user, pass string) *rawUA {
	t.Helper()
	c, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUA{t: t, conn: c, br: bufio.NewReader(c), server: server, tr: "TCP", user: user, pass: pass}
}

func (u *rawUA) addr() string {
	if u.pc != nil {
		return u.pc.LocalAddr().String()
	}
	return u.conn.LocalAddr().String()
}

func (u *rawUA) port() int {
	_, p, _ := net.SplitHostPort(u.addr())
	n, _ := strconv.Atoi(p)
	return n
}

// send writes a message, turning the template's line ends into CRLF.
func (u *rawUA) send(msg string) {
	u.t.Helper()
	u.sendRaw([]byte(crlf(msg)))
}

func crlf(msg string) string {
	head, body, _ := strings.Cut(msg, "\n\n")
	head = strings.ReplaceAll(strings.TrimLeft(head, "\n"), "\n", "\r\n")
	return head + "\r\n\r\n" + body
}

func (u *rawUA) sendRaw(b []byte) {
	u.t.Helper()
	var err error
	if u.pc != nil {
		dst, _ := net.ResolveUDPAddr("udp", u.server)
		_, err = u.pc.WriteTo(b, dst)
	} else {
		_, err = u.conn.Write(b)
	}
	if err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next SIP message, or nil after timeout.
func (u *rawUA) recv(timeout time.Duration) (siplib.Message, net.Addr) {
	u.t.Helper()
	if u.pc != nil {
		buf := make([]byte, 65535)
		u.pc.SetReadDeadline(time.Now().Add(timeout))
		for {
			n, from, err := u.pc.ReadFrom(buf)
			if err != nil {
				return nil, nil
			}
			m, err := siplib.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				u.t.Fatalf("unparseable message from %s: %v\n%s", from, err, buf[:n])
			}
			return m, from
		}
	}
	u.conn.SetReadDeadline(time.Now().Add(timeout))
	var head strings.Builder
	clen := 0
	for {
		line, err := u.br.ReadString('\n')
		if err != nil {
			return nil, nil
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue // keepalive CRLF
		}
		head.WriteString(line)
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			clen, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if line == "\r\n" {
			break
		}
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(u.br, body); err != nil {
		return nil, nil
	}
	m, err := siplib.ParseMessage(append([]byte(head.String()), body...))
	if err != nil {
		u.t.Fatalf("unparseable message: %v", err)
	}
	return m, u.conn.RemoteAddr()
}

// expectResponse waits for a response (skipping 100 Trying unless asked
// for) and fails the test without one.
func (u *rawUA) expectResponse(timeout time.Duration) *siplib.Response {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, _ := u.recv(time.Until(deadline))
		if m == nil {
			break
		}
		if r, ok := m.(*siplib.Response); ok {
			if r.StatusCode == 100 {
				continue
			}
			return r
		}
	}
	u.t.Fatalf("%s: no response within %v", u.user, timeout)
	return nil
}

func (u *rawUA) expectRequest(timeout time.Duration) (*siplib.Request, net.Addr) {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, from := u.recv(time.Until(deadline))
		if m == nil {
			break
		}
		if r, ok := m.(*siplib.Request); ok {
			return r, from
		}
	}
	u.t.Fatalf("%s: no request within %v", u.user, timeout)
	return nil, nil
}

// digestAuth computes an Authorization value for a challenge, written
// independently of the server's digest code.
func digestAuth(user, pass, realm, method, uri, nonce, alg string, nc int) string {
	h := func(s string) string {
		if alg == "SHA-256" {
			x := sha256.Sum256([]byte(s))
			return hex.EncodeToString(x[:])
		}
		x := md5.Sum([]byte(s))
		return hex.EncodeToString(x[:])
	}
	ha1 := h(user + ":" + realm + ":" + pass)
	ha2 := h(method + ":" + uri)
	cnonce := "0a4f113b"
	ncs := fmt.Sprintf("%08x", nc)
	resp := h(ha1 + ":" + nonce + ":" + ncs + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, cnonce="%s", qop=auth, nc=%s`,
		user, realm, nonce, uri, resp, alg, cnonce, ncs)
}

// challengeFor returns the nonce of the challenge for alg in res.
func challengeFor(t testing.TB, res *siplib.Response, alg string) string {
	t.Helper()
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, h := range res.GetHeaders(name) {
			v := h.Value()
			if !strings.Contains(v, "algorithm="+alg) {
				continue
			}
			c, err := parseAuthParams(strings.TrimPrefix(v, "Digest "))
			if err != nil {
				t.Fatal(err)
			}
			return c["nonce"]
		}
	}
	t.Fatalf("no %s challenge in %d response", alg, res.StatusCode)
	return ""
}

// register sends REGISTER with contact (a full Contact header value) and
// answers the challenge; it returns the final response.
func (u *rawUA) register(contact string, expires int, extra string) *siplib.Response {
	u.t.Helper()
	return u.registerAlg(contact, expires, extra, "MD5")
}

func (u *rawUA) registerAlg(contact string, expires int, extra, alg string) *siplib.Response {
	u.t.Helper()
	callID := "reg-" + u.user + "-" + strconv.Itoa(u.port())
	msg := func(auth string) string {
		u.cseq++
		return fmt.Sprintf(`REGISTER sip:%s SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bK-%d-%d;rport
From: <sip:%s@punchline>;tag=r%d
To: <sip:%s@punchline>
Call-ID: %s
CSeq: %d REGISTER
Contact: %s
Expires: %d
Max-Forwards: 70
%s%sContent-Length: 0

`, u.server, u.tr, u.addr(), u.port(), u.cseq, u.user, u.port(), u.user, callID, u.cseq, contact, expires, auth, extra)
	}
	u.send(msg(""))
	res := u.expectResponse(3 * time.Second)
	if res.StatusCode != 401 {
		return res
	}
	nonce := challengeFor(u.t, res, alg)
	u.send(msg("Authorization: " + digestAuth(u.user, u.pass, "punchline", "REGISTER", "sip:"+u.server, nonce, alg, 1) + "\n"))
	return u.expectResponse(3 * time.Second)
}

// invite sends an INVITE to callee with body and answers the 407; it
// returns the INVITE text that was sent with credentials (for CANCEL/ACK).
type inviteSent struct {
	callID, fromTag, branch string
	cseq                    int
}

func (u *rawUA) invite(callee, body string) inviteSent {
	u.t.Helper()
	inv := inviteSent{callID: fmt.Sprintf("call-%s-%d", u.user, u.port()), fromTag: "f" + u.user}
	build := func(auth string) string {
		u.cseq++
		inv.cseq = u.cseq
		inv.branch = fmt.Sprintf("z9hG4bK-inv-%d-%d", u.port(), u.cseq)
		return fmt.Sprintf(`INVITE sip:%s@%s SIP/2.0
Via: SIP/2.0/%s %s;branch=%s;rport
From: <sip:%s@punchline>;tag=%s
To: <sip:%s@punchline>
Call-ID: %s
CSeq: %d INVITE
Contact: <sip:%s@%s>
Max-Forwards: 70
%sContent-Type: application/sdp
Content-Length: %d

%s`, callee, u.server, u.tr, u.addr(), inv.branch, u.user, inv.fromTag, callee, inv.callID, u.cseq, u.user, u.addr(), auth, len(body), body)
	}
	u.send(build(""))
	res := u.expectResponse(3 * time.Second)
	if res.StatusCode != 407 {
		u.t.Fatalf("INVITE without credentials: got %d, want 407", res.StatusCode)
	}
	u.ackNon2xx(inv, callee, res)
	nonce := challengeFor(u.t, res, "MD5")
	u.send(build("Proxy-Authorization: " + digestAuth(u.user, u.pass, "punchline", "INVITE", "sip:"+callee+"@"+u.server, nonce, "MD5", 1) + "\n"))
	return inv
}

func (u *rawUA) ackNon2xx(inv inviteSent, callee string, res *siplib.Response) {
	u.t.Helper()
	u.send(fmt.Sprintf(`ACK sip:%s@%s SIP/2.0
Via: SIP/2.0/%s %s;branch=%s;rport
From: <sip:%s@punchline>;tag=%s
%s
Call-ID: %s
CSeq: %d ACK
Max-Forwards: 70
Content-Length: 0

`, callee, u.server, u.tr, u.addr(), inv.branch, u.user, inv.fromTag, res.To().String(), inv.callID, inv.cseq))
}

// respondTo answers a request with status, echoing the headers a
// response needs, and an optional Contact and body.
func (u *rawUA) respondTo(req *siplib.Request, code int, reason, toTag, contact, body string, to net.Addr) {
	u.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, h := range req.GetHeaders("Via") {
		b.WriteString("Via: " + h.Value() + "\r\n")
	}
	for _, h := range req.GetHeaders("Record-Route") {
		b.WriteString("Record-Route: " + h.Value() + "\r\n")
	}
	b.WriteString(req.From().String() + "\r\n")
	to0 := req.To().String()
	if toTag != "" && !strings.Contains(to0, "tag=") {
		to0 += ";tag=" + toTag
	}
	b.WriteString(to0 + "\r\n")
	b.WriteString(req.CallID().String() + "\r\n")
	b.WriteString(req.CSeq().String() + "\r\n")
	if contact != "" {
		b.WriteString("Contact: " + contact + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if u.pc != nil {
		// Responses go to the proxy, where the request came from.
		if _, err := u.pc.WriteTo([]byte(b.String()), to); err != nil {
			u.t.Fatal(err)
		}
		return
	}
	u.sendRaw([]byte(b.String()))
}

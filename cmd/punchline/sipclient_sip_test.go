package main

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// udpPeer is a bare SIP endpoint on a real UDP socket for end-to-end
// tests of the built binary: it writes requests as text and parses what
// comes back with sipgo's parser.
type udpPeer struct {
	t      *testing.T
	pc     net.PacketConn
	server *net.UDPAddr
	user   string
	pass   string
	cseq   int
}

func newUDPPeer(t *testing.T, server, user, pass string) *udpPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	return &udpPeer{t: t, pc: pc, server: sa, user: user, pass: pass}
}

func (p *udpPeer) addr() string { return p.pc.LocalAddr().String() }

func (p *udpPeer) send(msg string) {
	p.t.Helper()
	head, body, _ := strings.Cut(msg, "\n\n")
	raw := strings.ReplaceAll(strings.TrimLeft(head, "\n"), "\n", "\r\n") + "\r\n\r\n" + body
	if _, err := p.pc.WriteTo([]byte(raw), p.server); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next SIP message (skipping 100 Trying), nil on timeout.
func (p *udpPeer) next(timeout time.Duration) siplib.Message {
	p.t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(timeout)
	for {
		p.pc.SetReadDeadline(deadline)
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			return nil
		}
		m, err := siplib.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			p.t.Fatalf("unparseable: %v", err)
		}
		if r, ok := m.(*siplib.Response); ok && r.StatusCode == 100 {
			continue
		}
		return m
	}
}

func (p *udpPeer) response(timeout time.Duration) *siplib.Response {
	p.t.Helper()
	m := p.next(timeout)
	r, ok := m.(*siplib.Response)
	if !ok {
		p.t.Fatalf("%s: want a response, got %v", p.user, m)
	}
	return r
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

func (p *udpPeer) authHeader(res *siplib.Response, method, uri string) string {
	ch := res.GetHeader("WWW-Authenticate")
	name := "Authorization"
	if ch == nil {
		ch, name = res.GetHeader("Proxy-Authenticate"), "Proxy-Authorization"
	}
	if ch == nil {
		p.t.Fatalf("no challenge in %d", res.StatusCode)
	}
	nonce := nonceRE.FindStringSubmatch(ch.Value())[1]
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	resp := h(h(p.user+":punchline:"+p.pass) + ":" + nonce + ":00000001:c0ffee:auth:" + h(method+":"+uri))
	return fmt.Sprintf(`%s: Digest username="%s", realm="punchline", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`,
		name, p.user, nonce, uri, resp)
}

// register registers contact and returns the final status.
func (p *udpPeer) register(contact string) int {
	p.t.Helper()
	uri := "sip:" + p.server.String()
	msg := func(extra string) string {
		p.cseq++
		return fmt.Sprintf(`REGISTER %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-r%d-%s;rport
From: <sip:%s@punchline>;tag=rt
To: <sip:%s@punchline>
Call-ID: reg-%s-%s
CSeq: %d REGISTER
Contact: %s
Expires: 600
Max-Forwards: 70
%sContent-Length: 0

`, uri, p.addr(), p.cseq, p.user, p.user, p.user, p.user, p.addr(), p.cseq, contact, extra)
	}
	p.send(msg(""))
	res := p.response(3 * time.Second)
	if res.StatusCode != 401 {
		return res.StatusCode
	}
	p.send(msg(p.authHeader(res, "REGISTER", uri) + "\n"))
	return p.response(3 * time.Second).StatusCode
}

// invite sends an authenticated INVITE to callee (answering the 407).
func (p *udpPeer) invite(callee string) {
	p.t.Helper()
	uri := "sip:" + callee + "@" + p.server.String()
	msg := func(extra string) string {
		p.cseq++
		return fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-i%d-%s;rport
From: <sip:%s@punchline>;tag=it
To: <sip:%s@punchline>
Call-ID: inv-%s-%s
CSeq: %d INVITE
Contact: <sip:%s@%s>
Max-Forwards: 70
%sContent-Length: 0

`, uri, p.addr(), p.cseq, p.user, p.user, callee, p.user, p.addr(), p.cseq, p.user, p.addr(), extra)
	}
	p.send(msg(""))
	res := p.response(3 * time.Second)
	if res.StatusCode != 407 {
		p.t.Fatalf("INVITE: got %d, want 407", res.StatusCode)
	}
	p.send(msg(p.authHeader(res, "INVITE", uri) + "\n"))
}

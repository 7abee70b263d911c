package sip

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxyCall runs whole calls through the proxy over real UDP
// sockets on loopback, one after another, as bench/compare's sipp load
// does many at once: INVITE, 407, ACK, INVITE with credentials, 180, 200,
// ACK and BYE along the Record-Route set, 200. The caller and callee are
// written with plain byte handling so that what the benchmark's
// allocations and time measure is the server.
func BenchmarkProxyCall(b *testing.B) {
	// All traffic comes from loopback: no flood limiter, as in
	// bench/compare.
	ts := startServer(b, map[string]string{"alice": "apw", "bob": "bpw"}, func(c *Config) { c.RateLimit.PerSecond = -1 })
	bob := newUDPUA(b, ts.udp, "bob", "bpw")
	if r := bob.register("<sip:bob@"+bob.addr()+">", 3600, ""); r.StatusCode != 200 {
		b.Fatalf("register: %d", r.StatusCode)
	}
	alice := newUDPUA(b, ts.udp, "alice", "apw")
	srv, err := net.ResolveUDPAddr("udp", ts.udp)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchCall{b: b, alice: alice.pc, bob: bob.pc, srv: srv, buf: make([]byte, 65535)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.run(i)
	}
}

type benchCall struct {
	b          *testing.B
	alice, bob net.PacketConn
	srv        net.Addr
	buf        []byte
}

func (c *benchCall) send(pc net.PacketConn, msg string) {
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if _, err := pc.WriteTo([]byte(msg), c.srv); err != nil {
		c.b.Fatal(err)
	}
}

// expect reads datagrams on pc until one starts with prefix; it skips
// 100 Trying.
func (c *benchCall) expect(pc net.PacketConn, prefix string) string {
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		n, _, err := pc.ReadFrom(c.buf)
		if err != nil {
			c.b.Fatalf("waiting for %q: %v", prefix, err)
		}
		m := c.buf[:n]
		if bytes.HasPrefix(m, []byte("SIP/2.0 100 ")) {
			continue
		}
		if !bytes.HasPrefix(m, []byte(prefix)) {
			c.b.Fatalf("got %q, want %q", m[:min(n, 60)], prefix)
		}
		return string(m)
	}
}

// headerLines returns the lines of msg whose header name is name.
func headerLines(msg, name string) []string {
	var out []string
	for _, ln := range strings.Split(msg, "\r\n") {
		if ln == "" {
			break
		}
		if k, _, ok := strings.Cut(ln, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, ln)
		}
	}
	return out
}

func headerValue(msg, name string) string {
	ls := headerLines(msg, name)
	if len(ls) == 0 {
		return ""
	}
	_, v, _ := strings.Cut(ls[0], ":")
	return strings.TrimSpace(v)
}

func (c *benchCall) run(i int) {
	a := c.alice.LocalAddr().String()
	callID := fmt.Sprintf("bench-%d", i)
	invite := func(cseq int, branch, auth string) string {
		return fmt.Sprintf(`INVITE sip:bob@punchline SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:alice@punchline>;tag=fa%d
To: <sip:bob@punchline>
Call-ID: %s
CSeq: %d INVITE
Contact: <sip:alice@%s>
Max-Forwards: 70
%sContent-Type: application/sdp
Content-Length: %d

%s`, a, branch, i, callID, cseq, a, auth, len(sdpOffer), sdpOffer)
	}
	c.send(c.alice, invite(1, fmt.Sprintf("z9hG4bK-b%d-1", i), ""))
	chal := c.expect(c.alice, "SIP/2.0 407 ")
	c.send(c.alice, fmt.Sprintf(`ACK sip:bob@punchline SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-b%d-1;rport
From: <sip:alice@punchline>;tag=fa%d
%s
Call-ID: %s
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

`, a, i, i, headerLines(chal, "To")[0], callID))
	pa := headerValue(chal, "Proxy-Authenticate")
	_, nonce, _ := strings.Cut(pa, `nonce="`)
	nonce, _, _ = strings.Cut(nonce, `"`)
	auth := "Proxy-Authorization: " + digestAuth("alice", "apw", "punchline", "INVITE", "sip:bob@punchline", nonce, "MD5", 1) + "\n"
	c.send(c.alice, invite(2, fmt.Sprintf("z9hG4bK-b%d-2", i), auth))

	inv := c.expect(c.bob, "INVITE ")
	head := strings.Join(headerLines(inv, "Via"), "\r\n") + "\r\n"
	if rr := headerLines(inv, "Record-Route"); len(rr) > 0 {
		head += strings.Join(rr, "\r\n") + "\r\n"
	}
	head += strings.Join([]string{headerLines(inv, "From")[0], headerLines(inv, "To")[0] + ";tag=tb" + fmt.Sprint(i),
		headerLines(inv, "Call-ID")[0], headerLines(inv, "CSeq")[0]}, "\r\n") + "\r\n"
	b := c.bob.LocalAddr().String()
	c.send(c.bob, "SIP/2.0 180 Ringing\r\n"+head+"Contact: <sip:bob@"+b+">\r\nContent-Length: 0\r\n\r\n")
	c.expect(c.alice, "SIP/2.0 180 ")
	c.send(c.bob, "SIP/2.0 200 OK\r\n"+head+"Contact: <sip:bob@"+b+">\r\nContent-Type: application/sdp\r\n"+
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(sdpAnswer), sdpAnswer))
	ok := c.expect(c.alice, "SIP/2.0 200 ")

	rrs := headerLines(ok, "Record-Route")
	var routes []string
	for j := len(rrs) - 1; j >= 0; j-- {
		_, v, _ := strings.Cut(rrs[j], ":")
		routes = append(routes, "Route: "+strings.TrimSpace(v))
	}
	inDialog := func(method string, cseq int) string {
		return fmt.Sprintf(`%s sip:bob@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-b%d-%s;rport
From: <sip:alice@punchline>;tag=fa%d
%s
Call-ID: %s
CSeq: %d %s
%s
Max-Forwards: 70
Content-Length: 0

`, method, b, a, i, method, i, headerLines(ok, "To")[0], callID, cseq, method, strings.Join(routes, "\n"))
	}
	c.send(c.alice, inDialog("ACK", 2))
	c.expect(c.bob, "ACK ")
	c.send(c.alice, inDialog("BYE", 3))
	bye := c.expect(c.bob, "BYE ")
	resp := strings.Join(headerLines(bye, "Via"), "\r\n") + "\r\n" + strings.Join([]string{headerLines(bye, "From")[0],
		headerLines(bye, "To")[0], headerLines(bye, "Call-ID")[0], headerLines(bye, "CSeq")[0]}, "\r\n") + "\r\n"
	c.send(c.bob, "SIP/2.0 200 OK\r\n"+resp+"Content-Length: 0\r\n\r\n")
	c.expect(c.alice, "SIP/2.0 200 ")
}

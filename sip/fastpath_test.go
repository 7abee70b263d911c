package sip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// rawInvite is an initial INVITE from u to callee without credentials.
func rawInvite(u *rawUA, callee, branch, callID string) string {
	return fmt.Sprintf(`INVITE sip:%s@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:%s@punchline>;tag=f%s
To: <sip:%s@punchline>
Call-ID: %s
CSeq: 1 INVITE
Contact: <sip:%s@%s>
Max-Forwards: 70
Content-Length: 0

`, callee, u.server, u.addr(), branch, u.user, u.user, callee, callID, u.user, u.addr())
}

// recvRaw reads one datagram's bytes, nil on timeout.
func recvRaw(t *testing.T, pc net.PacketConn, timeout time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 65535)
	pc.SetReadDeadline(time.Now().Add(timeout))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return nil
	}
	return append([]byte(nil), buf[:n]...)
}

func TestUnauthenticatedInviteIsChallengedStatelessly(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	inv := rawInvite(alice, "bob", "z9hG4bK-stl-1", "stl-1")

	alice.send(inv)
	first := recvRaw(t, alice.pc, 3*time.Second)
	if !bytes.HasPrefix(first, []byte("SIP/2.0 407 ")) {
		t.Fatalf("first answer %q, want 407", first)
	}
	// A retransmission (the 407 was lost) gets the very same answer, nonce
	// included, without running the handler again.
	alice.send(inv)
	again := recvRaw(t, alice.pc, 3*time.Second)
	if !bytes.Equal(first, again) {
		t.Fatalf("retransmission answered differently:\n%s\nthen\n%s", first, again)
	}
	if n := metricValue(t, ts.metrics.transactions.WithLabelValues("INVITE")); n != 1 {
		t.Errorf("INVITE handled %v times, want once", n)
	}

	// The ACK of the 407 has the INVITE's branch (§17.2.1) and is
	// absorbed: no answer, nothing forwarded, no handler run.
	res, err := siplib.ParseMessage(first)
	if err != nil {
		t.Fatal(err)
	}
	alice.send(fmt.Sprintf(`ACK sip:bob@%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-stl-1;rport
From: <sip:alice@punchline>;tag=falice
%s
Call-ID: stl-1
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

`, alice.server, alice.addr(), res.(*siplib.Response).To().String()))
	if b := recvRaw(t, alice.pc, 300*time.Millisecond); b != nil {
		t.Fatalf("ACK of the 407 was answered: %q", b)
	}
	if n := metricValue(t, ts.metrics.transactions.WithLabelValues("ACK")); n != 0 {
		t.Errorf("ACK reached the handlers %v times, want 0", n)
	}

	// The credentials then work as before: bob is not registered, 480.
	nonce := challengeFor(t, res.(*siplib.Response), "MD5")
	auth := digestAuth("alice", "apw", "punchline", "INVITE", "sip:bob@"+alice.server, nonce, "MD5", 1)
	withAuth := strings.Replace(strings.Replace(inv, "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1),
		"Max-Forwards: 70", "Max-Forwards: 70\nProxy-Authorization: "+auth, 1)
	alice.send(strings.Replace(withAuth, "z9hG4bK-stl-1", "z9hG4bK-stl-2", 1))
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 480 {
		t.Fatalf("INVITE with credentials: %d, want 480", r.StatusCode)
	}
}

// natCall sets up alice (UDP) calling bob, who registered over UDP with a
// private Contact, and returns both, the INVITE bob got, and alice's
// 200 OK.
func natCall(t *testing.T, ts *testServer) (alice, bob *rawUA, inv inviteSent, got *siplib.Request, ok *siplib.Response) {
	t.Helper()
	bob = newUDPUA(t, ts.udp, "bob", "bpw")
	if r := bob.register(privateContact, 600, ""); r.StatusCode != 200 {
		t.Fatalf("register: %d", r.StatusCode)
	}
	alice = newUDPUA(t, ts.udp, "alice", "apw")
	inv = alice.invite("bob", sdpOffer)
	got, from := bob.expectRequest(3 * time.Second)
	if got.Method != siplib.INVITE {
		t.Fatalf("bob got %s", got.Method)
	}
	bob.respondTo(got, 200, "OK", "btag", privateContact, sdpAnswer, from)
	ok = alice.expectResponse(3 * time.Second)
	if ok.StatusCode != 200 {
		t.Fatalf("alice got %d", ok.StatusCode)
	}
	return alice, bob, inv, got, ok
}

// routesOf is the route set a caller builds from a 2xx (§12.1.2).
func routesOf(res *siplib.Response) string {
	rrs := res.GetHeaders("Record-Route")
	var routes []string
	for i := len(rrs) - 1; i >= 0; i-- {
		routes = append(routes, "Route: "+rrs[i].Value())
	}
	return strings.Join(routes, "\n")
}

func aliceInDialog(alice *rawUA, inv inviteSent, ok *siplib.Response, method, branch string, cseq int, routes string) string {
	return fmt.Sprintf(`%s sip:bob@192.168.1.50:5060 SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:alice@punchline>;tag=%s
%s
Call-ID: %s
CSeq: %d %s
%s
Max-Forwards: 70
Content-Length: 0

`, method, alice.addr(), branch, inv.fromTag, ok.To().String(), inv.callID, cseq, method, routes)
}

func TestInDialogRequestsAreForwardedStatelesslyToTheNATFlow(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	alice, bob, inv, _, ok := natCall(t, ts)
	routes := routesOf(ok)
	txBefore := metricValue(t, ts.metrics.transactions.WithLabelValues("BYE"))

	alice.send(aliceInDialog(alice, inv, ok, "ACK", "z9hG4bK-sack", inv.cseq, routes))
	ack, _ := bob.expectRequest(3 * time.Second)
	if ack.Method != siplib.ACK || !strings.HasPrefix(viaBranch(ack), statelessBranchPrefix) {
		t.Fatalf("bob got %s with branch %q, want a statelessly forwarded ACK", ack.Method, viaBranch(ack))
	}

	bye := aliceInDialog(alice, inv, ok, "BYE", "z9hG4bK-sbye", inv.cseq+1, routes)
	alice.send(bye)
	got, from := bob.expectRequest(3 * time.Second)
	if got.Method != siplib.BYE {
		t.Fatalf("bob got %s, want BYE", got.Method)
	}
	if from.String() != ts.udp {
		t.Fatalf("BYE came from %s, want the proxy's socket %s", from, ts.udp)
	}
	br := viaBranch(got)
	if !strings.HasPrefix(br, statelessBranchPrefix) {
		t.Fatalf("BYE branch %q, want the stateless marker", br)
	}
	if got.Route() != nil {
		t.Errorf("our Route was not removed: %s", got.Route().Value())
	}
	if mf := got.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards %v, want 69", mf)
	}
	// A retransmission leaves with the same branch (§16.11), so bob's
	// server transaction recognises it.
	alice.send(bye)
	again, _ := bob.expectRequest(3 * time.Second)
	if viaBranch(again) != br {
		t.Fatalf("retransmitted BYE branch %q, first %q", viaBranch(again), br)
	}
	// Bob's 200 goes back through the proxy to alice's source address.
	bob.respondTo(got, 200, "OK", "", "", "", from)
	res := alice.expectResponse(3 * time.Second)
	if res.StatusCode != 200 || res.CSeq().MethodName != siplib.BYE {
		t.Fatalf("alice got %d for %v, want 200 for BYE", res.StatusCode, res.CSeq())
	}
	if n := len(res.GetHeaders("Via")); n != 1 {
		t.Errorf("response to alice has %d Vias, want only hers", n)
	}
	// Bob has ended the dialog; when alice's copy of the 200 is lost and
	// she retransmits, the proxy answers with the 200 it relayed, as a
	// stateful proxy's completed transaction would, and bob sees nothing.
	alice.send(bye)
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 200 || r.CSeq().MethodName != siplib.BYE {
		t.Fatalf("retransmitted BYE after the 200: alice got %d for %v", r.StatusCode, r.CSeq())
	}
	if b := recvRaw(t, bob.pc, 200*time.Millisecond); b != nil {
		t.Fatalf("a BYE retransmitted after the 200 reached bob:\n%s", b)
	}
	if d := metricValue(t, ts.metrics.transactions.WithLabelValues("BYE")) - txBefore; d != 2 {
		t.Errorf("BYE counted %v times, want 2 (original and retransmission)", d)
	}
}

func viaBranch(m siplib.Message) string {
	v := m.Via()
	if v == nil {
		return ""
	}
	b, _ := v.Params.Get("branch")
	return b
}

func TestForgedFlowTokenIsNotFollowed(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	alice, _, inv, _, ok := natCall(t, ts)

	// A victim socket the forged token points at.
	victim, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	vflow := Flow{Transport: "udp", Source: victim.LocalAddr().String(), Local: ts.udp}
	host, port, _ := net.SplitHostPort(ts.udp)
	for name, tok := range map[string]string{
		"signed with another key": dialogToken{FromTag: inv.fromTag, Caller: vflow, Callee: vflow}.encode([]byte("not the server secret")),
		"tampered body": func() string {
			good := dialogToken{FromTag: inv.fromTag, Caller: vflow, Callee: vflow}.encode(ts.tokenKey)
			real := strings.TrimPrefix(strings.SplitN(ok.GetHeader("Record-Route").Value(), "@", 2)[0], "<sip:")
			// The genuine signature on a body naming the victim.
			return strings.SplitN(good, ".", 2)[0] + "." + strings.SplitN(real, ".", 2)[1]
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			route := fmt.Sprintf("Route: <sip:%s@%s:%s;transport=udp;lr>", tok, host, port)
			msg := aliceInDialog(alice, inv, ok, "BYE", "z9hG4bK-forged-"+strings.ReplaceAll(name, " ", "-"), inv.cseq+5, route)
			// A Request-URI that is nobody's registered contact: without a
			// valid token there is no route, 481.
			alice.send(strings.Replace(msg, "sip:bob@192.168.1.50:5060", "sip:bob@10.7.7.7:5060", 1))
			if r := alice.expectResponse(3 * time.Second); r.StatusCode != 481 {
				t.Fatalf("forged token: %d, want 481", r.StatusCode)
			}
			if b := recvRaw(t, victim, 200*time.Millisecond); b != nil {
				t.Fatalf("the proxy sent to the forged flow:\n%s", b)
			}
		})
	}
}

func TestForgedStatelessResponseIsNotRelayed(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw"}, nil)
	victim, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	attacker := newUDPUA(t, ts.udp, "mallory", "")
	host, port, _ := net.SplitHostPort(ts.udp)
	// A response whose top Via looks like one of our stateless branches
	// and whose next Via names the victim: relaying it would make the
	// proxy a reflector.
	attacker.send(fmt.Sprintf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP %s:%s;branch=%s0123456789abcdef0123;rport
Via: SIP/2.0/UDP %s;branch=z9hG4bK-victim;rport
From: <sip:a@punchline>;tag=1
To: <sip:b@punchline>;tag=2
Call-ID: reflect
CSeq: 1 BYE
Content-Length: 0

`, host, port, statelessBranchPrefix, victim.LocalAddr().String()))
	if b := recvRaw(t, victim, 300*time.Millisecond); b != nil {
		t.Fatalf("forged response was relayed:\n%s", b)
	}
}

func TestToStatefulBranch(t *testing.T) {
	cases := []struct {
		name, msg string
		want      bool
	}{
		{"response to a forwarded INVITE", "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branchPrefix + "0011aabbccdd;rport\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\r\n", true},
		{"compact header and several hops in one line", "SIP/2.0 200 OK\r\nv : SIP/2.0/UDP 127.0.0.1;branch=" + branchPrefix + "ab, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\r\n", true},
		{"stateless forward", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=" + statelessBranchPrefix + "00\r\n\r\n", false},
		{"keepalive ping", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=" + branchPrefix + "ping1-0;rport\r\n\r\n", false},
		{"someone else's branch", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKother\r\n\r\n", false},
		{"ours only in the second hop", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=" + branchPrefix + "ab\r\n\r\n", false},
		{"no Via", "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n", false},
		{"branch text only in the body", "SIP/2.0 200 OK\r\nContent-Length: 40\r\n\r\nVia: SIP/2.0/UDP h;branch=" + branchPrefix + "ab", false},
	}
	for _, c := range cases {
		if got := toStatefulBranch([]byte(c.msg)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// recordingHandler keeps every log record's message.
type recordingHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestMalformedResponseToAForwardedRequestIsCountedNotLogged(t *testing.T) {
	var mu sync.Mutex
	var msgs []string
	ts := startServer(t, nil, func(c *Config) { c.Logger = slog.New(recordingHandler{&mu, &msgs}) })
	peer := newUDPUA(t, ts.udp, "peer", "")
	before := metricValue(t, ts.metrics.malformed)
	// It goes to sipgo unparsed (its branch is one of our client
	// transactions'); sipgo cannot parse it.
	peer.send("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP " + ts.udp + ";branch=" + branchPrefix + "00112233aabbccdd\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: x\n\n")
	deadline := time.Now().Add(3 * time.Second)
	for metricValue(t, ts.metrics.malformed) == before {
		if time.Now().After(deadline) {
			t.Fatal("the malformed response was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if strings.Contains(m, "parse") {
			t.Fatalf("logged %q", m)
		}
	}
}

// FuzzToStatefulBranch checks the raw Via scan against sipgo's parse. A
// response the scan claims skips the front door's parse and goes to
// sipgo's transaction layer, so the scan must never claim one whose
// parsed top Via is a stateless branch of ours (that relay would be
// lost); a response it misses is merely parsed twice.
func FuzzToStatefulBranch(f *testing.F) {
	for _, s := range []string{
		"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branchPrefix + "0011aabb;rport\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1;branch=" + statelessBranchPrefix + "00, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVIA : SIP/2.0/UDP 127.0.0.1;rport;branch=" + branchPrefix + "ping1-0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;BRANCH=" + branchPrefix + "ab\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := toStatefulBranch(data)
		m, err := siplib.ParseMessage(append([]byte(nil), data...))
		if err != nil {
			return
		}
		res, ok := m.(*siplib.Response)
		if !ok || res.Via() == nil {
			return
		}
		br, _ := res.Via().Params.Get("branch")
		if got && strings.HasPrefix(br, statelessBranchPrefix) {
			t.Fatalf("scan claims a response to a stateless forward (branch %q)", br)
		}
	})
}

func TestBurstWakesHelperReadersAndEveryRequestIsAnswered(t *testing.T) {
	ts := startServer(t, nil, func(c *Config) { c.RateLimit.PerSecond = -1 })
	const clients, each = 4, 100
	uas := make([]*rawUA, clients)
	for i := range uas {
		uas[i] = newUDPUA(t, ts.udp, "probe", "")
		// Room for every answer while the test is still sending.
		uas[i].pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	}
	// Back-to-back OPTIONS: far more than readerWindow datagrams within
	// helpAfter, so the primary reader wakes a helper.
	for n := range each {
		for i, ua := range uas {
			ua.send(options(ua, fmt.Sprintf("z9hG4bK-burst-%d-%d", i, n), ""))
		}
	}
	for i, ua := range uas {
		for n := range each {
			m, _ := ua.recv(5 * time.Second)
			r, ok := m.(*siplib.Response)
			if !ok || r.StatusCode != 200 {
				t.Fatalf("client %d: answer %d: got %v", i, n, m)
			}
		}
	}
	ts.mu.Lock()
	door := ts.doors[0]
	ts.mu.Unlock()
	if door.helped.Load() == 0 {
		t.Fatal("no helper reader was woken by the burst")
	}
}

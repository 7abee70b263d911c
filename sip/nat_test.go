package sip

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// recordingConn is the server's real UDP socket with a log of every
// destination it wrote to, so a test can prove where the server never
// sent anything.
type recordingConn struct {
	net.PacketConn
	mu    sync.Mutex
	dests []string
}

func (r *recordingConn) WriteTo(b []byte, a net.Addr) (int, error) {
	r.mu.Lock()
	r.dests = append(r.dests, a.String())
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, a)
}

func (r *recordingConn) sentTo(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.dests {
		if strings.HasPrefix(d, prefix) {
			out = append(out, d)
		}
	}
	return out
}

const privateContact = "<sip:bob@192.168.1.50:5060>"

// sdpOffer is an ICE offer as a softphone sends it; the proxy must carry
// it byte for byte.
const sdpOffer = "v=0\r\no=alice 1 1 IN IP4 192.168.7.7\r\ns=-\r\nc=IN IP4 192.168.7.7\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:aB3d\r\na=ice-pwd:0123456789abcdefghijklmn\r\n" +
	"a=candidate:1 1 udp 2130706431 192.168.7.7 40000 typ host\r\n" +
	"a=candidate:2 1 udp 1694498815 203.0.113.9 40000 typ srflx raddr 192.168.7.7 rport 40000\r\na=rtcp-mux\r\n"

const sdpAnswer = "v=0\r\no=bob 2 2 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\n" +
	"m=audio 50000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ice-ufrag:Zz9y\r\na=ice-pwd:zyxwvutsrqponmlkjihgfedc\r\n" +
	"a=candidate:1 1 udp 2130706431 192.168.1.50 50000 typ host\r\na=rtcp-mux\r\n"

func TestNATContactIsReachedAtItsSourceNotItsContactAddress(t *testing.T) {
	for _, bobTransport := range []string{"udp", "tcp"} {
		t.Run("callee registered over "+bobTransport, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			rec := &recordingConn{PacketConn: pc}
			ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, func(c *Config) {
				c.Listeners[0] = Listener{Transport: "udp", PacketConn: rec}
			})
			var bob *rawUA
			if bobTransport == "udp" {
				bob = newUDPUA(t, ts.udp, "bob", "bpw")
			} else {
				bob = newTCPUA(t, ts.tcp, "bob", "bpw")
			}
			res := bob.register(privateContact, 600, "")
			if res.StatusCode != 200 {
				t.Fatalf("register: %d %s", res.StatusCode, res.Reason)
			}
			bs, _ := ts.Lookup("bob")
			if len(bs) != 1 || bs[0].Flow.Source != bob.addr() {
				t.Fatalf("binding %+v, want flow from %s", bs, bob.addr())
			}

			alice := newUDPUA(t, ts.udp, "alice", "apw")
			inv := alice.invite("bob", sdpOffer)

			// The INVITE must arrive at bob's real socket, carrying the
			// private Contact as Request-URI and the SDP untouched.
			got, from := bob.expectRequest(3 * time.Second)
			if got.Method != siplib.INVITE {
				t.Fatalf("bob got %s, want INVITE", got.Method)
			}
			if got.Recipient.Host != "192.168.1.50" || got.Recipient.Port != 5060 {
				t.Errorf("Request-URI %s, want the registered contact", got.Recipient.String())
			}
			if string(got.Body()) != sdpOffer {
				t.Errorf("SDP changed by the proxy:\n%q\nwant\n%q", got.Body(), sdpOffer)
			}
			if len(got.GetHeaders("Record-Route")) == 0 {
				t.Fatal("no Record-Route on the forwarded INVITE")
			}
			bob.respondTo(got, 180, "Ringing", "btag", privateContact, "", from)
			ring := alice.expectResponse(3 * time.Second)
			if ring.StatusCode != 180 {
				t.Fatalf("alice got %d, want 180", ring.StatusCode)
			}
			bob.respondTo(got, 200, "OK", "btag", privateContact, sdpAnswer, from)
			ok := alice.expectResponse(3 * time.Second)
			if ok.StatusCode != 200 || string(ok.Body()) != sdpAnswer {
				t.Fatalf("alice got %d with body %q, want 200 with the answer untouched", ok.StatusCode, ok.Body())
			}
			// Alice's route set is the Record-Route reversed (§12.1.2).
			rrs := ok.GetHeaders("Record-Route")
			var routes []string
			for i := len(rrs) - 1; i >= 0; i-- {
				routes = append(routes, "Route: "+rrs[i].Value())
			}
			toWithTag := ok.To().String()
			inDialog := func(method string, cseq int, branch string) string {
				return fmt.Sprintf(`%s sip:bob@192.168.1.50:5060 SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:alice@punchline>;tag=%s
%s
Call-ID: %s
CSeq: %d %s
%s
Max-Forwards: 70
Content-Length: 0

`, method, alice.addr(), branch, inv.fromTag, toWithTag, inv.callID, cseq, method, strings.Join(routes, "\n"))
			}
			alice.send(inDialog("ACK", inv.cseq, "z9hG4bK-ack-1"))
			ack, _ := bob.expectRequest(3 * time.Second)
			if ack.Method != siplib.ACK {
				t.Fatalf("bob got %s, want ACK", ack.Method)
			}

			// Bob hangs up: his BYE goes to alice through the proxy.
			bobRoutes := []string{}
			for _, h := range got.GetHeaders("Record-Route") {
				bobRoutes = append(bobRoutes, "Route: "+h.Value())
			}
			bob.send(fmt.Sprintf(`BYE sip:alice@%s SIP/2.0
Via: SIP/2.0/%s %s;branch=z9hG4bK-bye-1;rport
From: <sip:bob@punchline>;tag=btag
To: <sip:alice@punchline>;tag=%s
Call-ID: %s
CSeq: 1 BYE
%s
Max-Forwards: 70
Content-Length: 0

`, alice.addr(), strings.ToUpper(bobTransport), bob.addr(), inv.fromTag, inv.callID, strings.Join(bobRoutes, "\n")))
			bye, byeFrom := alice.expectRequest(3 * time.Second)
			if bye.Method != siplib.BYE {
				t.Fatalf("alice got %s, want BYE", bye.Method)
			}
			alice.respondTo(bye, 200, "OK", "", "", "", byeFrom)
			if r := bob.expectResponse(3 * time.Second); r.StatusCode != 200 {
				t.Fatalf("bob's BYE got %d, want 200", r.StatusCode)
			}
			if sent := rec.sentTo("192.168.1.50"); len(sent) > 0 {
				t.Fatalf("server sent to the private Contact address: %v", sent)
			}
		})
	}
}

func TestRegisteredButUnreachableGives480(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	bob := newTCPUA(t, ts.tcp, "bob", "bpw")
	if res := bob.register(privateContact, 600, ""); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	// Bob's connection goes away: the flow is dead and the server cannot
	// open a connection back to his ephemeral port.
	bob.conn.Close()
	time.Sleep(100 * time.Millisecond)
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	alice.invite("bob", sdpOffer)
	res := alice.expectResponse(10 * time.Second)
	if res.StatusCode != 480 {
		t.Fatalf("got %d %s, want 480", res.StatusCode, res.Reason)
	}
}

func TestUDPContactsGetKeepalivePings(t *testing.T) {
	ts := startServer(t, map[string]string{"bob": "bpw"}, func(c *Config) { c.PingInterval = 100 * time.Millisecond })
	bob := newUDPUA(t, ts.udp, "bob", "bpw")
	if r := bob.register(privateContact, 600, ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	// The ping comes to the socket the phone registered from (its NAT
	// mapping), from the server's SIP port, and its answer is harmless.
	req, from := bob.expectRequest(2 * time.Second)
	if req.Method != siplib.OPTIONS || from.String() != ts.udp {
		t.Fatalf("got %s from %s, want OPTIONS from %s", req.Method, from, ts.udp)
	}
	bob.respondTo(req, 200, "OK", "pong", "", "", from)
	// The server keeps working after the stray answer.
	bob.send(options(bob, "z9hG4bK-after-ping", ""))
	for {
		m, _ := bob.recv(2 * time.Second)
		if m == nil {
			t.Fatal("no answer to OPTIONS after the ping")
		}
		if r, ok := m.(*siplib.Response); ok {
			if r.StatusCode != 200 {
				t.Fatalf("OPTIONS: %d", r.StatusCode)
			}
			break
		}
	}
}

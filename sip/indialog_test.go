package sip

import (
	"fmt"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

func TestRetransmitted2xxIsRelayedAndRoutelessInDialogRequestsFindTheContact(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	bob := newUDPUA(t, ts.udp, "bob", "bpw")
	if r := bob.register(privateContact, 600, ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	inv := alice.invite("bob", sdpOffer)
	got, from := bob.expectRequest(3 * time.Second)
	bob.respondTo(got, 200, "OK", "btag", privateContact, sdpAnswer, from)
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 200 {
		t.Fatalf("alice got %d", r.StatusCode)
	}
	// Bob did not see an ACK yet and retransmits his 200 (RFC 3261
	// §13.3.1.4). The INVITE transaction is over; the proxy relays the
	// 2xx statelessly (§16.7 step 10) so that alice can ACK it.
	bob.respondTo(got, 200, "OK", "btag", privateContact, sdpAnswer, from)
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 200 || r.CSeq().MethodName != siplib.INVITE {
		t.Fatalf("retransmitted 2xx: alice got %d %v", r.StatusCode, r.CSeq())
	}

	// A UA that ignores Record-Route sends its BYE to the proxy with the
	// callee's Contact as Request-URI and no Route: the proxy finds the
	// registered contact and uses its flow.
	alice.send(fmt.Sprintf(`BYE sip:bob@192.168.1.50:5060 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-bye-noroute;rport
From: <sip:alice@punchline>;tag=%s
To: <sip:bob@punchline>;tag=btag
Call-ID: %s
CSeq: 9 BYE
Max-Forwards: 70
Content-Length: 0

`, alice.addr(), inv.fromTag, inv.callID))
	bye, byeFrom := bob.expectRequest(3 * time.Second)
	if bye.Method != siplib.BYE {
		t.Fatalf("bob got %s, want BYE", bye.Method)
	}
	bob.respondTo(bye, 200, "OK", "", "", "", byeFrom)
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 200 {
		t.Fatalf("BYE: %d", r.StatusCode)
	}

	// An in-dialog request for a contact nobody registered gets 481, and
	// one with a foreign Route but no token of ours gets 403: no relaying
	// for strangers.
	alice.send(fmt.Sprintf(`BYE sip:eve@10.9.9.9:5060 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-bye-stranger;rport
From: <sip:alice@punchline>;tag=x
To: <sip:eve@punchline>;tag=y
Call-ID: stranger
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

`, alice.addr()))
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 481 {
		t.Fatalf("unknown in-dialog target: %d, want 481", r.StatusCode)
	}
	alice.send(fmt.Sprintf(`BYE sip:eve@10.9.9.9:5060 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-bye-relay;rport
From: <sip:alice@punchline>;tag=x
To: <sip:eve@punchline>;tag=y
Call-ID: stranger2
CSeq: 1 BYE
Route: <sip:10.9.9.9:5060;lr>
Max-Forwards: 70
Content-Length: 0

`, alice.addr()))
	if r := alice.expectResponse(3 * time.Second); r.StatusCode != 403 {
		t.Fatalf("foreign route: %d, want 403", r.StatusCode)
	}
}

func TestExpiredBindingsAreDropped(t *testing.T) {
	l := newLocation()
	now := time.Now()
	l.update("a", func([]Binding) ([]Binding, bool) {
		return []Binding{{Contact: "sip:a@1.1.1.1", Expires: now.Add(time.Second)}, {Contact: "sip:a@2.2.2.2", Expires: now.Add(time.Hour)}}, true
	})
	l.takeDirty()
	l.expire(now.Add(2 * time.Second))
	if l.total() != 1 || len(l.get("a", now.Add(2*time.Second))) != 1 {
		t.Fatalf("after expiry: %d bindings", l.total())
	}
	if _, ok := l.takeDirty()["a"]; !ok {
		t.Fatal("expiry not marked for the store")
	}
}

package sip

import (
	"strings"
	"sync"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// twoPhoneBob registers bob from two sockets (two phones) and returns them.
func twoPhoneBob(t *testing.T, ts *testServer) (*rawUA, *rawUA) {
	t.Helper()
	p1 := newUDPUA(t, ts.udp, "bob", "bpw")
	p2 := newUDPUA(t, ts.udp, "bob", "bpw")
	if r := p1.register("<sip:bob@192.168.1.50:5060>", 600, ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	if r := p2.register("<sip:bob@192.168.1.51:5060>", 600, ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	return p1, p2
}

func TestForkingRingsEveryContactAndCancelsTheLosers(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	p1, p2 := twoPhoneBob(t, ts)
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	alice.invite("bob", sdpOffer)

	inv1, from1 := p1.expectRequest(3 * time.Second)
	inv2, from2 := p2.expectRequest(3 * time.Second)
	if inv1.Method != siplib.INVITE || inv2.Method != siplib.INVITE {
		t.Fatalf("phones got %s and %s, want INVITE on both", inv1.Method, inv2.Method)
	}
	p1.respondTo(inv1, 180, "Ringing", "t1", "<sip:bob@192.168.1.50:5060>", "", from1)
	p2.respondTo(inv2, 180, "Ringing", "t2", "<sip:bob@192.168.1.51:5060>", "", from2)
	alice.expectResponse(3 * time.Second) // a 180
	p1.respondTo(inv1, 200, "OK", "t1", "<sip:bob@192.168.1.50:5060>", sdpAnswer, from1)

	// The phone that did not answer is cancelled...
	for {
		req, from := p2.expectRequest(3 * time.Second)
		if req.Method == siplib.CANCEL {
			p2.respondTo(req, 200, "OK", "", "", "", from)
			p2.respondTo(inv2, 487, "Request Terminated", "t2", "", "", from)
			break
		}
	}
	// ...and the caller gets the answer.
	for {
		res := alice.expectResponse(3 * time.Second)
		if res.StatusCode == 180 {
			continue
		}
		if res.StatusCode != 200 || string(res.Body()) != sdpAnswer {
			t.Fatalf("alice got %d, want the 200 with the answer", res.StatusCode)
		}
		break
	}
}

func TestBestResponseIsRelayedWhenNobodyAnswers(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	p1, p2 := twoPhoneBob(t, ts)
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	alice.invite("bob", sdpOffer)
	inv1, from1 := p1.expectRequest(3 * time.Second)
	inv2, from2 := p2.expectRequest(3 * time.Second)
	// One phone is busy, the other unavailable: busy says more (§16.7).
	p2.respondTo(inv2, 480, "Temporarily Unavailable", "t2", "", "", from2)
	p1.respondTo(inv1, 486, "Busy Here", "t1", "", "", from1)
	res := alice.expectResponse(3 * time.Second)
	if res.StatusCode != 486 {
		t.Fatalf("alice got %d, want 486", res.StatusCode)
	}
	// Each phone is ACKed by the proxy's client transaction.
	for _, p := range []*rawUA{p1, p2} {
		if ack, _ := p.expectRequest(3 * time.Second); ack.Method != siplib.ACK {
			t.Fatalf("phone got %s, want ACK for its final response", ack.Method)
		}
	}
}

type roomRecorder struct {
	mu    sync.Mutex
	users []string
}

func (r *roomRecorder) HandleRoom(req *SIPRequest, tx ServerTransaction, user string) {
	r.mu.Lock()
	r.users = append(r.users, user+">"+req.Recipient.User)
	r.mu.Unlock()
	tx.Respond(siplib.NewResponseFromRequest(req, 486, "Room Busy", nil))
}

func TestRoomRequestsGoToTheRoomHandlerAfterAuthentication(t *testing.T) {
	rooms := &roomRecorder{}
	ts := startServer(t, map[string]string{"alice": "apw"}, func(c *Config) { c.RoomHandler = rooms })
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	alice.invite("room-standup", sdpOffer)
	if res := alice.expectResponse(3 * time.Second); res.StatusCode != 486 {
		t.Fatalf("got %d, want the room handler's 486", res.StatusCode)
	}
	rooms.mu.Lock()
	defer rooms.mu.Unlock()
	if len(rooms.users) != 1 || rooms.users[0] != "alice>room-standup" {
		t.Fatalf("room handler saw %v", rooms.users)
	}
}

func TestCRLFKeepaliveOnTCPIsAnswered(t *testing.T) {
	ts := startServer(t, nil, nil)
	ua := newTCPUA(t, ts.tcp, "x", "")
	ua.sendRaw([]byte("\r\n\r\n"))
	ua.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, err := ua.conn.Read(buf)
	if err != nil || strings.Trim(string(buf[:n]), "\r\n") != "" || n == 0 {
		t.Fatalf("pong %q, %v: want CRLF (RFC 5626 §3.5.1)", buf[:n], err)
	}
}

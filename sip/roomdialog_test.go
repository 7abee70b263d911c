package sip

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// roomDialogRecorder answers every room request 200 and records
// "METHOD user" (ACK has no transaction to answer).
type roomDialogRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *roomDialogRecorder) HandleRoom(req *SIPRequest, tx ServerTransaction, user string) {
	r.mu.Lock()
	r.seen = append(r.seen, string(req.Method)+" "+user)
	r.mu.Unlock()
	if tx != nil {
		tx.Respond(siplib.NewResponseFromRequest(req, 200, "OK", nil)) //nolint:errcheck
	}
}

func (r *roomDialogRecorder) saw(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.seen, s)
}

// In-dialog requests whose Request-URI is the focus's Contact (a room user
// at our own address) belong to the focus: a bridged phone's BYE and ACK,
// a participant's SUBSCRIBE refresh with the focus's To tag (RFC 6665
// §4.1.2.1). The proxy hands them over instead of answering 481; the
// SUBSCRIBE is authenticated first, like an initial one.
func TestInDialogRoomRequestsReachTheRoomHandler(t *testing.T) {
	rooms := &roomDialogRecorder{}
	ts := startServer(t, map[string]string{"alice": "apw"}, func(c *Config) { c.RoomHandler = rooms })
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	ruri := "sip:room-standup@" + ts.udp
	msg := func(method string, cseq int, extra string) string {
		return fmt.Sprintf(`%s %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK-dlg-%d;rport
From: <sip:alice@punchline>;tag=alicetag
To: <sip:room-standup@punchline>;tag=focustag
Call-ID: room-dialog-1
CSeq: %d %s
Contact: <sip:alice@%s>
Max-Forwards: 70
%sContent-Length: 0

`, method, ruri, alice.addr(), cseq, cseq, method, alice.addr(), extra)
	}

	// A bridged phone hangs up: the BYE goes to the focus unauthenticated.
	alice.send(msg("BYE", 1, ""))
	if res := alice.expectResponse(3 * time.Second); res.StatusCode != 200 {
		t.Fatalf("BYE to the focus's Contact: got %d %s, want the room handler's 200", res.StatusCode, res.Reason)
	}
	if !rooms.saw("BYE ") {
		t.Fatalf("room handler did not get the BYE: %v", rooms.seen)
	}

	// The ACK of the focus's 2xx reaches it too.
	alice.send(msg("ACK", 2, ""))
	deadline := time.Now().Add(3 * time.Second)
	for !rooms.saw("ACK ") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !rooms.saw("ACK ") {
		t.Fatalf("room handler did not get the ACK: %v", rooms.seen)
	}

	// A SUBSCRIBE refresh inside the dialog is challenged, then handed
	// over with the authenticated user.
	sub := "Event: conference\nExpires: 4\n"
	alice.send(msg("SUBSCRIBE", 3, sub))
	res := alice.expectResponse(3 * time.Second)
	if res.StatusCode != 407 {
		t.Fatalf("in-dialog SUBSCRIBE without credentials: got %d, want 407", res.StatusCode)
	}
	if rooms.saw("SUBSCRIBE ") || rooms.saw("SUBSCRIBE alice") {
		t.Fatalf("an unauthenticated SUBSCRIBE reached the room handler: %v", rooms.seen)
	}
	nonce := challengeFor(t, res, "MD5")
	alice.send(msg("SUBSCRIBE", 4, sub+"Proxy-Authorization: "+digestAuth("alice", "apw", "punchline", "SUBSCRIBE", ruri, nonce, "MD5", 1)+"\n"))
	if res := alice.expectResponse(3 * time.Second); res.StatusCode != 200 {
		t.Fatalf("authenticated in-dialog SUBSCRIBE: got %d %s, want the room handler's 200", res.StatusCode, res.Reason)
	}
	if !rooms.saw("SUBSCRIBE alice") {
		t.Fatalf("room handler did not get the SUBSCRIBE as alice: %v", rooms.seen)
	}

	// A room URI at someone else's address is no dialog of ours.
	alice.send(`BYE sip:room-standup@192.0.2.7:5060 SIP/2.0
Via: SIP/2.0/UDP ` + alice.addr() + `;branch=z9hG4bK-dlg-foreign;rport
From: <sip:alice@punchline>;tag=alicetag
To: <sip:room-standup@punchline>;tag=focustag
Call-ID: room-dialog-2
CSeq: 5 BYE
Max-Forwards: 70
Content-Length: 0

`)
	if res := alice.expectResponse(3 * time.Second); res.StatusCode != 481 {
		t.Fatalf("BYE to a foreign room URI: got %d, want 481", res.StatusCode)
	}
}

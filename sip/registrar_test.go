package sip

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

func contactsOf(res *siplib.Response) map[string]string {
	out := map[string]string{}
	for _, h := range res.GetHeaders("Contact") {
		c := h.(*siplib.ContactHeader)
		e, _ := c.Params.Get("expires")
		q, _ := c.Params.Get("q")
		out[c.Address.String()] = e + "/" + q
	}
	return out
}

func TestRegistrar(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, func(c *Config) {
		c.MinExpires, c.MaxExpires = 60, 600
	})

	t.Run("several contacts with q-values are all listed with their expiry", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		res := ua.register("<sip:alice@10.0.0.1:5060>;q=0.5, <sip:alice@10.0.0.2:5060>;expires=120", 300, "")
		if res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		got := contactsOf(res)
		if len(got) != 2 || !strings.HasPrefix(got["sip:alice@10.0.0.1:5060"], "300/0.5") || got["sip:alice@10.0.0.2:5060"] != "120/" {
			t.Fatalf("200 OK contacts %v, want both with expires 300 (q 0.5) and 120", got)
		}
		bs, _ := ts.Lookup("alice")
		if len(bs) != 2 || bs[0].Contact != "sip:alice@10.0.0.2:5060" {
			t.Fatalf("lookup %v: want both, q=1 first", bs)
		}
	})
	t.Run("too short expiry gets 423 with Min-Expires", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		res := ua.register("<sip:alice@10.0.0.3:5060>", 10, "")
		if res.StatusCode != 423 {
			t.Fatalf("got %d, want 423", res.StatusCode)
		}
		if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
			t.Fatalf("Min-Expires %v, want 60", h)
		}
	})
	t.Run("too long expiry is capped at the maximum", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "bob", "bpw")
		res := ua.register("<sip:bob@10.0.0.9:5060>", 99999, "")
		if got := contactsOf(res)["sip:bob@10.0.0.9:5060"]; got != "600/" {
			t.Fatalf("expires %q, want 600", got)
		}
	})
	t.Run("Contact star with Expires 0 removes every binding", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		res := ua.register("*", 0, "")
		if res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 0 {
			t.Fatalf("got %d with %d contacts, want 200 with none", res.StatusCode, len(res.GetHeaders("Contact")))
		}
		if _, err := ts.Lookup("alice"); err == nil {
			t.Fatal("alice still registered")
		}
	})
	t.Run("Contact star with a nonzero Expires is a bad request", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		if res := ua.register("*", 60, ""); res.StatusCode != 400 {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
	t.Run("expires=0 removes one contact", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		ua.register("<sip:alice@10.0.0.1:5060>, <sip:alice@10.0.0.2:5060>", 300, "")
		res := ua.register("<sip:alice@10.0.0.1:5060>;expires=0", 300, "")
		if got := contactsOf(res); len(got) != 1 || got["sip:alice@10.0.0.2:5060"] == "" {
			t.Fatalf("contacts %v, want only 10.0.0.2", got)
		}
	})
	t.Run("SHA-256 digest (RFC 8760) registers", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "bob", "bpw")
		if res := ua.registerAlg("<sip:bob@10.0.0.8:5060>", 300, "", "SHA-256"); res.StatusCode != 200 {
			t.Fatalf("got %d, want 200", res.StatusCode)
		}
	})
	t.Run("credentials that do not match the AOR are forbidden", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "bob", "bpw")
		ua.user = "alice" // To: alice, credentials computed as alice with bob's password
		res := ua.register("<sip:alice@10.0.0.66:5060>", 300, "")
		if res.StatusCode != 403 {
			t.Fatalf("got %d, want 403", res.StatusCode)
		}
	})
}

func TestDigestNonceReplayAndStale(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw"}, func(c *Config) { c.NonceLifetime = 300 * time.Millisecond })
	ua := newUDPUA(t, ts.udp, "alice", "apw")
	reg := func(branch, auth string) *siplib.Response {
		ua.send(fmt.Sprintf(`REGISTER sip:%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:alice@punchline>;tag=x
To: <sip:alice@punchline>
Call-ID: replay-1
CSeq: %d REGISTER
Contact: <sip:alice@10.1.1.1>
Max-Forwards: 70
%sContent-Length: 0

`, ts.udp, ua.addr(), branch, len(branch), auth))
		return ua.expectResponse(3 * time.Second)
	}
	res := reg("z9hG4bK-1", "")
	nonce := challengeFor(t, res, "MD5")
	auth := "Authorization: " + digestAuth("alice", "apw", "punchline", "REGISTER", "sip:"+ts.udp, nonce, "MD5", 1) + "\n"
	if res := reg("z9hG4bK-22", auth); res.StatusCode != 200 {
		t.Fatalf("first use: %d", res.StatusCode)
	}
	// A retransmission (same branch) gets the same answer again, not a
	// replay refusal.
	if res := reg("z9hG4bK-22", auth); res.StatusCode != 200 {
		t.Fatalf("retransmission: got %d, want the cached 200", res.StatusCode)
	}
	// The same nonce count again (a captured request replayed in a new
	// transaction) must be refused.
	res = reg("z9hG4bK-333", auth)
	if res.StatusCode != 401 {
		t.Fatalf("replayed nc: got %d, want 401", res.StatusCode)
	}
	// A higher count on the same nonce is fine.
	auth2 := "Authorization: " + digestAuth("alice", "apw", "punchline", "REGISTER", "sip:"+ts.udp, nonce, "MD5", 2) + "\n"
	if res := reg("z9hG4bK-4444", auth2); res.StatusCode != 200 {
		t.Fatalf("nc=2: got %d, want 200", res.StatusCode)
	}
	// After the nonce lifetime the client is told its nonce is stale.
	time.Sleep(400 * time.Millisecond)
	auth3 := "Authorization: " + digestAuth("alice", "apw", "punchline", "REGISTER", "sip:"+ts.udp, nonce, "MD5", 3) + "\n"
	res = reg("z9hG4bK-55555", auth3)
	if res.StatusCode != 401 || !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("expired nonce: got %d %v, want 401 with stale=true", res.StatusCode, res.GetHeader("WWW-Authenticate"))
	}
}

func TestStatelessAnswersCopyTheTransactionHeaders(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw"}, nil)
	ua := newUDPUA(t, ts.udp, "alice", "apw")
	req := func(branch, auth string) *siplib.Response {
		ua.send(fmt.Sprintf(`REGISTER sip:%s SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=%s;rport
Via: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bK-second
From: "Alice" <sip:alice@punchline>;tag=from1
To: <sip:alice@punchline>
Call-ID: stateless-1
CSeq: %d REGISTER
Contact: <sip:alice@10.1.1.1:5062;transport=udp>;q=0.5
Max-Forwards: 70
%sContent-Length: 0

`, ts.udp, branch, len(auth)+1, auth))
		return ua.expectResponse(3 * time.Second)
	}
	res := req("z9hG4bK-s1", "")
	if res.StatusCode != 401 {
		t.Fatalf("got %d, want 401", res.StatusCode)
	}
	vias := res.GetHeaders("Via")
	if len(vias) != 2 || !strings.Contains(vias[0].Value(), "rport="+strconv.Itoa(ua.port())) ||
		!strings.Contains(vias[0].Value(), "received=127.0.0.1") || !strings.Contains(vias[1].Value(), "z9hG4bK-second") {
		t.Fatalf("Vias %v: want both, the top one with rport and received filled", vias)
	}
	tag1, _ := res.To().Params.Get("tag")
	if f, _ := res.From().Params.Get("tag"); f != "from1" || tag1 == "" || res.CallID().Value() != "stateless-1" || res.CSeq().SeqNo != 1 {
		t.Fatalf("From tag %q, To tag %q, Call-ID %q, CSeq %v", f, tag1, res.CallID().Value(), res.CSeq())
	}
	if h := res.GetHeader("Server"); h == nil || h.Value() != "punchline" {
		t.Fatalf("Server %v", h)
	}
	// The retransmission is answered again (not from a cache), with a
	// fresh nonce but the same To tag.
	res2 := req("z9hG4bK-s1", "")
	if tag2, _ := res2.To().Params.Get("tag"); res2.StatusCode != 401 || tag2 != tag1 {
		t.Fatalf("retransmission: %d with To tag %q, want 401 with %q", res2.StatusCode, tag2, tag1)
	}
	nonce := challengeFor(t, res2, "MD5")
	auth := "Authorization: " + digestAuth("alice", "apw", "punchline", "REGISTER", "sip:"+ts.udp, nonce, "MD5", 1) + "\n"
	ok := req("z9hG4bK-s2", auth)
	if ok.StatusCode != 200 {
		t.Fatalf("got %d, want 200", ok.StatusCode)
	}
	if got := contactsOf(ok); len(got) != 1 || got["sip:alice@10.1.1.1:5062;transport=udp"] != "3600/0.5" {
		t.Fatalf("200 contacts %v, want the one with expires 3600 and q 0.5", got)
	}
	if ok.GetHeader("Date") == nil || ok.ContentLength() == nil || *ok.ContentLength() != 0 {
		t.Fatal("200 without Date or Content-Length: 0")
	}
	// Nothing of the exchange is kept for retransmissions: that was about
	// a kilobyte per registration for 5 s.
	if n := ts.replies.len(); n != 0 {
		t.Fatalf("%d REGISTER answers cached", n)
	}
}

func TestRawViaRendersAsSipgo(t *testing.T) {
	for _, v := range []string{
		"SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1;rport=40123;received=203.0.113.7",
		"SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK-2",
		"SIP/2.0/UDP phone.example;branch=z9hG4bK-3;rport",
		"SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-4;alias",
	} {
		raw := "OPTIONS sip:x@y SIP/2.0\r\nVia: " + v + "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		m, err := siplib.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		via := m.(*siplib.Request).Via()
		var a rawAnswer
		a.via(via)
		if got, want := string(a.b), via.String()+"\r\n"; got != want {
			t.Errorf("raw %q, sipgo %q", got, want)
		}
	}
}

package sip

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v4"
)

func options(ua *rawUA, branch, extra string) string {
	return fmt.Sprintf(`OPTIONS sip:%s SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s;rport
From: <sip:probe@punchline>;tag=p
To: <sip:%s>
Call-ID: opt-%s
CSeq: 1 OPTIONS
Max-Forwards: 70
%sContent-Length: 0

`, ua.server, ua.addr(), branch, ua.server, branch, extra)
}

func TestMalformedRequestsGet400WithAReason(t *testing.T) {
	ts := startServer(t, nil, nil)
	ua := newUDPUA(t, ts.udp, "probe", "")
	cases := []struct {
		name, msg, why string
	}{
		{"header line without a colon", strings.Replace(options(ua, "z9hG4bK-m1", ""), "Max-Forwards: 70", "Max-Forwards 70", 1), "no value"},
		{"CSeq method differs from the request method", strings.Replace(options(ua, "z9hG4bK-m2", ""), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1), "CSeq method"},
		{"missing From", strings.Replace(options(ua, "z9hG4bK-m3", ""), "From: <sip:probe@punchline>;tag=p\n", "", 1), "missing From"},
		{"bad Content-Length", strings.Replace(options(ua, "z9hG4bK-m4", ""), "Content-Length: 0", "Content-Length: x", 1), ""},
		{"unsupported Request-URI scheme", strings.Replace(options(ua, "z9hG4bK-m5", ""), "OPTIONS sip:", "OPTIONS http:", 1), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ua.send(c.msg)
			res := ua.expectResponse(2 * time.Second)
			if res.StatusCode != 400 {
				t.Fatalf("got %d %s, want 400", res.StatusCode, res.Reason)
			}
			w := res.GetHeader("Warning")
			if w == nil || !strings.Contains(w.Value(), c.why) {
				t.Fatalf("Warning %v, want a reason containing %q", w, c.why)
			}
		})
	}
	t.Run("oversize message is refused with 513", func(t *testing.T) {
		big := options(ua, "z9hG4bK-big", "X-Pad: "+strings.Repeat("a", 9000)+"\n")
		ua.send(big)
		if res := ua.expectResponse(2 * time.Second); res.StatusCode != 513 {
			t.Fatalf("got %d, want 513", res.StatusCode)
		}
	})
	t.Run("unparseable garbage is dropped and the server still answers", func(t *testing.T) {
		ua.sendRaw([]byte("\x16\x03\x01 garbage that is not SIP\r\n\r\n"))
		ua.sendRaw([]byte("INVITE\r\n\r\n"))
		ua.send(options(ua, "z9hG4bK-after", ""))
		if res := ua.expectResponse(2 * time.Second); res.StatusCode != 200 {
			t.Fatalf("OPTIONS after garbage: %d", res.StatusCode)
		}
	})
	if got := metricValue(t, ts.metrics.malformed); got < float64(len(cases)) {
		t.Errorf("malformed counter %v, want at least %d", got, len(cases))
	}
}

func TestFloodingSourceGets503WhileOthersAreServed(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw"}, func(c *Config) {
		c.RateLimit = RateLimit{PerSecond: 50, Burst: 50}
	})
	// Both clients are on loopback, so give the flooder its own source IP
	// in 127/8.
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	flood := &rawUA{t: t, pc: pc, server: ts.udp, tr: "UDP", user: "flood"}
	srvAddr, _ := net.ResolveUDPAddr("udp", ts.udp)
	t.Cleanup(func() { pc.Close() })

	// 400 requests in about 0.4 s, eight times the allowed rate; paced
	// only so that the kernel's socket buffer does not simply drop them.
	const n = 400
	sent := make(chan struct{})
	start := time.Now()
	var elapsed time.Duration
	go func() {
		// close runs last, after elapsed is set.
		defer close(sent)
		defer func() { elapsed = time.Since(start) }()
		for i := range n {
			// Not sendRaw: t.Fatal must not be called off the test
			// goroutine, and a lost datagram is part of a flood anyway.
			pc.WriteTo([]byte(crlf(options(flood, fmt.Sprintf("z9hG4bK-f%d", i), ""))), srvAddr)
			if i%10 == 9 {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	// Meanwhile a normal client registers, repeatedly, and is served.
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	for i := range 3 {
		if res := alice.register("<sip:alice@10.0.0.1>", 300, ""); res.StatusCode != 200 {
			t.Fatalf("normal client's register %d got %d during the flood, want 200", i, res.StatusCode)
		}
	}
	<-sent
	var ok, busy int
	retryAfter := false
	for {
		m, _ := flood.recv(500 * time.Millisecond)
		if m == nil {
			break
		}
		res := m.(*siplib.Response)
		switch res.StatusCode {
		case 200:
			ok++
		case 503:
			busy++
			retryAfter = retryAfter || res.GetHeader("Retry-After") != nil
		}
	}
	if busy == 0 || !retryAfter {
		t.Fatalf("flooder got %d OK and %d 503 (Retry-After %v): want 503s with Retry-After", ok, busy, retryAfter)
	}
	// At most the burst plus the refill over the time the flood took (the
	// registrations above come from another address and do not count).
	if limit := 50 + int(50*elapsed.Seconds()*1.2) + 5; ok > limit {
		t.Fatalf("flooder got %d of %d requests served in %v, want at most %d", ok, n, elapsed, limit)
	}
	if metricValue(t, ts.metrics.rateLimited) < float64(busy) {
		t.Fatal("rate-limited counter below the 503s seen")
	}
	t.Logf("flood of %d: %d served, %d answered 503, rest dropped", n, ok, busy)
}

func TestSTUNKeepaliveOnTheSIPPort(t *testing.T) {
	ts := startServer(t, nil, nil)
	ua := newUDPUA(t, ts.udp, "probe", "")
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	ua.sendRaw(req.Raw)
	buf := make([]byte, 1500)
	ua.pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := ua.pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no STUN answer: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	if err := res.Decode(); err != nil || res.Type != stun.BindingSuccess || res.TransactionID != req.TransactionID {
		t.Fatalf("answer %v (%v), want binding success for our transaction", res, err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil {
		t.Fatal(err)
	}
	if got := net.JoinHostPort(xa.IP.String(), fmt.Sprint(xa.Port)); got != ua.addr() {
		t.Fatalf("mapped address %s, want %s", got, ua.addr())
	}
	// SIP on the same socket still works afterwards.
	ua.send(options(ua, "z9hG4bK-s1", ""))
	if res := ua.expectResponse(2 * time.Second); res.StatusCode != 200 {
		t.Fatalf("OPTIONS after STUN: %d", res.StatusCode)
	}
}

func TestProxyRefusals(t *testing.T) {
	ts := startServer(t, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	alice := newUDPUA(t, ts.udp, "alice", "apw")
	t.Run("unknown user gets 404", func(t *testing.T) {
		alice.invite("nobody", sdpOffer)
		if res := alice.expectResponse(3 * time.Second); res.StatusCode != 404 {
			t.Fatalf("got %d, want 404", res.StatusCode)
		}
	})
	t.Run("user who is not registered gets 480", func(t *testing.T) {
		alice.invite("bob", sdpOffer)
		if res := alice.expectResponse(3 * time.Second); res.StatusCode != 480 {
			t.Fatalf("got %d, want 480", res.StatusCode)
		}
	})
	t.Run("wrong password on INVITE gets 403", func(t *testing.T) {
		mallory := newUDPUA(t, ts.udp, "alice", "guess")
		mallory.invite("bob", sdpOffer)
		if res := mallory.expectResponse(3 * time.Second); res.StatusCode != 403 {
			t.Fatalf("got %d, want 403", res.StatusCode)
		}
	})
	t.Run("Max-Forwards 0 gets 483", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "x", "")
		ua.send(strings.Replace(strings.Replace(options(ua, "z9hG4bK-mf", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1),
			"OPTIONS sip:"+ts.udp, "OPTIONS sip:bob@example.org", 1))
		if res := ua.expectResponse(2 * time.Second); res.StatusCode != 483 {
			t.Fatalf("got %d, want 483", res.StatusCode)
		}
	})
	t.Run("a request that already passed us unchanged gets 482", func(t *testing.T) {
		ua := newUDPUA(t, ts.udp, "alice", "apw")
		// Build the INVITE alice would send, compute the loop hash the
		// proxy would put in its branch, and send it with that Via on top
		// of alice's, as if it had come around.
		req := siplib.NewRequest(siplib.INVITE, siplib.Uri{Scheme: "sip", User: "bob", Host: strings.Split(ts.udp, ":")[0], Port: ts.Server.Addrs()[0].Addr.(*net.UDPAddr).Port})
		from := &siplib.FromHeader{Address: siplib.Uri{Scheme: "sip", User: "alice", Host: "punchline"}, Params: siplib.NewParams()}
		from.Params.Add("tag", "loopy")
		cid := siplib.CallIDHeader("loop-1")
		req.AppendHeader(from)
		req.AppendHeader(&cid)
		req.AppendHeader(&siplib.CSeqHeader{SeqNo: 1, MethodName: siplib.INVITE})
		h := loopHash(req)
		ua.send(fmt.Sprintf(`INVITE %s SIP/2.0
Via: SIP/2.0/UDP %s;branch=%s%sdeadbeef;rport
Via: SIP/2.0/UDP %s;branch=z9hG4bK-orig;rport
From: <sip:alice@punchline>;tag=loopy
To: <sip:bob@punchline>
Call-ID: loop-1
CSeq: 1 INVITE
Max-Forwards: 60
Content-Length: 0

`, req.Recipient.String(), ts.udp, branchPrefix, h, ua.addr()))
		res := ua.expectResponse(2 * time.Second)
		if res.StatusCode != 482 {
			t.Fatalf("got %d, want 482", res.StatusCode)
		}
	})
}

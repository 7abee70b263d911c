package focus_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/sip/focus"
)

// harness is a minimal SIP front for the focus: a sipgo server on a
// loopback UDP port that hands every request to the focus, trusting the
// From user as authenticated (the real server's digest check is tested in
// package sip; here the focus's own behaviour is under test).
type harness struct {
	f    *focus.Focus
	addr string
	stop func()
}

func newHarness(t *testing.T, cfg focus.Config) *harness {
	t.Helper()
	return newHarnessOn(t, cfg, "127.0.0.1:0")
}

// newHarnessOn is newHarness on a given UDP address (a restarted server).
func newHarnessOn(t *testing.T, cfg focus.Config, addr string) *harness {
	t.Helper()
	// As the real server does (sip.New): rosters and SDP with many
	// candidates exceed sipgo's default 1300-byte UDP limit; on loopback and
	// in the lab the path MTU is no concern.
	if sip.UDPMTUSize < 65000 {
		sip.UDPMTUSize = 65000
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("focus-test"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cfg.Client = client
	cfg.ContactHost, cfg.ContactPort = "127.0.0.1", port
	if cfg.Realm == "" {
		cfg.Realm = "example.org"
	}
	f, err := focus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := func(req *sip.Request, tx sip.ServerTransaction) {
		user := ""
		if req.Method == sip.SUBSCRIBE || req.Method == sip.INVITE {
			user = req.From().Address.User
		}
		f.HandleRoom(req, tx, user)
	}
	for _, m := range []sip.RequestMethod{sip.SUBSCRIBE, sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS} {
		srv.OnRequest(m, h)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeUDP(pc) //nolint:errcheck // ends on close.
	}()
	hh := &harness{f: f, addr: "127.0.0.1:" + strconv.Itoa(port)}
	hh.stop = func() {
		f.Close()
		client.Close()
		srv.Close()
		pc.Close()
		ua.Close()
		<-done
	}
	return hh
}

// testLogger sends the focus's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitRoster(t *testing.T, s *conference.Subscriber, timeout time.Duration, ok func(users []string) bool) ([]string, time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := time.After(timeout)
	for {
		var users []string
		if ci := s.Roster(); ci != nil {
			for _, u := range ci.Users {
				users = append(users, u.DisplayText)
			}
			if ok(users) {
				return users, time.Since(start)
			}
		}
		select {
		case <-s.Updates():
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("roster never matched; last %v", users)
		}
	}
}

func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	m := map[string]bool{}
	for _, g := range got {
		m[g] = true
	}
	for _, w := range want {
		if !m[w] {
			return false
		}
	}
	return true
}

func TestRosterNotifiedAndVanishedParticipantDroppedWithinTenSeconds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportLayer).ListenAndServe"))
	h := newHarness(t, focus.Config{Log: testLogger(t)})
	defer h.stop()
	ctx := context.Background()
	sub := func(user string) *conference.Subscriber {
		s, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: h.addr, User: user, Password: "x", Domain: "example.org", Room: "standup"})
		if err != nil {
			t.Fatalf("%s subscribe: %v", user, err)
		}
		return s
	}
	alice := sub("alice")
	defer alice.Close()
	bob := sub("bob")
	carol := sub("carol")
	defer carol.Close()
	waitRoster(t, alice, 5*time.Second, func(u []string) bool { return sameSet(u, "alice", "bob", "carol") })
	waitRoster(t, carol, 5*time.Second, func(u []string) bool { return sameSet(u, "alice", "bob", "carol") })
	ci := alice.Roster()
	if ci.Entity != "sip:room-standup@example.org" || ci.Users[0].DisplayText != "alice" || ci.Users[0].Seq >= ci.Users[2].Seq {
		t.Fatalf("roster header or join order wrong: %+v", ci)
	}

	// bob crashes: no unsubscribe, no more refreshes.
	bob.Abandon()
	users, took := waitRoster(t, alice, 12*time.Second, func(u []string) bool { return sameSet(u, "alice", "carol") })
	t.Logf("bob gone from alice's roster after %v: %v", took.Round(100*time.Millisecond), users)
	if took >= 10*time.Second {
		t.Fatalf("vanished participant dropped after %v, want < 10 s", took)
	}
	// The survivors keep their subscriptions (refreshes keep working).
	if err := alice.Err(); err != nil {
		t.Fatalf("alice's refresh failed: %v", err)
	}
	// A clean leave is seen at once.
	carol.Close()
	waitRoster(t, alice, 3*time.Second, func(u []string) bool { return sameSet(u, "alice") })
	if n := h.f.Bytes("standup"); n != 0 {
		t.Fatalf("a pure mesh room carried %d media bytes through the server", n)
	}
}

func TestRoomPIN(t *testing.T) {
	h := newHarness(t, focus.Config{PINs: map[string]string{"board": "4321"}})
	defer h.stop()
	ctx := context.Background()
	_, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: h.addr, User: "eve", Domain: "example.org", Room: "board", PIN: "0000"})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong PIN must be refused with 403, got %v", err)
	}
	s, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: h.addr, User: "ann", Domain: "example.org", Room: "board", PIN: "4321"})
	if err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	s.Close()
}

func TestMetricsShowPureMeshRoomWithZeroBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, focus.Config{Metrics: reg})
	defer h.stop()
	s, err := conference.Subscribe(context.Background(), conference.SubscriberConfig{Server: h.addr, User: "ann", Domain: "example.org", Room: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			if m.Counter != nil {
				seen[key] = m.Counter.GetValue()
			} else if m.Gauge != nil {
				seen[key] = m.Gauge.GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"punchline_conference_media_bytes_total,direction=in,room=quiet":  0,
		"punchline_conference_media_bytes_total,direction=out,room=quiet": 0,
		"punchline_conference_media_bytes_all_total,direction=in":         0,
		"punchline_conference_participants,kind=mesh,room=quiet":          1,
		"punchline_conference_rooms":                                      1,
	} {
		got, ok := seen[key]
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}

func TestRelayBytesAttributedToRoomMembers(t *testing.T) {
	var mu sync.Mutex
	relayed := map[string]uint64{"ann": 5000, "zed": 100}
	reg := prometheus.NewRegistry()
	h := newHarness(t, focus.Config{Metrics: reg, RelayBytes: func() map[string]uint64 {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]uint64{}
		for k, v := range relayed {
			out[k] = v
		}
		return out
	}})
	defer h.stop()
	s, err := conference.Subscribe(context.Background(), conference.SubscriberConfig{Server: h.addr, User: "ann", Domain: "example.org", Room: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Bytes from before ann joined are not the room's; what she relays
	// while in it is; zed is in no room.
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	relayed["ann"] += 1200
	relayed["zed"] += 700
	mu.Unlock()
	deadline := time.Now().Add(3 * time.Second)
	for {
		v := gatherValue(t, reg, "punchline_conference_relay_bytes_total", "room", "r")
		if v == 1200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room relay bytes = %v, want 1200", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func gatherValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// A refresh inside a subscription the focus does not have (it expired, or
// the To tag is not ours) is answered 481 (RFC 6665 §4.2.1.2), so the
// subscriber knows to start a new one instead of being silently re-added.
func TestRefreshOfUnknownSubscriptionIs481(t *testing.T) {
	h := newHarness(t, focus.Config{})
	defer h.stop()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	raddr, err := net.ResolveUDPAddr("udp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	req := "SUBSCRIBE sip:room-standup@" + h.addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + pc.LocalAddr().String() + ";branch=z9hG4bK-stale-1;rport\r\n" +
		"From: <sip:ann@example.org>;tag=anntag\r\n" +
		"To: <sip:room-standup@example.org>;tag=notours\r\n" +
		"Call-ID: stale-subscription\r\n" +
		"CSeq: 7 SUBSCRIBE\r\n" +
		"Contact: <sip:ann@" + pc.LocalAddr().String() + ">\r\n" +
		"Event: conference\r\nExpires: 4\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := pc.WriteTo([]byte(req), raddr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 481 ") {
		t.Fatalf("stale in-dialog SUBSCRIBE answered %q, want 481", strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
	}
	if n := len(h.f.Roster().Members("standup")); n != 0 {
		t.Fatalf("a stale refresh joined the room: %d members", n)
	}
}

// A focus that lost our subscription (here: the server restarted and
// forgot every room) answers the next refresh 481; the subscriber joins
// again in a new dialog and gets the new focus's roster, without the
// application doing anything.
func TestSubscriberRejoinsAfterFocusForgotIt(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportLayer).ListenAndServe"))
	h1 := newHarness(t, focus.Config{})
	s, err := conference.Subscribe(context.Background(), conference.SubscriberConfig{Server: h1.addr, User: "ann", Domain: "example.org", Room: "again"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitRoster(t, s, 5*time.Second, func(u []string) bool { return sameSet(u, "ann") })
	before := s.Roster()
	h1.stop()
	h2 := newHarnessOn(t, focus.Config{}, h1.addr)
	defer h2.stop()
	deadline := time.Now().Add(8 * time.Second)
	for len(h2.f.Roster().Members("again")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("ann never re-joined the restarted focus (last refresh error: %v)", s.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The new focus's roster reaches the subscriber (new dialog, versions
	// start again at 1).
	for s.Roster() == before {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("no roster from the restarted focus reached the subscriber")
		}
		select {
		case <-s.Updates():
		case <-time.After(100 * time.Millisecond):
		}
	}
	waitRoster(t, s, 5*time.Second, func(u []string) bool { return sameSet(u, "ann") })
	time.Sleep(2500 * time.Millisecond) // one more refresh, inside the new dialog
	if err := s.Err(); err != nil {
		t.Fatalf("refresh after re-joining: %v", err)
	}
	if n := len(h2.f.Roster().Members("again")); n != 1 {
		t.Fatalf("after re-joining the room has %d members, want 1", n)
	}
}

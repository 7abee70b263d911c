package ice_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
	"go.uber.org/goleak"
)

// loopbackConfig gathers host candidates on loopback only, so tests send
// nothing beyond 127.0.0.1.
func loopbackConfig() ice.Config {
	return ice.Config{
		IncludeLoopback: true,
		IPFilter:        func(ip net.IP) bool { return ip.IsLoopback() },
	}
}

// pair gathers two sessions, exchanges their candidates as SDP would and
// connects them; it returns the conns (controlling first).
func pair(t testing.TB, a, b *ice.Session) (net.Conn, net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	la, err := a.Gather(ctx)
	if err != nil {
		t.Fatalf("gather a: %v", err)
	}
	lb, err := b.Gather(ctx)
	if err != nil {
		t.Fatalf("gather b: %v", err)
	}
	if err := a.SetRemote(lb.Ufrag, lb.Pwd, lb.Candidates); err != nil {
		t.Fatalf("a.SetRemote: %v", err)
	}
	if err := b.SetRemote(la.Ufrag, la.Pwd, la.Candidates); err != nil {
		t.Fatalf("b.SetRemote: %v", err)
	}
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := b.Connect(ctx)
		ch <- res{c, err}
	}()
	ca, err := a.Connect(ctx)
	if err != nil {
		t.Fatalf("a.Connect: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("b.Connect: %v", r.err)
	}
	return ca, r.c
}

// exchange sends n packets each way and checks they arrive intact.
func exchange(t testing.TB, a, b net.Conn, n int) {
	t.Helper()
	oneWay := func(from, to net.Conn, tag byte) {
		got := 0
		buf := make([]byte, 1500)
		for i := 0; i < n*5 && got < n; i++ {
			msg := bytes.Repeat([]byte{tag, byte(i)}, 80)
			if _, err := from.Write(msg); err != nil {
				t.Fatalf("write: %v", err)
			}
			_ = to.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			k, err := to.Read(buf)
			if err != nil {
				continue
			}
			if k != len(msg) || buf[0] != tag {
				t.Fatalf("got %d bytes tag %d, want %d bytes tag %d", k, buf[0], len(msg), tag)
			}
			got++
		}
		_ = to.SetReadDeadline(time.Time{})
		if got < n {
			t.Fatalf("only %d of %d packets arrived", got, n)
		}
	}
	oneWay(a, b, 'A')
	oneWay(b, a, 'B')
}

func TestSessionsOnLoopbackConnectDirect(t *testing.T) {
	defer goleak.VerifyNone(t)
	a, err := ice.NewSession(loopbackConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ice.NewSession(loopbackConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	routes := make(chan ice.RouteInfo, 4)
	a.OnRouteChange(func(r ice.RouteInfo) { routes <- r })

	start := time.Now()
	ca, cb := pair(t, a, b)
	t.Logf("loopback setup %v", time.Since(start))
	exchange(t, ca, cb, 5)

	for _, s := range []*ice.Session{a, b} {
		r, err := s.Route()
		if err != nil {
			t.Fatal(err)
		}
		if r.Route != ice.RouteDirect || r.LocalType != "host" || r.RemoteType != "host" {
			t.Errorf("route = %+v, want direct host-host", r)
		}
		if s.State() != ice.StateConnected {
			t.Errorf("state = %v, want connected", s.State())
		}
	}
	select {
	case r := <-routes:
		if r.Route != ice.RouteDirect {
			t.Errorf("OnRouteChange got %+v", r)
		}
	case <-time.After(2 * time.Second):
		t.Error("OnRouteChange never ran")
	}
	a.Close()
	b.Close()
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if a.State() != ice.StateClosed {
		t.Errorf("state after close = %v", a.State())
	}
	if _, err := a.Gather(context.Background()); !errors.Is(err, ice.ErrClosed) {
		t.Errorf("Gather after Close = %v, want ErrClosed", err)
	}
}

func TestConnectBeforeSetRemoteFails(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := ice.NewSession(loopbackConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Connect(context.Background()); !errors.Is(err, ice.ErrNoRemote) {
		t.Fatalf("Connect = %v, want ErrNoRemote", err)
	}
	if _, err := s.Route(); !errors.Is(err, ice.ErrNotConnected) {
		t.Fatalf("Route = %v, want ErrNotConnected", err)
	}
	if err := s.SetRemote("abcd", "0123456789012345678901", []string{"garbage", "1 2 3"}); !errors.Is(err, ice.ErrNoCandidates) {
		t.Fatalf("SetRemote with junk = %v, want ErrNoCandidates", err)
	}
}

func TestNewSessionRejectsBadServer(t *testing.T) {
	_, err := ice.NewSession(ice.Config{Servers: []ice.Server{{URL: "http://x"}}}, true)
	if !errors.Is(err, ice.ErrBadServer) {
		t.Fatalf("err = %v, want ErrBadServer", err)
	}
}

func TestConnectFailsWhenPeerNeverAnswers(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := loopbackConfig()
	cfg.DisconnectedTimeout = 200 * time.Millisecond
	cfg.FailedTimeout = 300 * time.Millisecond
	cfg.MaxBindingRequests = 10
	s, err := ice.NewSession(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Gather(ctx); err != nil {
		t.Fatal(err)
	}
	// A UDP socket that reads nothing: checks go unanswered.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	cand := "1 1 udp 2130706431 127.0.0.1 " + strconv.Itoa(port) + " typ host"
	if err := s.SetRemote("abcd", "0123456789012345678901", []string{cand}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Connect(ctx); !errors.Is(err, ice.ErrFailed) {
		t.Fatalf("Connect = %v, want ErrFailed", err)
	}
}

func TestLiteCalleeWithFullCaller(t *testing.T) {
	full, err := ice.NewSession(loopbackConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	cfg := loopbackConfig()
	cfg.Lite = true
	lite, err := ice.NewSession(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ll, err := lite.Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ll.Lite {
		t.Fatal("lite session does not say so")
	}
	// The lite side's SDP carries a=ice-lite; the full side reads it.
	d := ice.NewAudio()
	if err := d.SetICE(ll); err != nil {
		t.Fatal(err)
	}
	body, _ := d.Marshal()
	if !bytes.Contains(body, []byte("a=ice-lite\r\n")) {
		t.Fatalf("no a=ice-lite in\n%s", body)
	}
	p, err := ice.Parse(body)
	if err != nil || !p.Lite {
		t.Fatalf("parse: %v lite=%v", err, p.Lite)
	}
	if err := full.SetRemoteLite(p.Lite); err != nil {
		t.Fatal(err)
	}
	ca, cb := pair(t, full, lite)
	exchange(t, ca, cb, 3)
	if r, err := full.Route(); err != nil || r.Route != ice.RouteDirect {
		t.Fatalf("route %+v %v", r, err)
	}
}

func TestConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ice.Policy
		ok   bool
	}{{"", ice.PolicyAll, true}, {"all", ice.PolicyAll, true}, {"relay", ice.PolicyRelay, true}, {"direct", 0, false}} {
		p, err := ice.ParsePolicy(tc.in)
		if (err == nil) != tc.ok || (tc.ok && p != tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, %v", tc.in, p, err)
		}
		if tc.ok && p.String() != map[bool]string{true: "relay", false: "all"}[p == ice.PolicyRelay] {
			t.Errorf("String() = %q", p.String())
		}
	}
	if _, err := ice.NewSession(ice.Config{Lite: true, Policy: ice.PolicyRelay}, false); err == nil {
		t.Error("an ICE-lite session with relay policy was accepted")
	}
	if _, err := ice.NewSession(ice.Config{PortMin: 2000, PortMax: 1000}, false); err == nil {
		t.Error("an empty port range was accepted")
	}
}

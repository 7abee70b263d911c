package ua

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

var testLogger func(*testing.T) *slog.Logger

func newTestUA(t *testing.T, s *testServer, user, transport string, mod ...func(*Config)) *UA {
	t.Helper()
	cfg := Config{Server: s.addr(transport), Transport: transport, User: user, Password: s.users[user], Domain: "test"}
	cfg.Logger = testLogger(t)
	for _, m := range mod {
		m(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisterAnswersDigestChallenges(t *testing.T) {
	for _, tc := range []struct {
		name       string
		transport  string
		algorithms []string
	}{
		{"MD5 over UDP", "udp", []string{"MD5"}},
		{"SHA-256 preferred over MD5 over UDP", "udp", []string{"MD5", "SHA-256"}},
		{"SHA-256 only over TCP", "tcp", []string{"SHA-256"}},
		{"MD5 over TCP", "tcp", []string{"MD5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.algorithms...)
			u := newTestUA(t, s, "alice", tc.transport)
			if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if !u.Registered() {
				t.Fatal("Registered() is false after a successful Register")
			}
			b, ok := s.binding("alice")
			if !ok {
				t.Fatal("server holds no binding for alice")
			}
			if b.source != u.LocalAddr() {
				t.Errorf("registered from %s, but the UA says it sends from %s", b.source, u.LocalAddr())
			}
			if b.contact.Port != portOf(u.LocalAddr()) {
				t.Errorf("Contact port %d does not match the local port of %s", b.contact.Port, u.LocalAddr())
			}
			if err := u.Close(); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.binding("alice"); ok {
				t.Error("Close did not unregister")
			}
			if err := u.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestRegisterFailuresSayWhy(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		name, user, password string
		want                 error
		text                 string
	}{
		{"wrong password", "alice", "nope", ErrAuth, "register alice@test: 403 Forbidden"},
		{"no such user", "mallory", "x", ErrNoSuchUser, "register mallory@test: 404 Not Found: no such user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New(Config{Server: s.udpAddr, User: tc.user, Password: tc.password, Domain: "test"})
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			err = u.Register(ctxT(t, 5*time.Second))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.text) {
				t.Errorf("message %q does not start with %q", err, tc.text)
			}
		})
	}
}

func TestRegisterTimesOutWithoutServer(t *testing.T) {
	// A UDP port nobody listens on: the REGISTER gets no answer.
	u, err := New(Config{Server: "127.0.0.1:9", User: "alice", Password: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := u.Register(ctx); err == nil {
		t.Fatal("Register succeeded with no server")
	}
}

func TestRegistrationIsRefreshedBeforeExpiry(t *testing.T) {
	s := newTestServer(t)
	s.mu.Lock()
	s.maxExpires = 1 // the registrar grants one second; refreshDelay floors at 2 s
	s.mu.Unlock()
	u := newTestUA(t, s, "alice", "udp")
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	first := s.registers
	s.mu.Unlock()
	eventually(t, 8*time.Second, "a refresh REGISTER", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.registers >= first+2 // challenge + authorized refresh
	})
}

func TestReRegisterBacksOffAfterFailures(t *testing.T) {
	s := newTestServer(t)
	u := newTestUA(t, s, "alice", "udp", func(c *Config) { c.RetryMin, c.RetryMax = 100*time.Millisecond, 400*time.Millisecond })
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.failNext = 4
	s.mu.Unlock()
	start := time.Now()
	u.flowLost() // force a refresh now
	var ok time.Time
	eventually(t, 10*time.Second, "registration after four refusals", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ok = s.lastOK
		return s.failNext == 0 && ok.After(start)
	})
	// Four refusals back off 100, 200, 400 and 400 ms (RetryMax) before
	// the fifth attempt succeeds.
	if el := ok.Sub(start); el < 1100*time.Millisecond || el > 3*time.Second {
		t.Errorf("registered again %v after the first refusal, want about 1.1 s of backoff", el)
	}
}

func TestKeepalivesReachTheServer(t *testing.T) {
	s := newTestServer(t)
	u := newTestUA(t, s, "alice", "udp", func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "STUN keepalives at the server", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.stunSeen >= 2
	})
}

func TestTCPKeepalivesAreCRLF(t *testing.T) {
	s := newTestServer(t)
	u := newTestUA(t, s, "alice", "tcp", func(c *Config) { c.KeepAlive = 20 * time.Millisecond })
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "CRLF keepalives on the TCP flow", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.crlfSeen >= 2
	})
	if !u.Registered() {
		t.Error("keepalives broke the registration")
	}
}

func TestClosedTCPFlowRegistersAgainOnANewOne(t *testing.T) {
	s := newTestServer(t)
	u := newTestUA(t, s, "alice", "tcp", func(c *Config) { c.KeepAlive = 30 * time.Millisecond })
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	first, _ := s.binding("alice")
	// The server drops every TCP connection, as a restart would.
	if err := s.ua.TransportLayer().Pool("tcp").Clear(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a registration over a new TCP connection", func() bool {
		b, ok := s.binding("alice")
		return ok && b.source != first.source
	})
	b, _ := s.binding("alice")
	if b.source != u.LocalAddr() {
		t.Errorf("registered from %s, UA says %s", b.source, u.LocalAddr())
	}
}

func TestLostFlowRegistersAgain(t *testing.T) {
	s := newTestServer(t)
	u := newTestUA(t, s, "alice", "udp")
	if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	before := s.registers
	s.mu.Unlock()
	u.flowLost()
	eventually(t, 5*time.Second, "a re-registration after the flow broke", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.registers > before
	})
}

// callPair registers alice and bob and returns their UAs.
func callPair(t *testing.T, s *testServer, transport string) (alice, bob *UA) {
	alice = newTestUA(t, s, "alice", transport)
	bob = newTestUA(t, s, "bob", transport)
	for _, u := range []*UA{alice, bob} {
		if err := u.Register(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	return alice, bob
}

func TestCallSetupReInviteAndHangup(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			s := newTestServer(t, "SHA-256", "MD5")
			alice, bob := callPair(t, s, transport)
			offer, answer := []byte("v=0 offer\r\n"), []byte("v=0 answer\r\n")

			bobCall := make(chan *Call, 1)
			errc := make(chan error, 1)
			rang := make(chan struct{})
			go func() {
				ic, err := bob.Accept(ctxT(t, 10*time.Second))
				if err != nil {
					errc <- err
					return
				}
				if got := string(ic.Offer()); got != string(offer) {
					errc <- errors.New("bob got offer " + got)
					return
				}
				if ic.From() != "alice@test" {
					errc <- errors.New("call claims to be from " + ic.From())
					return
				}
				// Answer once alice heard the ringing, as a person would.
				select {
				case <-rang:
				case <-time.After(5 * time.Second):
					errc <- errors.New("alice never heard 180 Ringing")
					return
				}
				c, err := ic.Answer(ctxT(t, 5*time.Second), answer)
				if err != nil {
					errc <- err
					return
				}
				c.OnReInvite(func(ctx context.Context, o []byte) ([]byte, error) {
					return append([]byte("re-"), o...), nil
				})
				bobCall <- c
			}()

			var once sync.Once
			call, err := alice.Invite(ctxT(t, 10*time.Second), "bob", offer, InviteOptions{
				OnProgress: func(code int, _ string) {
					if code == 180 {
						once.Do(func() { close(rang) })
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if string(call.RemoteSDP()) != string(answer) {
				t.Errorf("alice got answer %q", call.RemoteSDP())
			}
			var bc *Call
			select {
			case bc = <-bobCall:
			case err := <-errc:
				t.Fatal(err)
			}
			select {
			case <-bc.Acked():
			case <-time.After(5 * time.Second):
				t.Fatal("bob never saw the ACK")
			}

			// alice re-INVITEs (an ICE restart would), then bob re-INVITEs.
			got, err := call.ReInvite(ctxT(t, 5*time.Second), []byte("second"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "re-second" {
				t.Errorf("re-INVITE answer %q", got)
			}
			if string(bc.RemoteSDP()) != "second" {
				t.Errorf("bob's view of the remote SDP after re-INVITE: %q", bc.RemoteSDP())
			}
			got, err = bc.ReInvite(ctxT(t, 5*time.Second), []byte("third"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(call.LocalSDP()) {
				t.Errorf("without a handler alice should answer with her current SDP, got %q", got)
			}

			// bob hangs up saying why (RFC 3326 Reason): alice's Err is
			// still ErrRemoteHangup, and carries bob's words.
			why := `ICE failed: no "path" within 10s`
			if err := bc.HangupBecause(ctxT(t, 5*time.Second), why); err != nil {
				t.Fatal(err)
			}
			select {
			case <-call.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("alice's call did not end after bob's BYE")
			}
			if !errors.Is(call.Err(), ErrRemoteHangup) || !strings.HasSuffix(call.Err().Error(), ": "+why) {
				t.Errorf("alice's call ended with %v, want remote hangup saying %q", call.Err(), why)
			}
			if bc.Err() != nil {
				t.Errorf("bob's own hangup recorded %v", bc.Err())
			}
		})
	}
}

func TestSecondCallIsBusy(t *testing.T) {
	s := newTestServer(t)
	alice, bob := callPair(t, s, "udp")
	go func() {
		ic, err := bob.Accept(ctxT(t, 10*time.Second))
		if err == nil {
			ic.Answer(ctxT(t, 5*time.Second), []byte("a"))
		}
	}()
	first, err := alice.Invite(ctxT(t, 10*time.Second), "bob", []byte("o"), InviteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Hangup(ctxT(t, 5*time.Second))

	alice2 := newTestUA(t, s, "alice", "udp")
	_, err = alice2.Invite(ctxT(t, 10*time.Second), "bob", []byte("o"), InviteOptions{})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second call: got %v, want busy", err)
	}
	if !strings.Contains(err.Error(), "486") {
		t.Errorf("message %q lacks the status", err)
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	s := newTestServer(t)
	alice, bob := callPair(t, s, "udp")
	rang := make(chan *IncomingCall, 1)
	go func() {
		if ic, err := bob.Accept(ctxT(t, 10*time.Second)); err == nil {
			rang <- ic
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := alice.Invite(ctx, "bob", []byte("o"), InviteOptions{OnProgress: func(code int, _ string) {
			if code == 180 {
				cancel()
			}
		}})
		done <- err
	}()
	var ic *IncomingCall
	select {
	case ic = <-rang:
	case <-time.After(5 * time.Second):
		t.Fatal("bob's phone never rang")
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("got %v, want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Invite did not return after cancel")
	}
	select {
	case <-ic.Canceled():
	case <-time.After(5 * time.Second):
		t.Fatal("bob never learned the call was canceled")
	}
	if _, err := ic.Answer(ctxT(t, time.Second), []byte("late")); !errors.Is(err, ErrCanceled) {
		t.Errorf("answering a canceled call: %v", err)
	}
}

func TestCallFailuresSayWhy(t *testing.T) {
	s := newTestServer(t)
	alice := newTestUA(t, s, "alice", "udp")
	if err := alice.Register(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target string
		want   error
		text   string
	}{
		{"bob", ErrOffline, "call bob@test: 480 Temporarily Unavailable: user offline"},
		{"nobody", ErrNoSuchUser, "call nobody@test: 404 Not Found: no such user"},
	} {
		_, err := alice.Invite(ctxT(t, 5*time.Second), tc.target, []byte("o"), InviteOptions{})
		if !errors.Is(err, tc.want) {
			t.Errorf("call %s: got %v, want %v", tc.target, err, tc.want)
			continue
		}
		if err.Error() != tc.text {
			t.Errorf("call %s: message %q, want %q", tc.target, err, tc.text)
		}
	}
}

func TestRouteSetOrder(t *testing.T) {
	hdrs := []sip.Header{
		sip.NewHeader("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"),
		sip.NewHeader("Record-Route", "<sip:p3.example:5070;transport=tcp;lr>"),
	}
	var hosts []string
	for _, u := range routeSetFrom(hdrs, true) {
		hosts = append(hosts, u.Host)
	}
	if got := strings.Join(hosts, ","); got != "p3.example,p2.example,p1.example" {
		t.Errorf("UAC route set %s", got)
	}
	hosts = nil
	for _, u := range routeSetFrom(hdrs, false) {
		hosts = append(hosts, u.Host)
	}
	if got := strings.Join(hosts, ","); got != "p1.example,p2.example,p3.example" {
		t.Errorf("UAS route set %s", got)
	}
}

func TestRefreshDelay(t *testing.T) {
	for _, tc := range []struct{ granted, want time.Duration }{
		{3600 * time.Second, 3560 * time.Second},
		{300 * time.Second, 260 * time.Second},
		{60 * time.Second, 48 * time.Second},
		{time.Second, 2 * time.Second},
	} {
		if got := refreshDelay(tc.granted); got != tc.want {
			t.Errorf("refreshDelay(%v) = %v, want %v", tc.granted, got, tc.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{User: "a"},
		{Server: "127.0.0.1"},
		{Server: "127.0.0.1", User: "a", Transport: "sctp"},
		{Server: "127.0.0.1:99999", User: "a"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
}

func init() {
	testLogger = func(t *testing.T) *slog.Logger {
		if os.Getenv("UA_DEBUG") == "" {
			return nil
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
}

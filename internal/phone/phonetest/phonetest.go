// Package phonetest runs an in-process punchline server for the phone's
// tests and benchmarks: the real registrar and proxy (package sip) and the
// real STUN/TURN relay (package relay) on loopback UDP, sharing one account
// store, as `punchline serve` wires them.
package phonetest

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/internal/store"
	"github.com/punchline/punchline/relay"
	"github.com/punchline/punchline/sip"
)

// Realm is the server's realm.
const Realm = "phone.test"

// Password returns the test password of user.
func Password(user string) string { return user + "-secret" }

// Server is a running registrar + proxy + relay.
type Server struct {
	SIP   *sip.Server
	Relay *relay.Server
	Store *store.Store
	// Metrics is the registry both report into.
	Metrics *prometheus.Registry
	// SIPAddr and TURNAddr are "IP:port" (127.0.0.1 unless Options.Addr).
	SIPAddr, TURNAddr string
}

// Start starts a server with accounts for users on loopback and stops it
// at the end of the test or benchmark.
func Start(tb testing.TB, users []string, log *slog.Logger) *Server {
	tb.Helper()
	return StartWith(tb, users, log, Options{})
}

// Options place and tune the server.
type Options struct {
	// Addr is the IPv4 address both listen on; empty means 127.0.0.1.
	// The relay admits peers in its /24 (or loopback for the default).
	Addr string
	// Algorithms are the digest algorithms the registrar challenges with;
	// nil means its default (MD5, then SHA-256).
	Algorithms []string
}

// StartWith is Start with Options.
func StartWith(tb testing.TB, users []string, log *slog.Logger, opts Options) *Server {
	tb.Helper()
	addr, peers := "127.0.0.1", netip.MustParsePrefix("127.0.0.0/8")
	if opts.Addr != "" {
		ip, err := netip.ParseAddr(opts.Addr)
		if err != nil || !ip.Is4() {
			tb.Fatalf("phonetest: address %q: want IPv4", opts.Addr)
		}
		addr, peers = opts.Addr, netip.PrefixFrom(ip, 24).Masked()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	for _, u := range users {
		if err := st.AddUser(u, Realm, Password(u), false); err != nil {
			tb.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	rs, err := relay.New(relay.Config{
		Realm:      Realm,
		Users:      relay.StoreUsers(st, Realm),
		Listeners:  []relay.Listener{{Network: "udp", Addr: addr + ":0"}},
		AllowPeers: []netip.Prefix{peers},
		Logger:     log,
		Metrics:    reg,
	})
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	srv, err := sip.New(sip.Config{
		Realm:      Realm,
		Listeners:  []sip.Listener{{Transport: "udp", Addr: addr + ":0"}},
		Algorithms: opts.Algorithms,
		Store:      st,
		Logger:     log,
		Metrics:    reg,
		RateLimit:  sip.RateLimit{PerSecond: -1},
	})
	if err != nil {
		rs.Close()
		st.Close()
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		rs.Close()
		st.Close()
		tb.Fatal(err)
	}
	s := &Server{SIP: srv, Relay: rs, Store: st, Metrics: reg,
		SIPAddr:  srv.Addrs()[0].Addr.String(),
		TURNAddr: rs.Endpoints()[0].Addr.String()}
	tb.Cleanup(func() {
		srv.Close()
		rs.Close()
		st.Close()
	})
	return s
}

// PhoneConfig returns a phone configuration for user against this
// server: its SIP address, and its relay as STUN and TURN server.
func (s *Server) PhoneConfig(user string) phone.Config {
	return phone.Config{
		Server:   s.SIPAddr,
		User:     user,
		Password: Password(user),
		STUN:     []string{"stun:" + s.TURNAddr},
		TURN:     []string{"turn:" + s.TURNAddr + "?transport=udp"},
	}
}

// NewPhone creates and registers a phone for user; it is closed at the end
// of the test.
func (s *Server) NewPhone(tb testing.TB, cfg phone.Config) *phone.Phone {
	tb.Helper()
	p, err := phone.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	if err := p.Register(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return p
}

// RelayedBytes sums the relay's punchline_turn_relayed_bytes_total.
func (s *Server) RelayedBytes(tb testing.TB) float64 {
	tb.Helper()
	mfs, err := s.Metrics.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "punchline_turn_relayed_bytes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

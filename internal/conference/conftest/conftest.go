// Package conftest runs an in-process punchline server for conference
// tests and benchmarks: the real registrar and proxy (package sip) with the
// real conference focus as its room handler, on loopback UDP, and phones
// (sip/ua) registered to it that join rooms with the real mesh engine.
package conftest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/store"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip"
	"github.com/punchline/punchline/sip/focus"
	"github.com/punchline/punchline/sip/ua"
)

// Realm is the test realm.
const Realm = "conf.test"

// Password is every test user's password.
const Password = "secret"

// Server is a running registrar + proxy + focus.
type Server struct {
	SIP     *sip.Server
	Focus   *focus.Focus
	Store   *store.Store
	Metrics *prometheus.Registry
	// Addr is the SIP UDP address, host:port.
	Addr string
}

// roomRouter lets the focus be created after the SIP server config.
type roomRouter struct{ f *focus.Focus }

func (r *roomRouter) HandleRoom(req *sip.SIPRequest, tx sip.ServerTransaction, user string) {
	r.f.HandleRoom(req, tx, user)
}

// Start starts a server with accounts for users (password Password) and
// stops it at the end of the test.
func Start(tb testing.TB, users []string, log *slog.Logger) *Server {
	tb.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := store.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	for _, u := range users {
		if err := st.AddUser(u, Realm, Password, false); err != nil {
			tb.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	f, err := focus.New(focus.Config{Realm: Realm, Metrics: reg, Log: log, MediaIP: "127.0.0.1"})
	if err != nil {
		tb.Fatal(err)
	}
	rr := &roomRouter{f: f}
	srv, err := sip.New(sip.Config{
		Realm:       Realm,
		Listeners:   []sip.Listener{{Transport: "udp", Addr: "127.0.0.1:0"}},
		Store:       st,
		Logger:      log,
		Metrics:     reg,
		RateLimit:   sip.RateLimit{PerSecond: -1},
		RoomHandler: rr,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	addr := srv.Addrs()[0].Addr.(*net.UDPAddr)
	f.SetContact("127.0.0.1", addr.Port)
	c, err := srv.Client()
	if err != nil {
		tb.Fatal(err)
	}
	f.SetClient(c)
	s := &Server{SIP: srv, Focus: f, Store: st, Metrics: reg, Addr: addr.String()}
	tb.Cleanup(func() {
		f.Close()
		srv.Close()
		st.Close()
	})
	return s
}

// MetricValue sums the samples of a metric family whose labels include
// all of match ("name=value" pairs).
func (s *Server) MetricValue(tb testing.TB, name string, match ...string) float64 {
	tb.Helper()
	mfs, err := s.Metrics.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for _, kv := range match {
				k, v, _ := strings.Cut(kv, "=")
				if labels[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// Phone is a registered UA with a conference engine once joined.
type Phone struct {
	User   string
	UA     *ua.UA
	Engine *conference.Engine
	Rec    *media.Recording
}

// LoopbackICE is an ICE configuration for phones on one machine: host
// candidates on 127.0.0.1 only, no STUN/TURN.
func LoopbackICE() ice.Config {
	return ice.Config{
		IncludeLoopback: true,
		IPFilter:        func(ip net.IP) bool { return ip.IsLoopback() },
	}
}

// Options tune Join.
type Options struct {
	UploadKbps int
	ICE        *ice.Config
	Log        *slog.Logger
}

// Join registers user and joins room playing a tone of hz (0: silence),
// recording what it hears.
func (s *Server) Join(ctx context.Context, tb testing.TB, user, room string, hz float64, o Options) *Phone {
	tb.Helper()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := ua.New(ua.Config{Server: s.Addr, User: user, Password: Password, Domain: Realm, LocalAddr: "127.0.0.1", MaxCalls: 32, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := u.Register(rctx); err != nil {
		u.Close()
		tb.Fatalf("register %s: %v", user, err)
	}
	iceCfg := LoopbackICE()
	if o.ICE != nil {
		iceCfg = *o.ICE
	}
	var src media.Source = media.Silence{}
	if hz > 0 {
		src = media.NewToneSource(hz, 6000)
	}
	rec := &media.Recording{}
	e, err := conference.Join(ctx, conference.Config{
		UA: u, Server: s.Addr, User: user, Password: Password, Domain: Realm,
		Room: room, UploadKbps: o.UploadKbps, ICE: iceCfg, Source: src, Sink: rec,
		LocalIP: "127.0.0.1", Log: log,
	})
	if err != nil {
		u.Close()
		tb.Fatalf("join %s: %v", user, err)
	}
	return &Phone{User: user, UA: u, Engine: e, Rec: rec}
}

// Leave closes the engine and the UA.
func (p *Phone) Leave() {
	p.Engine.Close()
	p.UA.Close()
}

// WaitLegs waits until every phone reports want peers with a route
// (a leg up or a forwarded stream flowing).
func WaitLegs(tb testing.TB, phones []*Phone, want int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		var missing []string
		for _, p := range phones {
			n := 0
			for _, ps := range p.Engine.Stats().Peers {
				if ps.Route != "" && ps.RTPPacketsReceived > 0 {
					n++
				}
			}
			if n < want {
				ok = false
				missing = append(missing, fmt.Sprintf("%s:%d/%d", p.User, n, want))
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("legs not up after %v: %v", timeout, missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Package relaytest runs an in-process punchline TURN/STUN relay (package
// relay) for other packages' tests: ICE sessions, the softphone engine and
// NAT labs that need a relay candidate. Like tailscale's stuntest, it is a
// real server on real (or vnet) sockets, not a mock.
package relaytest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/punchline/punchline/relay"
)

// Defaults of Options.
const (
	DefaultRealm    = "punchline"
	DefaultUser     = "relayuser"
	DefaultPassword = "relay-password"
	DefaultSecret   = "relaytest-secret"
)

// Options adjust the test relay. The zero value runs UDP and TCP listeners
// on 127.0.0.1 with one account (DefaultUser/DefaultPassword), REST
// credentials under DefaultSecret, and peers on loopback and private
// ranges allowed (that is where test peers live).
type Options struct {
	// Realm; zero: DefaultRealm.
	Realm string
	// Users maps account names to passwords; nil: DefaultUser only.
	Users map[string]string
	// Net opens the sockets (a vnet.Net for in-process NAT tests); nil:
	// the host network.
	Net transport.Net
	// Addr is the host:port to listen on; zero: "127.0.0.1:0". With Net
	// set, give an address on the virtual network.
	Addr string
	// NoTCP leaves out the TCP listener (vnet has no TCP).
	NoTCP bool
	// StrictPeers keeps the production peer policy (loopback and private
	// peers refused) instead of opening those ranges.
	StrictPeers bool
	// Configure, if set, may change the relay.Config last.
	Configure func(*relay.Config)
}

// Relay is a running test relay, closed when the test ends.
type Relay struct {
	Server *relay.Server
	// UDP and TCP are the listening addresses (TCP nil with NoTCP).
	UDP net.Addr
	TCP net.Addr
	// Realm, Username and Password are one account's long-term
	// credentials (the first in Options.Users order is not defined; with
	// default Options it is DefaultUser).
	Realm, Username, Password string
	// Secret is the TURN REST secret.
	Secret string
	// Metrics holds the relay's Prometheus collectors.
	Metrics *prometheus.Registry
}

// testPeerRanges are opened unless StrictPeers: loopback, RFC 1918 and
// shared address space, where test peers and vnet LANs sit.
var testPeerRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
}

// Start runs a relay for the duration of the test.
func Start(t testing.TB, opts Options) *Relay {
	t.Helper()
	realm := opts.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	users := opts.Users
	if users == nil {
		users = map[string]string{DefaultUser: DefaultPassword}
	}
	keys := make(map[string][]byte, len(users))
	r := &Relay{Realm: realm, Secret: DefaultSecret, Metrics: prometheus.NewRegistry()}
	for name, pw := range users {
		keys[name] = relay.LongTermKey(name, realm, pw)
		if r.Username == "" || name == DefaultUser {
			r.Username, r.Password = name, pw
		}
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	listeners := []relay.Listener{{Network: "udp", Addr: addr}}
	if !opts.NoTCP && opts.Net == nil {
		listeners = append(listeners, relay.Listener{Network: "tcp", Addr: addr})
	}
	cfg := relay.Config{
		Realm: realm,
		Users: relay.UserKeysFunc(func(name string) ([]byte, error) {
			if k, ok := keys[name]; ok {
				return k, nil
			}
			return nil, relay.ErrNoSuchUser
		}),
		Secret:    DefaultSecret,
		Listeners: listeners,
		Net:       opts.Net,
		Metrics:   r.Metrics,
		ReadLoops: 2,
	}
	if !opts.StrictPeers {
		cfg.AllowPeers = testPeerRanges
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	r.Server = srv
	for _, e := range srv.Endpoints() {
		switch e.Network {
		case "udp":
			if r.UDP == nil {
				r.UDP = e.Addr
			}
		case "tcp":
			if r.TCP == nil {
				r.TCP = e.Addr
			}
		}
	}
	return r
}

// RESTCredentials mints TURN REST credentials for user valid for ttl.
func (r *Relay) RESTCredentials(user string, ttl time.Duration) (username, password string) {
	username, password, _ = relay.RESTCredentials(r.Secret, user, time.Now(), ttl)
	return username, password
}

// URL is the turn: URI of the UDP listener ("turn:127.0.0.1:3478").
func (r *Relay) URL() string { return "turn:" + r.UDP.String() }

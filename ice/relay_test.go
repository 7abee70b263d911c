package ice_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/relay"
)

const (
	turnUser, turnPass, turnRealm = "alice", "wonderland", "punchline-test"
)

// startRelay runs punchline's relay on loopback (UDP and TCP), admitting
// loopback peers, which its default policy refuses.
func startRelay(t testing.TB) (udpAddr, tcpAddr string) {
	t.Helper()
	key := relay.LongTermKey(turnUser, turnRealm, turnPass)
	srv, err := relay.New(relay.Config{
		Realm: turnRealm,
		Users: relay.UserKeysFunc(func(u string) ([]byte, error) {
			if u != turnUser {
				return nil, relay.ErrNoSuchUser
			}
			return key, nil
		}),
		Listeners: []relay.Listener{
			{Network: "udp", Addr: "127.0.0.1:0"},
			{Network: "tcp", Addr: "127.0.0.1:0"},
		},
		ReadLoops:  1,
		RelayIP:    netip.MustParseAddr("127.0.0.1"),
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, ep := range srv.Endpoints() {
		switch ep.Network {
		case "udp":
			udpAddr = ep.Addr.String()
		case "tcp":
			tcpAddr = ep.Addr.String()
		}
	}
	if udpAddr == "" || tcpAddr == "" {
		t.Fatalf("relay endpoints %v", srv.Endpoints())
	}
	return udpAddr, tcpAddr
}

func relayConfig(url string) ice.Config {
	c := loopbackConfig()
	c.Policy = ice.PolicyRelay
	c.Servers = []ice.Server{{URL: url, Username: turnUser, Password: turnPass}}
	return c
}

func TestRelayPolicyGoesThroughOurRelay(t *testing.T) {
	udp, tcp := startRelay(t)
	for _, tc := range []struct{ name, url string }{
		{"TURN over UDP", "turn:" + udp + "?transport=udp"},
		{"TURN over TCP", "turn:" + tcp + "?transport=tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ice.NewSession(relayConfig(tc.url), true)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := ice.NewSession(relayConfig(tc.url), false)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			la, err := a.Gather(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range la.Candidates {
				if p, _ := ice.ParseCandidate(c); p.Type != "relay" {
					t.Errorf("relay policy offered %q", c)
				}
			}
			start := time.Now()
			ca, cb := pair(t, a, b)
			t.Logf("relayed setup %v", time.Since(start))
			for _, s := range []*ice.Session{a, b} {
				r, err := s.Route()
				if err != nil {
					t.Fatal(err)
				}
				if r.Route != ice.RouteRelayed || r.LocalType != "relay" {
					t.Errorf("route %+v, want relayed from a local relay candidate", r)
				}
			}
			exchange(t, ca, cb, 5)
		})
	}
}

func TestRelayPolicyWithWrongPasswordFailsClearly(t *testing.T) {
	udp, _ := startRelay(t)
	c := relayConfig("turn:" + udp)
	c.Servers[0].Password = "wrong"
	c.GatherTimeout = time.Second
	s, err := ice.NewSession(c, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Gather(context.Background())
	if err == nil {
		t.Fatal("gathering with a wrong TURN password succeeded")
	}
	t.Log(err)
}

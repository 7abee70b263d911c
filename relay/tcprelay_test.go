package relay

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// TestTCPRelayFollowsThePeerPolicy makes RFC 6062 TCP allocations with
// pion's client: a Connect to a loopback peer is refused (403) under the
// default policy and carries data once loopback is opened.
func TestTCPRelayFollowsThePeerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow []netip.Prefix
	}{
		{"loopback peer refused by default", nil},
		{"loopback peer reached when opened", loopback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *Config) { c.AllowPeers = tc.allow })
			peerLn, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer peerLn.Close()
			accepted := make(chan string, 1)
			go func() {
				c, err := peerLn.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				b := make([]byte, 5)
				if _, err := io.ReadFull(c, b); err == nil {
					accepted <- string(b)
				}
			}()

			ctrl, err := net.Dial("tcp", r.tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer ctrl.Close()
			client, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: r.tcp.String(), TURNServerAddr: r.tcp.String(),
				Conn: turn.NewSTUNConn(ctrl), Username: "alice", Password: "alice-pw", Realm: testRealm,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if err := client.Listen(); err != nil {
				t.Fatal(err)
			}
			alloc, err := client.AllocateTCP()
			if err != nil {
				t.Fatalf("TCP allocate: %v", err)
			}
			defer alloc.Close()

			if tc.allow == nil {
				_, err := alloc.Connect(peerLn.Addr())
				var te *stun.TurnError
				if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeForbidden {
					t.Fatalf("Connect to loopback: %v, want 403", err)
				}
				if got := metric(t, r.reg, "punchline_turn_refused_peers_total"); got != 1 {
					t.Errorf("refused peers = %v, want 1", got)
				}
				return
			}
			conn, err := alloc.Dial("tcp", peerLn.Addr().String())
			if err != nil {
				t.Fatalf("dial through relay: %v", err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-accepted:
				if got != "hello" {
					t.Fatalf("peer got %q", got)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("peer got nothing through the TCP relay")
			}
		})
	}
}

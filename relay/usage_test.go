package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// relayVia allocates for c, binds a channel to peer and relays sends
// datagrams of size bytes from the client to the peer and back, checking
// each arrives.
func relayVia(t *testing.T, c *rawClient, peer net.PacketConn, sends, size int) {
	t.Helper()
	const ch = 0x4000
	relayed := c.allocateBound(ch, peer.LocalAddr())
	payload := bytes.Repeat([]byte{0xA5}, size)
	for range sends {
		c.sendChannelData(ch, payload)
		got, _ := readFrom(t, peer, 2*time.Second)
		if len(got) != size {
			t.Fatalf("peer got %d bytes, want %d", len(got), size)
		}
		if _, err := peer.WriteTo(payload, relayed); err != nil {
			t.Fatal(err)
		}
		back, err := c.readChannelData(ch, 2*time.Second)
		if err != nil || len(back) != size {
			t.Fatalf("client got %d bytes, %v", len(back), err)
		}
	}
}

func TestRelayedBytesCountedPerUser(t *testing.T) {
	r := startRelay(t, nil)
	if got := r.srv.RelayedBytesByUser(); len(got) != 0 {
		t.Fatalf("before any allocation: %v, want empty", got)
	}
	// alice with her account; carol with REST credentials, which must be
	// counted by the user part as the quota does, not by "expiry:carol".
	restUser, restPass, _ := RESTCredentials("rest-secret", "carol", time.Now(), time.Hour)
	alice := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	carol := newRawClient(t, r.udp, restUser, testRealm, restPass)
	relayVia(t, alice, newPeer(t), 3, 100) // 3×100 out + 3×100 back
	relayVia(t, carol, newPeer(t), 5, 40)  // 5×40 out + 5×40 back

	want := map[string]uint64{"alice": 600, "carol": 400}
	// The counters are bumped after the write returns, which may be after
	// the datagram has made the round trip.
	eventually(t, 2*time.Second, "per-user bytes", func() bool {
		got := r.srv.RelayedBytesByUser()
		return len(got) == 2 && got["alice"] == want["alice"] && got["carol"] == want["carol"]
	})

	// A deleted allocation's bytes stay with its user, and a new
	// allocation of the same user adds to them.
	if _, err := alice.do(stun.MethodRefresh, lifetimeAttr(0)); err != nil {
		t.Fatalf("refresh 0: %v", err)
	}
	eventually(t, 2*time.Second, "alice's allocation deleted", func() bool { return r.srv.AllocationCount() == 1 })
	if got := r.srv.RelayedBytesByUser(); got["alice"] != 600 || got["carol"] != 400 {
		t.Fatalf("after alice's allocation closed: %v, want %v", got, want)
	}
	alice2 := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayVia(t, alice2, newPeer(t), 1, 50)
	eventually(t, 2*time.Second, "alice's second allocation counted", func() bool {
		got := r.srv.RelayedBytesByUser()
		return got["alice"] == 700 && got["carol"] == 400
	})
}

package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// turnTCPAllocation is the part of pion's client TCP allocation the tests
// use (its type lives in an internal package).
type turnTCPAllocation interface {
	Dial(network, addr string) (net.Conn, error)
	Accept() (net.Conn, error)
	CreatePermissions(addrs ...net.Addr) error
	Addr() net.Addr
	Close() error
}

// allocateTCP makes an RFC 6062 TCP allocation for alice over the relay's
// TCP listener with pion's client; everything is closed at cleanup.
func allocateTCP(t testing.TB, r *testRelay) turnTCPAllocation {
	t.Helper()
	ctrl, err := net.Dial("tcp", r.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: r.tcp.String(), TURNServerAddr: r.tcp.String(),
		Conn: turn.NewSTUNConn(ctrl), Username: "alice", Password: "alice-pw", Realm: testRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := client.AllocateTCP()
	if err != nil {
		t.Fatalf("TCP allocate: %v", err)
	}
	t.Cleanup(func() { alloc.Close() })
	return alloc
}

// tcpPeerListener listens on loopback for a peer's side of relayed
// connections.
func tcpPeerListener(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connectViaRelay opens one relayed TCP connection from the client to a
// peer: Connect + ConnectionBind (outbound), or, when inbound, the peer
// dials the relayed address and the client takes the ConnectionAttempt.
// It returns the client's and the peer's ends.
func connectViaRelay(t testing.TB, alloc turnTCPAllocation, ln net.Listener, inbound bool) (client, peer net.Conn) {
	t.Helper()
	if inbound {
		if err := alloc.CreatePermissions(ln.Addr()); err != nil {
			t.Fatalf("permission: %v", err)
		}
		var err error
		if peer, err = net.Dial("tcp4", alloc.Addr().String()); err != nil {
			t.Fatalf("peer dial to the relayed address: %v", err)
		}
		t.Cleanup(func() { peer.Close() })
		if client, err = alloc.Accept(); err != nil {
			t.Fatalf("client accept: %v", err)
		}
		t.Cleanup(func() { client.Close() })
		return client, peer
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := alloc.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial through relay: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case peer = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("peer accepted nothing")
	}
	if peer == nil {
		t.Fatal("peer accept failed")
	}
	t.Cleanup(func() { peer.Close() })
	return client, peer
}

// pattern is n bytes that reveal reordering or loss when compared.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed + byte(i/251)
	}
	return b
}

// transfer writes data on from and reads it all on to, checking it is
// intact, and returns how long that took from the first write.
func transfer(t testing.TB, from, to net.Conn, data []byte) time.Duration {
	t.Helper()
	d, err := relayBytes(from, to, data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// relayBytes is transfer for goroutines other than the test's.
func relayBytes(from, to net.Conn, data []byte) (time.Duration, error) {
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := from.Write(data)
		werr <- err
	}()
	to.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(data))
	_, rerr := io.ReadFull(to, got)
	elapsed := time.Since(start)
	to.SetReadDeadline(time.Time{})
	if rerr != nil {
		from.Close() // unblocks the writer
	}
	if err := <-werr; err != nil && rerr == nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return 0, fmt.Errorf("read: %w", rerr)
	}
	if !bytes.Equal(got, data) {
		return 0, errors.New("relayed bytes differ from those sent")
	}
	return elapsed, nil
}

// TestTCPRelayCountsBothDirections relays known byte counts over a TCP
// allocation, on a connection the client opened (Connect) and on one the
// peer opened (ConnectionAttempt), and finds exactly them in the metrics
// and the per-user counts, also after the allocation is gone.
func TestTCPRelayCountsBothDirections(t *testing.T) {
	for _, inbound := range []bool{false, true} {
		name := "client connects"
		if inbound {
			name = "peer connects"
		}
		t.Run(name, func(t *testing.T) {
			r := startRelay(t, nil) // default cap: 4 MB/s, 800 kB burst
			alloc := allocateTCP(t, r)
			client, peer := connectViaRelay(t, alloc, tcpPeerListener(t), inbound)

			const up, down = 150_000, 90_000
			transfer(t, client, peer, pattern(up, 1))
			transfer(t, peer, client, pattern(down, 2))

			// The peer may read the last bytes an instant before the
			// relay adds their Write to the counters.
			eventually(t, 2*time.Second, "exact TCP byte counts", func() bool {
				return metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", "client_to_peer") == up &&
					metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", "peer_to_client") == down
			})
			if got := r.srv.RelayedBytesByUser()["alice"]; got != up+down {
				t.Errorf("alice's relayed bytes = %d, want %d", got, up+down)
			}
			for _, dir := range []string{"client_to_peer", "peer_to_client"} {
				if got := metric(t, r.reg, "punchline_turn_bandwidth_throttled_seconds_total", "direction", dir); got != 0 {
					t.Errorf("%s: throttled %vs under the cap", dir, got)
				}
			}

			client.Close()
			peer.Close()
			alloc.Close()
			eventually(t, 5*time.Second, "allocation gone", func() bool { return r.srv.AllocationCount() == 0 })
			if got := r.srv.RelayedBytesByUser()["alice"]; got != up+down {
				t.Errorf("after close: alice's relayed bytes = %d, want %d", got, up+down)
			}
		})
	}
}

// capBandwidth is the cap of the throttling tests: 40 kB/s, burst 8 kB.
const capBandwidth, capBurst = 40_000, 8_000

// checkCapped fails when n bytes crossed the cap faster than a token
// bucket allows: at most a burst plus the rate times the elapsed time.
// The bucket guarantees this exactly; the 20% margin only absorbs clock
// granularity, so the check cannot flake on a slow machine (slowness only
// makes elapsed longer).
func checkCapped(t *testing.T, what string, n int, elapsed time.Duration) {
	t.Helper()
	rate := float64(n-capBurst) / elapsed.Seconds()
	t.Logf("%s: %d bytes in %v: %.0f B/s beyond the burst (cap %d)", what, n, elapsed.Round(time.Millisecond), rate, capBandwidth)
	if rate > 1.2*capBandwidth {
		t.Errorf("%s: %.0f B/s beyond the burst, cap %d", what, rate, capBandwidth)
	}
}

// TestTCPRelayBandwidthCap relays more than the cap allows in a second,
// both ways and over two connections at once, and finds it took at least
// the capped time, with every byte delivered (backpressure, not drops).
func TestTCPRelayBandwidthCap(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.BandwidthPerAllocation = capBandwidth })
	alloc := allocateTCP(t, r)
	ln := tcpPeerListener(t)
	client, peer := connectViaRelay(t, alloc, ln, false)

	// At least 0.5 s at the cap beyond the burst.
	const n = 28_000
	// Start with a full bucket: the worst case.
	time.Sleep(capBurst * time.Second / capBandwidth)
	checkCapped(t, "client→peer", n, transfer(t, client, peer, pattern(n, 3)))
	time.Sleep(capBurst * time.Second / capBandwidth)
	checkCapped(t, "peer→client", n, transfer(t, peer, client, pattern(n, 4)))

	// A second connection shares the allocation's budget rather than
	// bringing its own.
	client2, peer2 := connectViaRelay(t, alloc, ln, true)
	time.Sleep(capBurst * time.Second / capBandwidth)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make([]error, 2)
	go func() { defer wg.Done(); _, errs[0] = relayBytes(client, peer, pattern(n/2, 5)) }()
	go func() { defer wg.Done(); _, errs[1] = relayBytes(client2, peer2, pattern(n/2, 6)) }()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkCapped(t, "client→peer over two connections", n, time.Since(start))

	for _, dir := range []string{"client_to_peer", "peer_to_client"} {
		if got := metric(t, r.reg, "punchline_turn_bandwidth_throttled_seconds_total", "direction", dir); got == 0 {
			t.Errorf("%s: no throttling counted", dir)
		}
		if got := metric(t, r.reg, "punchline_turn_bandwidth_dropped_packets_total", "direction", dir); got != 0 {
			t.Errorf("%s: %v drops counted; TCP must not drop", dir, got)
		}
	}
	eventually(t, 2*time.Second, "exact TCP byte counts", func() bool {
		return metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", "client_to_peer") == 2*n &&
			metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", "peer_to_client") == n
	})
	if got := r.srv.RelayedBytesByUser()["alice"]; got != 3*n {
		t.Errorf("alice's relayed bytes = %d, want %d", got, 3*n)
	}
}

// TestTCPRelayUncapped relays several megabytes each way with the cap
// off: nothing waits, and everything is still counted.
func TestTCPRelayUncapped(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.BandwidthPerAllocation = -1 })
	alloc := allocateTCP(t, r)
	client, peer := connectViaRelay(t, alloc, tcpPeerListener(t), false)
	const n = 8 << 20
	up := transfer(t, client, peer, pattern(n, 7))
	down := transfer(t, peer, client, pattern(n, 8))
	t.Logf("uncapped: %.0f MB/s up, %.0f MB/s down", n/up.Seconds()/1e6, n/down.Seconds()/1e6)
	for _, dir := range []string{"client_to_peer", "peer_to_client"} {
		if got := metric(t, r.reg, "punchline_turn_bandwidth_throttled_seconds_total", "direction", dir); got != 0 {
			t.Errorf("%s: throttled %vs with no cap", dir, got)
		}
	}
	eventually(t, 2*time.Second, "exact TCP byte counts", func() bool {
		return r.srv.RelayedBytesByUser()["alice"] == 2*n
	})
}

// BenchmarkTCPRelay measures RFC 6062 relaying throughput (client→peer)
// with the cap off, to keep the metering's cost visible.
func BenchmarkTCPRelay(b *testing.B) {
	r := startRelay(b, func(c *Config) { c.BandwidthPerAllocation = -1 })
	alloc := allocateTCP(b, r)
	client, peer := connectViaRelay(b, alloc, tcpPeerListener(b), false)
	chunk := pattern(64<<10, 9)
	b.SetBytes(int64(len(chunk)))
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, peer, int64(b.N)*int64(len(chunk)))
		done <- err
	}()
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// echoOn answers every datagram on pc with the same bytes, until closed.
func echoOn(t *testing.T, pc net.PacketConn) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from) //nolint:errcheck // a test echo
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
}

// burst sends n numbered ChannelData datagrams at once on ch and checks
// that all come back through the echoing peer, in order and intact.
func burst(c *rawClient, ch uint16, n, size int) error {
	payload := func(i int) []byte {
		p := bytes.Repeat([]byte{byte(i)}, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		return p
	}
	frame := make([]byte, 4+size)
	for i := range n {
		binary.BigEndian.PutUint16(frame[0:2], ch)
		binary.BigEndian.PutUint16(frame[2:4], uint16(size))
		copy(frame[4:], payload(i))
		if _, err := c.conn.WriteTo(frame, c.server); err != nil {
			return err
		}
	}
	for i := range n {
		got, err := c.readChannelData(ch, 2*time.Second)
		if err != nil {
			return fmt.Errorf("datagram %d of %d not back: %w", i, n, err)
		}
		if !bytes.Equal(got, payload(i)) {
			return fmt.Errorf("datagram %d back as %x..., want %x... (lost or reordered)", i, got[:min(8, len(got))], payload(i)[:8])
		}
	}
	return nil
}

// TestFastPathRelaysBurstsExactly sends bursts from two clients at once
// (so the relay reads several datagrams per system call) and checks that
// every datagram makes the round trip in order, that the fast path
// carried them and that per-user bytes and metrics are exact.
func TestFastPathRelaysBurstsExactly(t *testing.T) {
	if !batchIO {
		t.Skip("batched socket I/O is Linux only")
	}
	r := startRelay(t, func(c *Config) { c.BandwidthPerAllocation = -1 })
	const n, size = 200, 101 // odd size: the ChannelData frames back are padded
	users := []string{"alice", "bob"}
	errs := make(chan error, len(users))
	for _, u := range users {
		peer := echoPeer(t)
		c := newRawClient(t, r.udp, u, testRealm, u+"-pw")
		if _, _, err := c.allocate(); err != nil {
			t.Fatal(err)
		}
		if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		go func() {
			for range 4 {
				if err := burst(c, 0x4000, n/4, size); err != nil {
					errs <- fmt.Errorf("%s: %w", u, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(2 * n * size)
	eventually(t, 2*time.Second, "per-user bytes", func() bool {
		got := r.srv.RelayedBytesByUser()
		return got["alice"] == want && got["bob"] == want
	})
	for _, dir := range []string{"client_to_peer", "peer_to_client"} {
		if got := metric(t, r.reg, "punchline_turn_relayed_packets_total", "direction", dir); got != 2*n {
			t.Errorf("%s packets = %v, want %d", dir, got, 2*n)
		}
		if got := metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", dir); got != 2*n*size {
			t.Errorf("%s bytes = %v, want %d", dir, got, 2*n*size)
		}
	}
	if got := r.srv.fastToPeer.Load(); got != 2*n {
		t.Errorf("fast path relayed %d datagrams to peers, want all %d", got, 2*n)
	}
	if got := r.srv.fastToClient.Load(); got != 2*n {
		t.Errorf("fast path relayed %d datagrams to clients, want all %d", got, 2*n)
	}
	// Loopback takes UDP GSO, so no socket may have fallen back.
	r.srv.relays.Range(func(_, v any) bool {
		rc := v.(*relayConn)
		if !rc.raw.gso() {
			t.Errorf("relay socket %s gave up GSO", rc.key)
		}
		if route := rc.route.Load(); route != nil && !route.via.raw.gso() {
			t.Errorf("listener %s gave up GSO", route.via.LocalAddr())
		}
		return true
	})
}

// TestExpiredChannelFallsBackToPion lets a channel expire while its
// permission lives on: the peer's datagrams must then reach the client as
// Data indications (pion's path) and the client's ChannelData on the dead
// channel must not reach the peer.
func TestExpiredChannelFallsBackToPion(t *testing.T) {
	r := startRelay(t, func(c *Config) {
		c.ChannelLifetime = 500 * time.Millisecond
		c.PermissionLifetime = time.Minute
	})
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.do(stun.MethodCreatePermission, peerAttr(peer.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	const ch = 0x4abc
	if err := c.channelBind(ch, peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	c.sendChannelData(ch, []byte("bound"))
	if got, _ := readFrom(t, peer, 2*time.Second); string(got) != "bound" {
		t.Fatalf("peer got %q", got)
	}
	peer.WriteTo([]byte("bound back"), relayed)
	if got, err := c.readChannelData(ch, 2*time.Second); err != nil || string(got) != "bound back" {
		t.Fatalf("client got %q, %v", got, err)
	}

	eventually(t, 5*time.Second, "channel expiry", func() bool {
		return metric(t, r.reg, "punchline_turn_channels") == 0
	})
	peer.WriteTo([]byte("unbound back"), relayed)
	data, from, err := c.readDataIndication(2 * time.Second)
	if err != nil || string(data) != "unbound back" {
		t.Fatalf("client got Data indication %q, %v; want the payload", data, err)
	}
	if want := peer.LocalAddr().(*net.UDPAddr); from.Port != want.Port || !from.IP.Equal(want.IP) {
		t.Errorf("Data indication from %v, want %v", from, want)
	}
	c.sendChannelData(ch, []byte("dead channel"))
	peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := peer.ReadFrom(make([]byte, 64)); err == nil {
		t.Fatalf("peer got %d bytes on an expired channel", n)
	}
}

// readDataIndication returns the DATA and XOR-PEER-ADDRESS of the next
// Data indication.
func (c *rawClient) readDataIndication(timeout time.Duration) ([]byte, *net.UDPAddr, error) {
	buf := make([]byte, 2048)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil, nil, err
		}
		if !stun.IsMessage(buf[:n]) {
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			continue
		}
		data, err := m.Get(stun.AttrData)
		if err != nil {
			return nil, nil, err
		}
		var peer stun.XORMappedAddress
		if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			return nil, nil, err
		}
		return data, &net.UDPAddr{IP: peer.IP, Port: peer.Port}, nil
	}
}

// TestFastPathOverIPv6AndDualStack relays both ways through an IPv6
// listener with IPv6 peers, and through a dual-stack listener ([::]) with
// an IPv4 client, whose address the kernel reports IPv4-mapped.
func TestFastPathOverIPv6AndDualStack(t *testing.T) {
	if !batchIO {
		t.Skip("batched socket I/O is Linux only")
	}
	probe, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	probe.Close()
	for _, tc := range []struct {
		name, listen, client string
		relayIP              netip.Addr
		allow                string
	}{
		{"ipv6", "[::1]:0", "[::1]:0", netip.Addr{}, "::1/128"},
		{"dual-stack", "[::]:0", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1"), "127.0.0.0/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *Config) {
				c.Listeners = []Listener{{Network: "udp", Addr: tc.listen}}
				c.AllowPeers = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
				c.RelayIP = tc.relayIP
			})
			peerNet := "udp6"
			if tc.relayIP.Is4() {
				peerNet = "udp4"
			}
			peer, err := net.ListenPacket(peerNet, netip.AddrPortFrom(netip.MustParsePrefix(tc.allow).Addr(), 0).String())
			if err != nil {
				t.Fatal(err)
			}
			echoOn(t, peer)
			conn, err := net.ListenPacket("udp", tc.client)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			server := r.udp
			if tc.relayIP.Is4() {
				server = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: r.udp.(*net.UDPAddr).Port}
			}
			c := &rawClient{t: t, conn: conn, server: server, user: "alice", realm: testRealm, key: LongTermKey("alice", testRealm, "alice-pw")}
			if _, _, err := c.allocate(); err != nil {
				t.Fatalf("allocate: %v", err)
			}
			if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
				t.Fatalf("channel bind: %v", err)
			}
			if err := burst(c, 0x4000, 20, 60); err != nil {
				t.Fatal(err)
			}
			// Counted after the send returns, which may be after the
			// round trip.
			eventually(t, 2*time.Second, "20 datagrams counted on the fast path to the peer", func() bool {
				return r.srv.fastToPeer.Load() == 20
			})
			if got := r.srv.fastToClient.Load(); got != 20 {
				t.Errorf("fast path relayed %d datagrams to the client, want 20", got)
			}
		})
	}
}

// TestFastPathIgnoresStrangersAndBadFrames checks what the fast path must
// leave alone: ChannelData from an address without an allocation, for an
// unbound channel number, or with a length beyond the datagram, and
// datagrams from a peer without a permission.
func TestFastPathIgnoresStrangersAndBadFrames(t *testing.T) {
	r := startRelay(t, nil)
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	stranger := newRawClient(t, r.udp, "bob", testRealm, "bob-pw")
	stranger.sendChannelData(0x4000, []byte("no allocation"))
	c.sendChannelData(0x4001, []byte("unbound channel"))
	bad := []byte{0x40, 0x00, 0x00, 0x20, 'x'} // claims 32 bytes, has 1
	c.conn.WriteTo(bad, c.server)
	c.sendChannelData(0x4000, []byte("good"))
	got, _ := readFrom(t, peer, 2*time.Second)
	if string(got) != "good" {
		t.Fatalf("peer got %q first, want only %q", got, "good")
	}
	peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, _, err := peer.ReadFrom(make([]byte, 64)); err == nil {
		t.Fatalf("peer got %d more bytes", n)
	}

	// Permissions are per IP address (RFC 8656 §9): another port of the
	// peer's address would be let through as a Data indication.
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	defer other.Close()
	other.WriteTo([]byte("stranger"), relayed)
	peer.WriteTo([]byte("friend"), relayed)
	back, err := c.readChannelData(0x4000, 2*time.Second)
	if err != nil || string(back) != "friend" {
		t.Fatalf("client got %q, %v; want only the permitted peer's datagram", back, err)
	}
	if got := r.srv.RelayedBytesByUser()["alice"]; got != uint64(len("good")+len("friend")) {
		t.Errorf("alice's relayed bytes = %d, want %d", got, len("good")+len("friend"))
	}
}

// TestFastPathServesReceiveOnlyClients checks that a client which never
// sends ChannelData (receive-only media) still gets its peer's datagrams
// through the fast path: the route to it is known from its allocation.
func TestFastPathServesReceiveOnlyClients(t *testing.T) {
	if !batchIO {
		t.Skip("batched socket I/O is Linux only")
	}
	r := startRelay(t, nil)
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	const ch = 0x5000
	relayed := c.allocateBound(ch, peer.LocalAddr())
	for i := range 10 {
		peer.WriteTo([]byte{byte(i), 1, 2, 3, 4}, relayed)
	}
	for i := range 10 {
		got, err := c.readChannelData(ch, 2*time.Second)
		if err != nil || len(got) != 5 || got[0] != byte(i) {
			t.Fatalf("datagram %d: %x, %v", i, got, err)
		}
	}
	if got := r.srv.fastToClient.Load(); got != 10 {
		t.Errorf("fast path relayed %d datagrams to the client, want 10", got)
	}
}

// FuzzIsChannelData checks the fast path's ChannelData framing against
// RFC 8656 §12.4: accepted frames have a channel number in 0x4000–0x7FFF
// and a length that fits, and the payload is exactly that long.
func FuzzIsChannelData(f *testing.F) {
	for _, s := range [][]byte{
		{0x40, 0x00, 0x00, 0x00},
		{0x7f, 0xff, 0x00, 0x02, 'h', 'i', 0, 0},
		{0x40, 0x01, 0x00, 0x05, 'x'},
		{0x80, 0x00, 0x00, 0x00},
		{0x3f, 0xff, 0x00, 0x00},
		{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42},
		{0x40},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		num, payload, ok := isChannelData(b)
		if !ok {
			if len(b) >= 4 && num == 0 && b[0]&0xC0 == 0x40 && int(binary.BigEndian.Uint16(b[2:4])) <= len(b)-4 {
				t.Fatalf("%x refused", b)
			}
			return
		}
		if num < 0x4000 || num > 0x7FFF {
			t.Fatalf("%x accepted with channel number %#x", b, num)
		}
		if len(payload) != int(binary.BigEndian.Uint16(b[2:4])) || (len(payload) > 0 && &payload[0] != &b[4]) {
			t.Fatalf("%x: payload of %d bytes, not the frame's own", b, len(payload))
		}
	})
}

// FuzzFastPathDatagram sends each input from a client with an allocation
// and a bound channel, and from its permitted peer, then requires marker
// datagrams queued behind them to be relayed both ways: no input may crash
// or wedge either direction of the fast path.
func FuzzFastPathDatagram(f *testing.F) {
	for _, s := range [][]byte{
		{0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c', 0},
		{0x40, 0x00, 0xff, 0xff},
		{0x40, 0x01, 0x00, 0x00},
		{0x7f, 0xff, 0x00, 0x00},
		{},
		bytes.Repeat([]byte{0x40}, 1700),
	} {
		f.Add(s)
	}
	r := startRelay(f, func(c *Config) { c.ReadLoops = 1 })
	peer := newPeer(f)
	c := newRawClient(f, r.udp, "alice", testRealm, "alice-pw")
	const ch = 0x4000
	relayed := c.allocateBound(ch, peer.LocalAddr())
	marker := []byte("marker")
	buf := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := c.conn.WriteTo(data, c.server); err != nil {
			t.Skip("datagram too large for the socket")
		}
		frame := append([]byte{byte(ch >> 8), byte(ch & 0xff), 0, byte(len(marker))}, marker...)
		c.conn.WriteTo(frame, c.server)
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := peer.ReadFrom(buf)
			if err != nil {
				t.Fatalf("client to peer stopped after %x: %v", data, err)
			}
			if bytes.Equal(buf[:n], marker) {
				break
			}
		}
		if _, err := peer.WriteTo(data, relayed); err != nil {
			t.Skip("datagram too large for the socket")
		}
		peer.WriteTo(marker, relayed)
		for {
			got, err := c.readChannelData(ch, 2*time.Second)
			if err != nil {
				t.Fatalf("peer to client stopped after %x: %v", data, err)
			}
			if bytes.Equal(got, marker) {
				return
			}
		}
	})
}

// TestFastPathDatagramSizes relays the largest peer datagram pion relays
// (1600 bytes) and drops a larger one whole rather than cut.
func TestFastPathDatagramSizes(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.BandwidthPerAllocation = -1 })
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1600, 1700, 3} {
		peer.WriteTo(bytes.Repeat([]byte{byte(size)}, size), relayed)
	}
	for _, want := range []int{1600, 3} {
		got, err := c.readChannelData(0x4000, 2*time.Second)
		if err != nil || len(got) != want || got[0] != byte(want) {
			t.Fatalf("client got %d bytes (%v), want %d: a datagram over 1600 bytes must be dropped, not cut", len(got), err, want)
		}
	}
}

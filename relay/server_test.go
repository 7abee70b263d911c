package relay

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testRealm = "test.realm"

// testUsers is a two-account store.
var testUsers = UserKeysFunc(func(user string) ([]byte, error) {
	switch user {
	case "alice":
		return LongTermKey("alice", testRealm, "alice-pw"), nil
	case "bob":
		return LongTermKey("bob", testRealm, "bob-pw"), nil
	}
	return nil, ErrNoSuchUser
})

type testRelay struct {
	srv *Server
	reg *prometheus.Registry
	udp net.Addr
	tcp net.Addr
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// startRelay runs a relay on loopback with peers on loopback allowed
// unless mutate says otherwise.
func startRelay(t testing.TB, mutate func(*Config)) *testRelay {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Realm:      testRealm,
		Users:      testUsers,
		Secret:     "rest-secret",
		Listeners:  []Listener{{Network: "udp", Addr: "127.0.0.1:0"}, {Network: "tcp", Addr: "127.0.0.1:0"}},
		AllowPeers: loopback,
		ReadLoops:  2,
		Metrics:    reg,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	tr := &testRelay{srv: srv, reg: reg}
	for _, e := range srv.Endpoints() {
		switch e.Network {
		case "udp":
			tr.udp = e.Addr
		case "tcp":
			tr.tcp = e.Addr
		}
	}
	return tr
}

func newPeer(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func readFrom(t *testing.T, pc net.PacketConn, timeout time.Duration) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	return buf[:n], from
}

func TestPermissionChannelBindAndRelayBothWays(t *testing.T) {
	r := startRelay(t, nil)
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if _, err := c.do(stun.MethodCreatePermission, peerAttr(peer.LocalAddr())); err != nil {
		t.Fatalf("create permission: %v", err)
	}
	if got := metric(t, r.reg, "punchline_turn_permissions"); got != 1 {
		t.Errorf("permissions gauge = %v, want 1", got)
	}
	const ch = 0x4001
	if err := c.channelBind(ch, peer.LocalAddr()); err != nil {
		t.Fatalf("channel bind: %v", err)
	}
	if got := metric(t, r.reg, "punchline_turn_channels"); got != 1 {
		t.Errorf("channels gauge = %v, want 1", got)
	}

	c.sendChannelData(ch, []byte("hello peer"))
	got, from := readFrom(t, peer, 2*time.Second)
	if string(got) != "hello peer" {
		t.Fatalf("peer got %q", got)
	}
	if from.String() != relayed.String() {
		t.Errorf("peer saw source %v, want the relayed address %v", from, relayed)
	}
	if _, err := peer.WriteTo([]byte("hello client"), relayed); err != nil {
		t.Fatal(err)
	}
	back, err := c.readChannelData(ch, 2*time.Second)
	if err != nil || string(back) != "hello client" {
		t.Fatalf("client got %q, %v", back, err)
	}
	// The counters are bumped after the write returns, which may be after
	// the datagram has made the round trip.
	for _, dir := range []string{"client_to_peer", "peer_to_client"} {
		eventually(t, 2*time.Second, dir+" packets counted", func() bool {
			return metric(t, r.reg, "punchline_turn_relayed_packets_total", "direction", dir) == 1
		})
	}
	if got := metric(t, r.reg, "punchline_turn_relayed_bytes_total", "direction", "client_to_peer"); got != float64(len("hello peer")) {
		t.Errorf("client_to_peer bytes = %v", got)
	}
}

func TestStrangerWithoutPermissionIsNotRelayed(t *testing.T) {
	r := startRelay(t, nil)
	peer, stranger := newPeer(t), newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	// A permission is per IP (RFC 8656 §9), so the stranger needs another
	// address: 127.0.0.2 is loopback too on Linux.
	far, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this host: %v", err)
	}
	defer far.Close()
	_ = stranger
	far.WriteTo([]byte("spam"), relayed)
	peer.WriteTo([]byte("real"), relayed)
	got, err := c.readChannelData(0x4000, 2*time.Second)
	if err != nil || string(got) != "real" {
		t.Fatalf("client got %q, %v; want only the permitted peer's datagram", got, err)
	}
	if n := metric(t, r.reg, "punchline_turn_relayed_packets_total", "direction", "peer_to_client"); n != 1 {
		t.Errorf("peer_to_client packets = %v, want 1 (the stranger's must not count)", n)
	}
}

func TestPeersRefusedByPolicy(t *testing.T) {
	cases := []struct {
		name       string
		allow      []netip.Prefix
		deny       []netip.Prefix
		peer       string
		wantRelay  bool
		wantRefuse int
	}{
		{name: "loopback peer refused by default", peer: "127.0.0.1", wantRefuse: 2},
		{name: "loopback peer allowed when opened", allow: loopback, peer: "127.0.0.1", wantRelay: true},
		{name: "explicit deny beats allow", allow: loopback, deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, peer: "127.0.0.1", wantRefuse: 2},
		{name: "metadata address refused", allow: loopback, peer: "169.254.169.254", wantRefuse: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, func(c *Config) { c.AllowPeers, c.DenyPeers = tc.allow, tc.deny })
			c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
			if _, _, err := c.allocate(); err != nil {
				t.Fatal(err)
			}
			peer := &net.UDPAddr{IP: net.ParseIP(tc.peer), Port: 9}
			_, permErr := c.do(stun.MethodCreatePermission, peerAttr(peer))
			bindErr := c.channelBind(0x4000, peer)
			if tc.wantRelay {
				if permErr != nil || bindErr != nil {
					t.Fatalf("permission %v, channel bind %v; want both granted", permErr, bindErr)
				}
			} else {
				if codeOf(permErr) != stun.CodeForbidden || codeOf(bindErr) != stun.CodeForbidden {
					t.Fatalf("permission %v, channel bind %v; want 403 for both", permErr, bindErr)
				}
			}
			if got := metric(t, r.reg, "punchline_turn_refused_peers_total"); got != float64(tc.wantRefuse) {
				t.Errorf("refused peers = %v, want %d", got, tc.wantRefuse)
			}
		})
	}
}

func TestRefreshClampsLifetimeAndZeroDeletes(t *testing.T) {
	r := startRelay(t, func(c *Config) {
		c.MinLifetime, c.DefaultLifetime, c.MaxLifetime = 30*time.Second, time.Minute, 2*time.Minute
	})
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	_, res, err := c.allocate(lifetimeAttr(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := lifetimeOf(t, res); got != 2*time.Minute {
		t.Errorf("allocate asking 1h granted %v, want the 2m cap", got)
	}
	for _, tc := range []struct {
		ask  stun.Setter
		want time.Duration
	}{
		{lifetimeAttr(5 * time.Second), 30 * time.Second},
		{lifetimeAttr(90 * time.Second), 90 * time.Second},
		{nil, time.Minute},
	} {
		var attrs []stun.Setter
		if tc.ask != nil {
			attrs = append(attrs, tc.ask)
		}
		res, err := c.do(stun.MethodRefresh, attrs...)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if got := lifetimeOf(t, res); got != tc.want {
			t.Errorf("refresh granted %v, want %v", got, tc.want)
		}
	}
	if _, err := c.do(stun.MethodRefresh, lifetimeAttr(0)); err != nil {
		t.Fatalf("refresh 0: %v", err)
	}
	eventually(t, 2*time.Second, "allocation deleted", func() bool { return r.srv.AllocationCount() == 0 })
	if _, err := c.do(stun.MethodRefresh); codeOf(err) != stun.CodeAllocMismatch {
		t.Errorf("refresh after delete: %v, want 437", err)
	}
}

func TestAllocationExpiresWithoutRefresh(t *testing.T) {
	r := startRelay(t, func(c *Config) {
		c.MinLifetime, c.DefaultLifetime, c.MaxLifetime = time.Second, time.Second, time.Second
	})
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	relayed, res, err := c.allocate(lifetimeAttr(10 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := lifetimeOf(t, res); got != time.Second {
		t.Fatalf("granted %v, want 1s", got)
	}
	eventually(t, 5*time.Second, "allocation expired", func() bool {
		return metric(t, r.reg, "punchline_turn_allocations") == 0 && r.srv.AllocationCount() == 0
	})
	if _, err := c.do(stun.MethodRefresh); codeOf(err) != stun.CodeAllocMismatch {
		t.Errorf("refresh after expiry: %v, want 437 Allocation Mismatch", err)
	}
	// The relay port is given back: it can be bound again.
	pc, err := net.ListenPacket("udp4", relayed.String())
	if err != nil {
		t.Errorf("relay port %v still held after expiry: %v", relayed, err)
	} else {
		pc.Close()
	}
}

func TestUserQuotaAnswers486(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.MaxAllocationsPerUser = 2 })
	var first *rawClient
	for i := range 2 {
		c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		if _, _, err := c.allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if i == 0 {
			first = c
		}
	}
	third := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	if _, _, err := third.allocate(); codeOf(err) != stun.CodeAllocQuotaReached {
		t.Fatalf("third allocation: %v, want 486", err)
	}
	if got := metric(t, r.reg, "punchline_turn_quota_refusals_total", "quota", "user"); got != 1 {
		t.Errorf("user quota refusals = %v, want 1", got)
	}
	// Another user is not affected.
	bob := newRawClient(t, r.udp, "bob", testRealm, "bob-pw")
	if _, _, err := bob.allocate(); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// Freeing one makes room again.
	if _, err := first.do(stun.MethodRefresh, lifetimeAttr(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "slot freed", func() bool { return r.srv.AllocationCount() == 2 })
	again := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	if _, _, err := again.allocate(); err != nil {
		t.Fatalf("allocation after freeing a slot: %v", err)
	}
}

func TestServerCapacityAnswers508(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.MaxAllocations = 1 })
	a := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	if _, _, err := a.allocate(); err != nil {
		t.Fatal(err)
	}
	b := newRawClient(t, r.udp, "bob", testRealm, "bob-pw")
	if _, _, err := b.allocate(); codeOf(err) != stun.CodeInsufficientCapacity {
		t.Fatalf("allocation beyond capacity: %v, want 508", err)
	}
	if got := metric(t, r.reg, "punchline_turn_quota_refusals_total", "quota", "total"); got != 1 {
		t.Errorf("total quota refusals = %v, want 1", got)
	}
}

func TestBandwidthCapBoundsRelayedBytes(t *testing.T) {
	const bw = 20000 // bytes/s; burst is 200 ms worth (4000 bytes)
	r := startRelay(t, func(c *Config) { c.BandwidthPerAllocation = bw })
	peer := newPeer(t)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	const ch = 0x4000
	relayed := c.allocateBound(ch, peer.LocalAddr())
	payload := bytes.Repeat([]byte{0xAB}, 1000)
	const sent = 200 // 200 kB offered at once: ten times what a second allows

	start := time.Now()
	for range sent {
		c.sendChannelData(ch, payload)
	}
	got := 0
	buf := make([]byte, 2048)
	var last time.Time
	for {
		peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := peer.ReadFrom(buf)
		if err != nil {
			break
		}
		got += n
		last = time.Now()
	}
	elapsed := last.Sub(start).Seconds()
	limit := 4000 + bw*elapsed + 1000
	t.Logf("client→peer: offered %d bytes, relayed %d in %.3fs (limit %.0f)", sent*1000, got, elapsed, limit)
	if got == 0 || float64(got) > limit {
		t.Fatalf("relayed %d bytes, want between 1 and %.0f", got, limit)
	}
	if d := metric(t, r.reg, "punchline_turn_bandwidth_dropped_packets_total", "direction", "client_to_peer"); d == 0 {
		t.Error("no drops counted")
	}

	// And the other way.
	start = time.Now()
	for range sent {
		peer.WriteTo(payload, relayed)
	}
	got = 0
	for {
		data, err := c.readChannelData(ch, 300*time.Millisecond)
		if err != nil {
			break
		}
		got += len(data)
		last = time.Now()
	}
	elapsed = last.Sub(start).Seconds()
	limit = 4000 + bw*elapsed + 1000
	t.Logf("peer→client: offered %d bytes, relayed %d in %.3fs (limit %.0f)", sent*1000, got, elapsed, limit)
	if got == 0 || float64(got) > limit {
		t.Fatalf("relayed %d bytes, want between 1 and %.0f", got, limit)
	}
}

func TestAuthentication(t *testing.T) {
	r := startRelay(t, nil)
	now := time.Now()
	restUser, restPass, _ := RESTCredentials("rest-secret", "carol", now, time.Hour)
	oldUser, oldPass, _ := RESTCredentials("rest-secret", "carol", now, -time.Minute)
	forgedUser, forgedPass, _ := RESTCredentials("other-secret", "carol", now, time.Hour)
	cases := []struct {
		name, user, realm, pass string
		ok                      bool
		reason                  string
	}{
		{"stored account", "alice", testRealm, "alice-pw", true, ""},
		{"wrong password", "alice", testRealm, "nope", false, "bad_password"},
		{"unknown user", "mallory", testRealm, "x", false, "unknown_user"},
		{"other realm", "alice", "elsewhere", "alice-pw", false, "wrong_realm"},
		{"REST credentials", restUser, testRealm, restPass, true, ""},
		{"expired REST credentials", oldUser, testRealm, oldPass, false, "expired"},
		{"REST credentials from another secret", forgedUser, testRealm, forgedPass, false, "bad_password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := 0.0
			if tc.reason != "" {
				before = metric(t, r.reg, "punchline_turn_auth_failures_total", "reason", tc.reason)
			}
			c := newRawClient(t, r.udp, tc.user, tc.realm, tc.pass)
			_, _, err := c.allocate()
			if tc.ok {
				if err != nil {
					t.Fatalf("allocate: %v", err)
				}
				return
			}
			if codeOf(err) != stun.CodeUnauthorized {
				t.Fatalf("allocate: %v, want 401", err)
			}
			if after := metric(t, r.reg, "punchline_turn_auth_failures_total", "reason", tc.reason); after != before+1 {
				t.Errorf("auth failures{%s} went %v → %v, want +1", tc.reason, before, after)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no listeners", Config{Secret: "x"}, ErrNoListeners},
		{"no auth", Config{Listeners: []Listener{{Network: "udp", Addr: "127.0.0.1:0"}}}, ErrNoAuth},
		{"tls without certificate", Config{Secret: "x", Listeners: []Listener{{Network: "tls", Addr: "127.0.0.1:0"}}}, ErrTLSConfig},
		{"bad network", Config{Secret: "x", Listeners: []Listener{{Network: "sctp", Addr: "127.0.0.1:0"}}}, ErrBadListener},
		{"bad port range", Config{Secret: "x", Listeners: []Listener{{Network: "udp", Addr: "127.0.0.1:0"}}, RelayPortMin: 5000}, ErrBadConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, tc.want) {
				t.Fatalf("New: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAddressInUseIsAnError(t *testing.T) {
	r := startRelay(t, nil)
	_, err := New(Config{Secret: "x", Listeners: []Listener{{Network: "udp", Addr: r.udp.String()}}, ReadLoops: 2})
	if err == nil {
		t.Fatal("second relay on the same UDP port started; want address in use")
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	r := startRelay(t, nil)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	if _, _, err := c.allocate(); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestPublicIPAndRelayPortRange(t *testing.T) {
	r := startRelay(t, func(c *Config) {
		c.PublicIP = netip.MustParseAddr("203.0.113.77")
		c.RelayPortMin, c.RelayPortMax = 45000, 45100
	})
	for range 3 {
		c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		relayed, res, err := c.allocate()
		if err != nil {
			t.Fatal(err)
		}
		if !relayed.IP.Equal(net.ParseIP("203.0.113.77")) {
			t.Errorf("relayed address %v, want the public IP", relayed)
		}
		if relayed.Port < 45000 || relayed.Port > 45100 {
			t.Errorf("relayed port %d outside 45000-45100", relayed.Port)
		}
		var mapped stun.XORMappedAddress
		if err := mapped.GetFrom(res); err != nil || !mapped.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want the client's loopback address", mapped, err)
		}
	}
}

func TestIdleTCPClientIsDisconnected(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.StreamIdleTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", r.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from the relay on a silent connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the relay kept a silent connection open for 5s")
	}
}

func TestStaleNonceGets438WithAFreshNonce(t *testing.T) {
	r := startRelay(t, nil)
	c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
	c.nonce = "obviously-not-a-nonce-this-server-issued"
	if _, _, err := c.allocate(); err != nil {
		t.Fatalf("allocate after a stale nonce: %v", err)
	}
	if len(c.seen) != 1 || c.seen[0] != stun.CodeStaleNonce {
		t.Fatalf("retries after %v, want one 438 Stale Nonce", c.seen)
	}
	// A fresh client gets 401 with a nonce first, then succeeds.
	d := newRawClient(t, r.udp, "bob", testRealm, "bob-pw")
	if _, _, err := d.allocate(); err != nil {
		t.Fatal(err)
	}
	if len(d.seen) != 1 || d.seen[0] != stun.CodeUnauthorized {
		t.Fatalf("retries after %v, want one 401", d.seen)
	}
}

func TestIPv6LoopbackListener(t *testing.T) {
	probe, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	probe.Close()
	r := startRelay(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: "[::1]:0"}}
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	})
	peer, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, conn: conn, server: r.udp, user: "alice", realm: testRealm, key: LongTermKey("alice", testRealm, "alice-pw")}
	defer conn.Close()
	relayed, _, err := c.allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	if relayed.IP.To4() != nil || !relayed.IP.IsLoopback() {
		t.Fatalf("relayed address %v, want IPv6 loopback", relayed)
	}
	if err := c.channelBind(0x4000, peer.LocalAddr()); err != nil {
		t.Fatalf("channel bind to [::1]: %v", err)
	}
	c.sendChannelData(0x4000, []byte("v6"))
	if got, _ := readFrom(t, peer, 2*time.Second); string(got) != "v6" {
		t.Fatalf("peer got %q", got)
	}
	// ::1 stays refused for a server that did not open it, in any spelling.
	strict := startRelay(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "udp", Addr: "[::1]:0"}}
		c.AllowPeers = nil
	})
	conn2, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	d := &rawClient{t: t, conn: conn2, server: strict.udp, user: "alice", realm: testRealm, key: LongTermKey("alice", testRealm, "alice-pw")}
	if _, _, err := d.allocate(); err != nil {
		t.Fatal(err)
	}
	if err := d.channelBind(0x4000, peer.LocalAddr()); codeOf(err) != stun.CodeForbidden {
		t.Fatalf("channel bind to [::1] on a strict relay: %v, want 403", err)
	}
}

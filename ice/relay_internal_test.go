package ice

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// blockingConn stands in for a TURN allocation: WriteTo to a new IP
// blocks until the test releases it (the permission round trip), and
// fails for IPs the "server" refuses.
type blockingConn struct {
	net.PacketConn
	mu      sync.Mutex
	release chan struct{}
	refuse  map[string]bool
	sent    []string
}

var errRefused = errors.New("403 Forbidden")

func (c *blockingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	<-c.release
	ip := addr.(*net.UDPAddr).IP.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse[ip] {
		return 0, errRefused
	}
	c.sent = append(c.sent, string(p))
	return len(p), nil
}

func (c *blockingConn) Close() error { return nil }

func (c *blockingConn) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.sent...)
}

func TestRelayConnNeverBlocksOnPermissions(t *testing.T) {
	inner := &blockingConn{release: make(chan struct{}), refuse: map[string]bool{"10.0.0.9": true}}
	var wg sync.WaitGroup
	c := &relayConn{PacketConn: inner, perms: map[string]*permState{}, wg: &wg, log: slog.New(slog.DiscardHandler)}
	peer := &net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 4000}
	private := &net.UDPAddr{IP: net.ParseIP("10.0.0.9"), Port: 4000}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range []string{"first", "second"} {
			if n, err := c.WriteTo([]byte(m), peer); n != len(m) || err != nil {
				t.Errorf("WriteTo = %d, %v", n, err)
			}
		}
		_, _ = c.WriteTo([]byte("to-private"), private)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo blocked while the permission was pending")
	}
	close(inner.release) // the permissions come back: one granted, one refused
	wg.Wait()
	// The first packet went out once permitted, then the one held while
	// the permission was pending, in order.
	if got := inner.got(); len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("sent %q, want first and second", got)
	}
	if _, err := c.WriteTo([]byte("third"), peer); err != nil {
		t.Fatal(err)
	}
	if got := inner.got(); len(got) != 3 || got[2] != "third" {
		t.Fatalf("sent %q after the permission, want third passed straight through", got)
	}
	// The refused IP is skipped, not retried at once.
	_, _ = c.WriteTo([]byte("again"), private)
	wg.Wait()
	c.mu.Lock()
	st := *c.perms["10.0.0.9"]
	c.mu.Unlock()
	if st.ok || st.pending || !st.retryAt.After(time.Now()) {
		t.Fatalf("refused peer state %+v", st)
	}
	_ = c.Close()
	if _, err := c.WriteTo([]byte("closed"), peer); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close = %v", err)
	}
}

func TestRelayReaches(t *testing.T) {
	for _, tc := range []struct {
		relayed, peer string
		want          bool
	}{
		{"203.0.113.1", "198.51.100.7", true},       // public to public
		{"203.0.113.1", "10.0.2.2", false},          // public relay, private host candidate
		{"203.0.113.1", "192.168.1.5", false},       // likewise
		{"203.0.113.1", "100.64.3.4", false},        // carrier-grade NAT space
		{"203.0.113.1", "169.254.1.1", false},       // link-local
		{"203.0.113.1", "127.0.0.1", false},         // the relay's own host
		{"203.0.113.1", "224.0.0.251", false},       // multicast
		{"203.0.113.1", "0.0.0.0", false},           // unspecified
		{"203.0.113.1", "2001:db8::1", false},       // other family
		{"10.0.0.1", "10.0.5.5", true},              // relay inside a private network
		{"10.0.0.1", "203.0.113.9", true},           // private relay, public peer
		{"10.0.0.1", "127.0.0.1", false},            // private relay, loopback
		{"127.0.0.1", "127.0.0.1", true},            // loopback test server
		{"127.0.0.1", "10.99.0.7", false},           // loopback relay, private peer
		{"127.0.0.1", "198.51.100.9", false},        // loopback relay, public peer
		{"2001:db8::1", "2001:db8::2", true},        // IPv6 public
		{"2001:db8::1", "fd00::5", false},           // IPv6 unique local
		{"::ffff:203.0.113.1", "203.0.113.2", true}, // mapped relayed address
	} {
		got := relayReaches(netip.MustParseAddr(tc.relayed), netip.MustParseAddr(tc.peer))
		if got != tc.want {
			t.Errorf("relayReaches(%s, %s) = %v, want %v", tc.relayed, tc.peer, got, tc.want)
		}
	}
}

// TestRelayConnDropsPeersOutOfReach: a relay on a public address is never
// asked to send to a private host candidate (coturn closes the whole
// allocation when that send fails), while public peers go through.
func TestRelayConnDropsPeersOutOfReach(t *testing.T) {
	inner := &blockingConn{release: make(chan struct{})}
	close(inner.release)
	var wg sync.WaitGroup
	c := &relayConn{PacketConn: inner, perms: map[string]*permState{}, wg: &wg, log: slog.New(slog.DiscardHandler),
		relayed: netip.MustParseAddr("203.0.113.1")}
	private := &net.UDPAddr{IP: net.ParseIP("10.0.2.2"), Port: 5000}
	public := &net.UDPAddr{IP: net.ParseIP("198.51.100.7"), Port: 4000}
	for range 3 {
		if n, err := c.WriteTo([]byte("check"), private); n != 5 || err != nil {
			t.Fatalf("WriteTo(private) = %d, %v; want it silently dropped", n, err)
		}
	}
	if _, err := c.WriteTo([]byte("to-public"), public); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := inner.got(); len(got) != 1 || got[0] != "to-public" {
		t.Fatalf("the allocation was asked to send %q, want only to-public", got)
	}
}

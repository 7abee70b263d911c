package ice

import (
	"errors"
	"log/slog"
	"net"
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

package relay

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

var (
	// errNoTCPAllocation is returned to pion when a Connect names a relay
	// address this server has no TCP allocation for; the peer is not
	// dialed, since its traffic could be neither counted nor capped.
	errNoTCPAllocation = errors.New("no TCP allocation for relay address")
	errBurstExceeded   = errors.New("relay: write larger than the bandwidth burst")
)

// RFC 6062 data connections are relayed by pion itself: after a
// ConnectionBind it copies bytes between the client's data connection and
// the peer connection with two io.Copy loops. Every byte of the allocation
// therefore passes through the peer-side net.Conn, which this server
// hands to pion: dialed in relayGen.AllocateConn (Connect) or accepted
// from the relay listener of relayGen.AllocateListener (a peer's inbound
// connection). Wrapping that conn (meteredConn) sees both directions:
// Write is client→peer, Read is peer→client.

// tcpAlloc is one TCP allocation's state shared by all its data
// connections: the byte tally and one bandwidth budget per direction, so
// that opening more connections does not multiply the cap.
type tcpAlloc struct {
	s   *Server
	key string // relay address, as pion passes it to AllocateConn
	tally

	toPeer, toClient *rate.Limiter // nil: unlimited

	// ctx ends when the allocation closes, waking data connections that
	// wait for bandwidth.
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *Server) newTCPAlloc(key, user string) *tcpAlloc {
	a := &tcpAlloc{s: s, key: key}
	a.user = user
	if bw := s.cfg.BandwidthPerAllocation; bw > 0 {
		// The same budget as a UDP allocation's (newRelayConn).
		burst := int(max(bw/5, 3200))
		a.toPeer = rate.NewLimiter(rate.Limit(bw), burst)
		a.toClient = rate.NewLimiter(rate.Limit(bw), burst)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	s.tcpAllocs.Store(key, a)
	s.usage.add(&a.tally)
	return a
}

// close is called once, when pion closes the allocation's relay listener
// (after it has closed the allocation's data connections).
func (a *tcpAlloc) close() {
	a.cancel()
	a.s.tcpAllocs.CompareAndDelete(a.key, a)
	a.s.usage.retire(&a.tally)
}

// meter wraps a peer data connection of the allocation.
func (a *tcpAlloc) meter(c net.Conn) net.Conn {
	ctx, cancel := context.WithCancel(a.ctx)
	return &meteredConn{Conn: c, a: a, ctx: ctx, cancel: cancel}
}

// relayListener is a TCP allocation's relay socket. It meters the peer
// connections it accepts and gives the quota slot back when pion closes it.
type relayListener struct {
	net.Listener
	a       *tcpAlloc
	release func()
	once    sync.Once
}

func (l *relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.a.meter(c), nil
}

func (l *relayListener) Close() error {
	l.once.Do(func() {
		l.a.close()
		l.release()
	})
	return l.Listener.Close()
}

// meteredConn is the peer side of one RFC 6062 data connection. It counts
// the relayed bytes and keeps to the allocation's bandwidth cap by making
// the relaying goroutine wait: a stream must not lose bytes, so instead of
// dropping (as the UDP path does) it stops reading until the budget
// allows, and TCP flow control pushes back on the sender, the client for
// Write and the peer for Read.
type meteredConn struct {
	net.Conn
	a *tcpAlloc
	// ctx ends on Close, so a wait for bandwidth never outlives the conn.
	ctx    context.Context
	cancel context.CancelFunc
}

// Read takes peer data for the client. Bytes read are held until the
// to-client budget covers them; reads are at most one burst long, so one
// read's wait is bounded.
func (c *meteredConn) Read(p []byte) (int, error) {
	lim := c.a.toClient
	if lim != nil && len(p) > lim.Burst() {
		p = p[:lim.Burst()]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if lim != nil {
			if werr := c.a.wait(c.ctx, lim, n, c.a.s.metrics.throttledToClient); werr != nil {
				return 0, werr
			}
		}
		c.a.s.metrics.bytesToClient.Add(float64(n))
		c.a.relayed.Add(uint64(n))
	}
	return n, err
}

// Write sends client data to the peer, one burst at a time, each after
// the to-peer budget allows it.
func (c *meteredConn) Write(p []byte) (int, error) {
	lim := c.a.toPeer
	done := 0
	for done < len(p) {
		chunk := p[done:]
		if lim != nil {
			if len(chunk) > lim.Burst() {
				chunk = chunk[:lim.Burst()]
			}
			if err := c.a.wait(c.ctx, lim, len(chunk), c.a.s.metrics.throttledToPeer); err != nil {
				return done, err
			}
		}
		n, err := c.Conn.Write(chunk)
		if n > 0 {
			c.a.s.metrics.bytesToPeer.Add(float64(n))
			c.a.relayed.Add(uint64(n))
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (c *meteredConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// wait blocks until lim grants n bytes (n ≤ burst) or ctx ends, and adds
// the time waited to throttled. The common case, tokens available, costs
// one reservation and no timer.
func (a *tcpAlloc) wait(ctx context.Context, lim *rate.Limiter, n int, throttled prometheus.Counter) error {
	now := time.Now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return errBurstExceeded // callers cut to the burst; cannot happen
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	throttled.Add(d.Seconds())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return net.ErrClosed
	}
}

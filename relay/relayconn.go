package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

// relayGen hands pion relay sockets wrapped in relayConn, after taking a
// quota slot. It is the one place every allocation passes through.
type relayGen struct {
	s     *Server
	inner turn.RelayAddressGenerator
}

func (g *relayGen) Validate() error { return g.inner.Validate() }

func (g *relayGen) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if conf.RequestedPort == 0 && conf.UserID != "" {
		if port, ok := g.s.resv.popPending(conf.UserID); ok {
			conf.RequestedPort = port // the port an earlier EVEN-PORT reserved
		}
	}
	if err := g.s.acquire(conf.UserID); err != nil {
		return nil, nil, err
	}
	pc, addr, err := g.allocate(conf)
	if err != nil {
		g.s.quota.release(conf.UserID)
		return nil, nil, err
	}
	return g.s.newRelayConn(pc, addr, conf.UserID), addr, nil
}

// evenPortTries bounds the search for an even port whose successor is free.
const evenPortTries = 32

// allocate opens a relay socket. pion looks for an EVEN-PORT by asking for
// sockets without a user and keeping the first even one; when the client
// also wants the next port reserved (RTP and RTCP), that port must be free
// too, or the second Allocate fails with 508. So for those probes only an
// even port whose successor is free right now is offered.
func (g *relayGen) allocate(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if conf.UserID != "" || conf.RequestedPort != 0 {
		return g.inner.AllocatePacketConn(conf)
	}
	var lastErr error
	for range evenPortTries {
		pc, addr, err := g.inner.AllocatePacketConn(conf)
		if err != nil {
			return nil, nil, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok || ua.Port%2 != 0 || ua.Port == 65535 {
			pc.Close()
			continue
		}
		next := conf
		next.RequestedPort = ua.Port + 1
		probe, _, err := g.inner.AllocatePacketConn(next)
		if err != nil {
			lastErr = err
			pc.Close()
			continue
		}
		probe.Close()
		return pc, addr, nil
	}
	if lastErr == nil {
		lastErr = errNoEvenPort
	}
	return nil, nil, lastErr
}

func (g *relayGen) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if err := g.s.acquire(conf.UserID); err != nil {
		return nil, nil, err
	}
	ln, addr, err := g.inner.AllocateListener(conf)
	if err != nil {
		g.s.quota.release(conf.UserID)
		return nil, nil, err
	}
	return &relayListener{
		Listener: ln,
		a:        g.s.newTCPAlloc(addr.String(), conf.UserID),
		release:  func() { g.s.quota.release(conf.UserID) },
	}, addr, nil
}

// AllocateConn dials a peer for an RFC 6062 Connect request. pion has
// already asked the peer filter; the second check here makes sure a refused
// peer is never dialed, whatever path inside pion led here. The conn is
// metered against its allocation's tally and bandwidth cap (tcpalloc.go).
func (g *relayGen) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	if tcp, ok := conf.RemoteAddr.(*net.TCPAddr); ok && !g.s.filter.AllowedIP(tcp.IP) {
		g.s.metrics.refusedPeers.Inc()
		return nil, errPeerRefused
	}
	v, ok := g.s.tcpAllocs.Load(conf.LocalAddr.String())
	if !ok {
		return nil, errNoTCPAllocation
	}
	c, err := g.inner.AllocateConn(conf)
	if err != nil {
		return nil, err
	}
	return v.(*tcpAlloc).meter(c), nil
}

// relayConn is one UDP allocation's relay socket. It counts what is relayed,
// applies the bandwidth cap (datagrams over it are dropped, as a congested
// link would) and drops datagrams from peers without a permission before
// they can use up the allocation's budget.
type relayConn struct {
	net.PacketConn
	s   *Server
	key string // relay address as pion reports it in events
	// tally has the user and the payload bytes relayed both ways, for
	// Server.RelayedBytesByUser.
	tally

	toPeer, toClient *rate.Limiter // nil: unlimited

	// permitted is the set of peer IPs with a permission, replaced as a
	// whole (copy on write) by permission events; the packet path only
	// loads it.
	permitted atomic.Pointer[map[netip.Addr]struct{}]
	permMu    sync.Mutex // serializes writers of permitted

	// The ChannelData fast path (fastpath.go). chans and route are read
	// per packet and replaced whole; tuple is guarded by permMu.
	chans    atomic.Pointer[channelSet]
	route    atomic.Pointer[clientRoute]
	tuple    udpTuple
	hasTuple bool
	raw      rawSocket
	batched  bool // a host UDP socket: read in batches (readBatched)

	// Used by pion's read loop for this socket only.
	batch       *relayBatch // being handled; nil between batches
	reading     *relayBatch // taken by readStep for a recvmmsg
	readN       int         // what readStep read
	readErr     error
	readStep    func(fd uintptr) bool
	next, count int
	now         time.Time // when the batch was read, for the bandwidth cap
	inPkts      int       // datagrams of the batch counted so far, not yet added up
	inBytes     int
	outRoute    *clientRoute // where the frames queued in batch.out go; nil: none queued

	closeOnce sync.Once
	closeErr  error
}

// relayBuffer is the receive buffer asked for on relay sockets: a peer's
// burst must wait there while the allocation's read loop is off the CPU.
// It costs memory only while datagrams are queued.
const relayBuffer = 1 << 20

func (s *Server) newRelayConn(pc net.PacketConn, addr net.Addr, user string) *relayConn {
	if c, ok := pc.(interface{ SetReadBuffer(int) error }); ok {
		c.SetReadBuffer(relayBuffer) //nolint:errcheck // best effort; the kernel caps it.
	}
	c := &relayConn{PacketConn: pc, s: s, key: addr.String()}
	c.user = user
	if bw := s.cfg.BandwidthPerAllocation; bw > 0 {
		// The burst is 200 ms worth, and never less than two full-size
		// datagrams, so a normal packet always fits.
		burst := int(max(bw/5, 3200))
		c.toPeer = rate.NewLimiter(rate.Limit(bw), burst)
		c.toClient = rate.NewLimiter(rate.Limit(bw), burst)
	}
	empty := map[netip.Addr]struct{}{}
	c.permitted.Store(&empty)
	c.chans.Store(&channelSet{})
	if batchIO {
		c.raw, c.batched = newRawSocket(pc)
		c.readStep = c.readOnce
	}
	s.relays.Store(c.key, c)
	s.usage.add(&c.tally)
	s.loops.Add(1)
	return c
}

// WriteTo sends client data to a peer (ChannelData or Send indication).
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.toPeer != nil && !c.toPeer.AllowN(c.s.cfg.Now(), len(p)) {
		c.s.metrics.droppedToPeer.Inc()
		// Report success: pion would log every drop as a write error.
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.s.metrics.packetsToPeer.Inc()
		c.s.metrics.bytesToPeer.Add(float64(n))
		c.relayed.Add(uint64(n))
	}
	return n, err
}

// ReadFrom receives a peer's datagram for the client. On host sockets
// channel traffic is relayed inside (readBatched) and only what pion must
// handle is returned.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.batched {
		return c.readBatched(p)
	}
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if !c.isPermitted(addr) {
			// pion would drop it too; dropping here keeps strangers from
			// spending the allocation's bandwidth budget.
			continue
		}
		if c.toClient != nil && !c.toClient.AllowN(c.s.cfg.Now(), n) {
			c.s.metrics.droppedToClient.Inc()
			continue
		}
		c.s.metrics.packetsToClient.Inc()
		c.s.metrics.bytesToClient.Add(float64(n))
		c.relayed.Add(uint64(n))
		return n, addr, nil
	}
}

func (c *relayConn) isPermitted(addr net.Addr) bool {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return true // not ours to judge (vnet addresses are UDPAddr too)
	}
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return false
	}
	_, ok = (*c.permitted.Load())[ip.Unmap()]
	return ok
}

// setPermitted adds or removes a peer IP and reports whether the set
// changed.
func (c *relayConn) setPermitted(ip net.IP, on bool) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	c.permMu.Lock()
	defer c.permMu.Unlock()
	old := *c.permitted.Load()
	if _, had := old[a]; had == on {
		return false
	}
	next := make(map[netip.Addr]struct{}, len(old)+1)
	for k := range old {
		next[k] = struct{}{}
	}
	if on {
		next[a] = struct{}{}
	} else {
		delete(next, a)
	}
	c.permitted.Store(&next)
	return true
}

// Close gives the quota slot back and forgets the permissions.
func (c *relayConn) Close() error {
	c.closeOnce.Do(func() {
		c.s.relays.CompareAndDelete(c.key, c)
		c.s.unbindClient(c)
		c.permMu.Lock()
		n := len(*c.permitted.Load())
		empty := map[netip.Addr]struct{}{}
		c.permitted.Store(&empty)
		c.permMu.Unlock()
		c.s.metrics.permissions.Sub(float64(n))
		c.closeErr = c.PacketConn.Close()
		c.s.usage.retire(&c.tally)
		c.s.quota.release(c.user)
		c.s.loops.Done()
	})
	return c.closeErr
}

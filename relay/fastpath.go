package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The ChannelData fast path (RFC 8656 §12).
//
// pion/turn handles every relayed datagram in its own code: a 5-tuple
// lookup under a lock, a linear channel search, a fresh buffer for each
// outgoing ChannelData frame, a debug log call that formats the client
// address, and one sendto per datagram. Channel traffic is almost all of
// a relay's packets, so the listener and relay sockets here serve it
// themselves from tables kept up to date by pion's events (allocation
// and channel created or deleted), and read and write it several
// datagrams per system call (recvmmsg, sendmmsg):
//
//   - client to peer: the listener reads a batch; a ChannelData datagram
//     from a client with a UDP allocation and a bound channel is sent from
//     that allocation's relay socket, the datagrams of one batch for one
//     relay socket in one sendmmsg;
//   - peer to client: an allocation's relay socket reads a batch; a
//     datagram from a peer with a permission and a bound channel gets its
//     ChannelData header written in front of it, in place, and the batch
//     goes to the client in one sendmmsg on the listener socket the
//     client's own ChannelData arrives on.
//
// Everything else (STUN messages, Send and Data indications, datagrams
// for channels not bound yet, TCP and TLS clients, non-host sockets such
// as vnet) goes through pion exactly as before, so pion stays the judge
// of every request and error. The peer filter is not involved per packet:
// a channel exists only after pion granted its ChannelBind, which the
// filter checked. Byte counts, metrics and bandwidth caps are applied the
// same way on both paths.

// udpTuple is a UDP allocation's key: client address and the listener
// address it talks to (both unmapped, without IPv6 zone, as pion's own
// 5-tuple comparison ignores zones).
type udpTuple struct{ client, local netip.AddrPort }

func normAddrPort(a net.Addr) (netip.AddrPort, bool) {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(u.Port)), true
}

// udpAllocs maps UDP 5-tuples to their allocation's relay socket.
type udpAllocs struct {
	mu sync.RWMutex
	m  map[udpTuple]*relayConn
}

func (a *udpAllocs) get(k udpTuple) *relayConn {
	a.mu.RLock()
	c := a.m[k]
	a.mu.RUnlock()
	return c
}

func (a *udpAllocs) put(k udpTuple, c *relayConn) {
	a.mu.Lock()
	if a.m == nil {
		a.m = map[udpTuple]*relayConn{}
	}
	a.m[k] = c
	a.mu.Unlock()
}

// remove deletes k if it still maps to c (nil: whatever it maps to).
func (a *udpAllocs) remove(k udpTuple, c *relayConn) {
	a.mu.Lock()
	if cur, ok := a.m[k]; ok && (c == nil || cur == c) {
		delete(a.m, k)
	}
	a.mu.Unlock()
}

// channelBinding is one bound channel of an allocation.
type channelBinding struct {
	num  uint16
	peer netip.AddrPort
}

// channelSet is an allocation's channels, replaced as a whole on change
// (copy on write) so the packet path reads it without a lock. Allocations
// have few channels; a linear search, as pion's own, beats a map there.
type channelSet []channelBinding

func (s channelSet) peer(num uint16) (netip.AddrPort, bool) {
	for _, b := range s {
		if b.num == num {
			return b.peer, true
		}
	}
	return netip.AddrPort{}, false
}

func (s channelSet) number(peer netip.AddrPort) (uint16, bool) {
	for _, b := range s {
		if b.peer == peer {
			return b.num, true
		}
	}
	return 0, false
}

// clientRoute is where an allocation's client-bound ChannelData goes: the
// client's address, through the listener socket its own ChannelData
// arrives on (with SO_REUSEPORT the kernel keeps one client on one
// socket).
type clientRoute struct {
	via *listenConn
	to  netip.AddrPort
}

// setChannel adds (on) or removes a channel binding.
func (c *relayConn) setChannel(num uint16, peer net.Addr, on bool) {
	c.permMu.Lock()
	defer c.permMu.Unlock()
	old := *c.chans.Load()
	next := make(channelSet, 0, len(old)+1)
	for _, b := range old {
		if b.num != num {
			next = append(next, b)
		}
	}
	if on {
		ap, ok := normAddrPort(peer)
		if !ok {
			return
		}
		next = append(next, channelBinding{num: num, peer: ap})
	}
	c.chans.Store(&next)
}

// bindClient records, once, the 5-tuple of a UDP allocation.
func (s *Server) bindClient(c *relayConn, src, local net.Addr) {
	client, ok1 := normAddrPort(src)
	l, ok2 := normAddrPort(local)
	if !ok1 || !ok2 {
		return
	}
	k := udpTuple{client: client, local: l}
	c.permMu.Lock()
	c.tuple = k
	c.hasTuple = true
	c.permMu.Unlock()
	s.allocs.put(k, c)
	// Any socket of the listening address reaches the client from the
	// address it knows; toPeer moves the route to the client's own. A
	// link-local client needs its scope, which only pion's path keeps.
	if u, _ := src.(*net.UDPAddr); u.Zone != "" {
		return
	}
	if lc := s.listeners[l]; lc != nil && c.route.Load() == nil {
		c.route.CompareAndSwap(nil, &clientRoute{via: lc, to: client})
	}
}

// unbindClient forgets a UDP allocation's 5-tuple.
func (s *Server) unbindClient(c *relayConn) {
	c.permMu.Lock()
	k, ok := c.tuple, c.hasTuple
	c.hasTuple = false
	c.permMu.Unlock()
	if ok {
		s.allocs.remove(k, c)
	}
}

// isChannelData reports whether b starts like a ChannelData message
// (channel numbers 0x4000–0x7FFF, RFC 8656 §12) whose length fits.
func isChannelData(b []byte) (num uint16, payload []byte, ok bool) {
	if len(b) < 4 || b[0]&0xC0 != 0x40 {
		return 0, nil, false
	}
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if l > len(b)-4 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b[0:2]), b[4 : 4+l], true
}

// peerSend is one ChannelData payload on its way to a peer.
type peerSend struct {
	rc *relayConn
	to netip.AddrPort
	p  []byte
}

// toPeer takes a client's ChannelData datagram off pion's hands when its
// allocation and channel are known; it reports whether it did. scoped
// says the client's address has an IPv6 scope, which routes do not keep.
func (c *listenConn) toPeer(b []byte, from netip.AddrPort, scoped bool, now time.Time) bool {
	num, payload, ok := isChannelData(b)
	if !ok {
		return false
	}
	rc := c.s.allocs.get(udpTuple{client: from, local: c.local})
	if rc == nil || !rc.batched {
		return false
	}
	peer, ok := (*rc.chans.Load()).peer(num)
	if !ok {
		return false
	}
	if r := rc.route.Load(); (r == nil || r.via != c) && !scoped {
		rc.route.Store(&clientRoute{via: c, to: from})
	}
	if rc.toPeer != nil && !rc.toPeer.AllowN(now, len(payload)) {
		c.s.metrics.droppedToPeer.Inc()
		return true
	}
	c.pending = append(c.pending, peerSend{rc: rc, to: peer, p: payload})
	return true
}

// flushPeers sends what toPeer queued, one sendmmsg per relay socket, in
// arrival order per socket.
func (c *listenConn) flushPeers() {
	for i := range c.pending {
		rc := c.pending[i].rc
		if rc == nil {
			continue // sent with an earlier one's batch
		}
		b := c.sendPeers
		b.reset()
		gso := rc.raw.gso()
		for j := i; j < len(c.pending); j++ {
			if c.pending[j].rc != rc {
				continue
			}
			b.add(c.pending[j].p, c.pending[j].to, gso)
			c.pending[j].rc = nil
		}
		rc.sendToPeers(b)
	}
	clear(c.pending)
	c.pending = c.pending[:0]
}

// sendToPeers sends b from the relay socket and counts what the kernel
// took.
func (c *relayConn) sendToPeers(b *sendBatch) {
	if b.len() == 0 {
		return
	}
	if err := b.write(c.raw); err != nil {
		return // the allocation is closing
	}
	pkts, bytes := b.counts()
	if pkts == 0 {
		return
	}
	c.s.fastToPeer.Add(uint64(pkts))
	c.s.metrics.packetsToPeer.Add(float64(pkts))
	c.s.metrics.bytesToPeer.Add(float64(bytes))
	c.relayed.Add(uint64(bytes))
}

// relayBatchSize is how many datagrams one read on a relay socket may
// return. Batches come from a pool and are held only while datagrams are
// handled, not while a socket waits, so idle allocations cost no buffer.
const relayBatchSize = 16

// relayBatch is a receive batch with room for a ChannelData header in
// front of each datagram, and the send batch that passes them on.
type relayBatch struct {
	in  *mmsgBatch
	out *sendBatch
}

var relayBatches = sync.Pool{New: func() any {
	return &relayBatch{in: newMmsgBatch(relayBatchSize, 4), out: newSendBatch(relayBatchSize)}
}}

// readBatched is relayConn.ReadFrom for host sockets: channel traffic is
// sent to the client here; what pion must handle is returned.
func (c *relayConn) readBatched(p []byte) (int, net.Addr, error) {
	for {
		if c.batch == nil || c.next == c.count {
			if err := c.refill(); err != nil {
				return 0, nil, err
			}
		}
		i := c.next
		c.next++
		b := c.batch.in
		from := b.from(i)
		if b.cut(i) || !c.isPermittedAddr(from.Addr()) {
			continue // larger than pion relays, or no permission: pion would drop it too
		}
		n := int(b.hdrs[i].n)
		if c.toClient != nil && !c.toClient.AllowN(c.now, n) {
			c.s.metrics.droppedToClient.Inc()
			continue
		}
		c.inPkts++
		c.inBytes += n
		route := c.route.Load()
		if route != nil && route.via.batched {
			if num, ok := (*c.chans.Load()).number(from); ok {
				c.queueToClient(i, num, n, route)
				continue
			}
		}
		// Not a channel (a Data indication is due), or no route known
		// yet: pion does it.
		c.flushClient()
		k := copy(p, b.data(i))
		return k, udpAddrFrom(from, b.scope(i)), nil
	}
}

// refill sends what the current batch queued for the client, gives the
// batch back and waits for the next one.
func (c *relayConn) refill() error {
	c.flushClient()
	if c.batch != nil {
		relayBatches.Put(c.batch)
		c.batch = nil
	}
	if err := c.raw.read(c.readStep); err != nil {
		if c.reading != nil {
			relayBatches.Put(c.reading)
			c.reading = nil
		}
		return err
	}
	if c.readErr != nil {
		relayBatches.Put(c.reading)
		c.reading = nil
		return c.readErr
	}
	c.batch, c.next, c.count = c.reading, 0, c.readN
	c.reading = nil
	c.now = c.s.cfg.Now()
	return nil
}

// readOnce is one non-blocking recvmmsg into a pooled batch, which goes
// back to the pool when the socket has nothing, so a waiting allocation
// holds no buffer.
func (c *relayConn) readOnce(fd uintptr) bool {
	if c.reading == nil {
		c.reading = relayBatches.Get().(*relayBatch)
	}
	n, errno := c.reading.in.recv(fd)
	if errno == syscall.EAGAIN {
		relayBatches.Put(c.reading)
		c.reading = nil
		return false
	}
	c.readN, c.readErr = readResult(n, errno)
	return true
}

// readResult turns a recvmmsg result into a count and an error: an error
// the socket reports from an earlier ICMP message is not the socket's
// end, so it reads as an empty batch.
func readResult(n int, errno syscall.Errno) (int, error) {
	switch errno {
	case 0:
		return n, nil
	case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		return 0, nil
	}
	return 0, errno
}

// queueToClient turns datagram i of the batch into a ChannelData frame in
// place (header in the headroom, zero padding to a multiple of four, as
// pion pads) and queues it for the client.
func (c *relayConn) queueToClient(i int, num uint16, n int, route *clientRoute) {
	buf := c.batch.in.bufs[i]
	binary.BigEndian.PutUint16(buf[0:2], num)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n))
	end := 4 + n
	for end%4 != 0 {
		buf[end] = 0
		end++
	}
	if c.outRoute != nil && c.outRoute != route {
		c.flushClient()
	}
	if c.outRoute == nil {
		c.outRoute = route
		c.batch.out.reset()
	}
	c.batch.out.add(buf[:end], route.to, route.via.raw.gso())
}

// flushClient sends the queued ChannelData frames to the client in one
// sendmmsg and counts the batch's relayed datagrams.
func (c *relayConn) flushClient() {
	if c.inPkts > 0 {
		c.s.metrics.packetsToClient.Add(float64(c.inPkts))
		c.s.metrics.bytesToClient.Add(float64(c.inBytes))
		c.relayed.Add(uint64(c.inBytes))
		c.inPkts, c.inBytes = 0, 0
	}
	if c.outRoute != nil && c.batch.out.len() > 0 {
		c.s.fastToClient.Add(uint64(c.batch.out.len()))
		c.batch.out.write(c.outRoute.via.raw) //nolint:errcheck // a closed listener drops them, as pion's WriteTo would.
	}
	c.outRoute = nil
}

// udpAddrFrom builds the net.Addr pion is handed for a datagram that takes
// its path, keeping an IPv6 scope as a numeric zone.
func udpAddrFrom(ap netip.AddrPort, scope uint32) *net.UDPAddr {
	if scope != 0 {
		ap = netip.AddrPortFrom(ap.Addr().WithZone(strconv.FormatUint(uint64(scope), 10)), ap.Port())
	}
	return net.UDPAddrFromAddrPort(ap)
}

// isPermittedAddr is isPermitted for an address already parsed.
func (c *relayConn) isPermittedAddr(ip netip.Addr) bool {
	_, ok := (*c.permitted.Load())[ip]
	return ok
}

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
)

// tlsHandshakeTimeout bounds how long a TLS client may take to finish its
// handshake before its connection is dropped.
const tlsHandshakeTimeout = 10 * time.Second

// maxFrame is the largest STUN message or ChannelData frame (16-bit length
// plus header and padding).
const maxFrame = 0xFFFF + stunHeaderSize + 4

// listenBatch is how many datagrams one read on a listener may return.
const listenBatch = 32

// listenConn is a UDP listening socket as pion sees it: datagrams are read
// in batches where the socket allows, ChannelData for known channels is
// relayed on the spot (fastpath.go), every other datagram is passed
// through the inspector and handed to pion, and the end of pion's read
// loop is recorded for Close.
type listenConn struct {
	net.PacketConn
	s    *Server
	exit sync.Once
	in   batchReader // sockets without batched I/O; pion's read loop only

	// Host sockets (batched): used by pion's read loop only, except raw
	// and batched, which relay sockets use to write to clients.
	raw         rawSocket
	batched     bool
	local       netip.AddrPort // the 5-tuple's server side, as bindClient keys it
	rb          *mmsgBatch
	next, count int
	pending     []peerSend
	sendPeers   *sendBatch
	now         time.Time // when the batch was read, for the bandwidth cap
	readStep    func(fd uintptr) bool
	readN       int
	readErr     error
}

func newListenConn(pc net.PacketConn, s *Server) *listenConn {
	c := &listenConn{PacketConn: pc, s: s}
	if batchIO {
		c.raw, c.batched = newRawSocket(pc)
	}
	local, ok := normAddrPort(pc.LocalAddr())
	if c.batched && ok {
		c.local = local
		c.rb = newMmsgBatch(listenBatch, 0)
		c.sendPeers = newSendBatch(listenBatch)
		c.pending = make([]peerSend, 0, listenBatch)
		c.readStep = c.readOnce
	} else {
		c.batched = false
		c.in = newBatchReader(pc, listenBatch)
	}
	return c
}

func (c *listenConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.read(p)
		if err != nil {
			// pion's read loop returns on any error; only closing ends it.
			c.exit.Do(c.s.loops.Done)
			return n, addr, err
		}
		n, reply := c.s.inspect.inspectWith(p, n, addr, c.PacketConn.LocalAddr(), c.s.resv)
		if reply == nil {
			return n, addr, nil
		}
		c.PacketConn.WriteTo(reply, addr) //nolint:errcheck // a lost reply is retransmitted for.
	}
}

// readOnce is one non-blocking recvmmsg into the listener's batch.
func (c *listenConn) readOnce(fd uintptr) bool {
	n, errno := c.rb.recv(fd)
	if errno == syscall.EAGAIN {
		return false
	}
	c.readN, c.readErr = readResult(n, errno)
	return true
}

// read returns the next datagram pion must see.
func (c *listenConn) read(p []byte) (int, net.Addr, error) {
	if !c.batched {
		return c.in.read(p)
	}
	for {
		if c.next == c.count {
			c.flushPeers()
			if err := c.raw.read(c.readStep); err != nil {
				return 0, nil, err
			}
			if c.readErr != nil {
				return 0, nil, c.readErr
			}
			n := c.readN
			c.next, c.count = 0, n
			if n > 0 {
				c.now = c.s.cfg.Now()
			}
			continue
		}
		i := c.next
		c.next++
		from := c.rb.from(i)
		if !from.IsValid() {
			continue
		}
		if c.rb.truncated(i) {
			c.flushPeers()
			return len(p), udpAddrFrom(from, c.rb.scope(i)), nil // let pion see an oversize datagram and drop it
		}
		data := c.rb.data(i)
		if c.toPeer(data, from, c.rb.scope(i) != 0, c.now) {
			continue
		}
		c.flushPeers() // keep the client's order: what is queued goes first
		return copy(p, data), udpAddrFrom(from, c.rb.scope(i)), nil
	}
}

// WriteTo sends to a client; Allocate responses are noted for their
// reservation tokens (one byte compare for everything else).
func (c *listenConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > 1 && p[0] == 0x01 {
		c.s.resv.noteResponse(p)
	}
	return c.PacketConn.WriteTo(p, addr)
}

// streamListener hands pion TCP or TLS client connections wrapped in
// streamConn, and keeps accepting through transient errors (EMFILE and the
// like) that would otherwise end pion's accept loop for good.
type streamListener struct {
	net.Listener
	s    *Server
	tls  bool
	exit sync.Once
}

func (l *streamListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			sc, ok := l.s.trackStream(c, l.tls)
			if !ok {
				c.Close()
				continue
			}
			return sc, nil
		}
		if errors.Is(err, net.ErrClosed) {
			l.exit.Do(l.s.loops.Done)
			return nil, err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			l.exit.Do(l.s.loops.Done)
			return nil, err
		}
		l.s.log.Warn("accept failed; retrying", "addr", l.Addr(), "err", err, "backoff", backoff)
		time.Sleep(backoff) // backoff on a failing accept, as net/http does
		backoff = min(2*backoff, time.Second)
	}
}

// streamConn is one TCP/TLS client connection. It splits the byte stream
// into STUN and ChannelData frames (pion's own framer), passes each through
// the lifetime clamp and hands them on whole; pion frames the result again.
type streamConn struct {
	net.Conn
	s       *Server
	tls     *tls.Conn // nil for plain TCP
	framer  *turn.STUNConn
	buf     []byte
	pending []byte
	shook   bool
	// raw is set after a ConnectionBind request (RFC 6062 §5.4): from then
	// on the connection carries the peer's raw TCP bytes, not frames.
	raw  bool
	once sync.Once
	err  error
}

func (s *Server) trackStream(c net.Conn, isTLS bool) (*streamConn, bool) {
	sc := &streamConn{Conn: c, s: s, framer: turn.NewSTUNConn(c), buf: make([]byte, maxFrame)}
	if isTLS {
		sc.tls, _ = c.(*tls.Conn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	s.streams[sc] = struct{}{}
	s.loops.Add(1)
	return sc, true
}

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.shook && c.tls != nil {
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		err := c.tls.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return 0, err
		}
		c.shook = true
	}
	if len(c.pending) == 0 && c.raw {
		return c.Conn.Read(p)
	}
	for len(c.pending) == 0 {
		c.armIdleDeadline()
		n, _, err := c.framer.ReadFrom(c.buf)
		if err != nil {
			return 0, err
		}
		n, reply := c.s.inspect.inspect(c.buf, n, c.Conn.RemoteAddr(), c.Conn.LocalAddr())
		if reply != nil {
			if _, err := c.Conn.Write(reply); err != nil {
				return 0, err
			}
			continue
		}
		c.pending = c.buf[:n]
		if n >= stunHeaderSize && c.buf[0] == 0x00 && c.buf[1] == 0x0B {
			// ConnectionBind request: the client sends data only after
			// the success response, so the framer holds nothing more.
			// Peer data may pause for as long as the peers like.
			c.raw = true
			c.Conn.SetReadDeadline(time.Time{}) //nolint:errcheck // a closed conn fails the next read anyway.
		}
	}
	k := copy(p, c.pending)
	c.pending = c.pending[k:]
	return k, nil
}

// armIdleDeadline bounds how long a TCP/TLS client may stay silent: a
// connection without an allocation gets StreamIdleTimeout, one with an
// allocation the longest allocation lifetime on top (its refreshes come
// well within that). Without it, idle connections would each hold a socket
// and a goroutine until the client left.
func (c *streamConn) armIdleDeadline() {
	d := c.s.cfg.StreamIdleTimeout
	if _, ok := c.s.live.Load(tupleKey(c.Conn.RemoteAddr(), c.Conn.LocalAddr())); ok {
		d += c.s.cfg.MaxLifetime
	}
	c.Conn.SetReadDeadline(time.Now().Add(d)) //nolint:errcheck // a closed conn fails the next read anyway.
}

func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.err = c.Conn.Close()
		c.s.mu.Lock()
		delete(c.s.streams, c)
		c.s.mu.Unlock()
		c.s.loops.Done()
	})
	return c.err
}

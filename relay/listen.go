package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// tlsHandshakeTimeout bounds how long a TLS client may take to finish its
// handshake before its connection is dropped.
const tlsHandshakeTimeout = 10 * time.Second

// maxFrame is the largest STUN message or ChannelData frame (16-bit length
// plus header and padding).
const maxFrame = 0xFFFF + stunHeaderSize + 4

// readBatch is how many datagrams one recvmmsg call may return. Under
// load (and on a busy machine, where the read loop waits for a CPU) the
// backlog is drained with one system call and one wake-up per batch rather
// than per datagram.
const readBatch = 32

// listenConn is a UDP listening socket as pion sees it: datagrams are read
// in batches where the socket allows, each is passed through the inspector,
// and the end of pion's read loop is recorded for Close.
type listenConn struct {
	net.PacketConn
	s    *Server
	exit sync.Once

	// batch reads several datagrams per system call (host UDP sockets);
	// nil reads one at a time (vnet). msgs[next:count] are read and not
	// yet handed to pion. Only pion's read loop touches these.
	batch interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	}
	msgs        []ipv4.Message
	next, count int
}

func newListenConn(pc net.PacketConn, s *Server) *listenConn {
	c := &listenConn{PacketConn: pc, s: s}
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return c
	}
	if la, ok := u.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		c.batch = ipv4.NewPacketConn(u)
	} else {
		c.batch = ipv6.NewPacketConn(u)
	}
	c.msgs = make([]ipv4.Message, readBatch)
	for i := range c.msgs {
		c.msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	return c
}

// maxDatagram is the read buffer per datagram: pion drops anything of
// its inbound MTU (1600) or more, so a larger datagram only needs to show
// that it was larger.
const maxDatagram = 1600

// read returns the next datagram, from the batch or the socket.
func (c *listenConn) read(p []byte) (int, net.Addr, error) {
	if c.batch == nil {
		return c.PacketConn.ReadFrom(p)
	}
	if c.next == c.count {
		n, err := c.batch.ReadBatch(c.msgs, 0)
		if err != nil {
			return 0, nil, err
		}
		c.next, c.count = 0, n
	}
	m := &c.msgs[c.next]
	c.next++
	n := copy(p, m.Buffers[0][:m.N])
	if m.N >= maxDatagram {
		n = len(p) // truncated: let pion see an oversize datagram and drop it
	}
	return n, m.Addr, nil
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

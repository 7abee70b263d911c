// Package mediatest has helpers for tests of code that carries media:
// datagram conns that impair what is sent through them, the way a bad
// network would, deterministically from a seed.
package mediatest

import (
	"math/rand/v2"
	"net"
	"sync"
)

// Impairment says what to do to outgoing datagrams. Each is applied with
// its probability per datagram, decided by a PRNG seeded with Seed, so a
// test sees the same pattern every run for the same traffic.
type Impairment struct {
	Drop    float64 // fraction of datagrams silently dropped
	Dup     float64 // fraction sent twice
	Reorder float64 // fraction held back and sent after the next datagram
	// RTCPToo also impairs RTCP (second byte 192–223, RFC 5761); by
	// default only RTP is touched so reports still measure the damage.
	RTCPToo bool
	Seed    uint64
}

// Counts reports what an impaired conn did.
type Counts struct {
	Sent, Dropped, Duplicated, Reordered int
}

type impairer struct {
	mu     sync.Mutex
	imp    Impairment
	rng    *rand.Rand
	held   []byte
	heldTo net.Addr
	counts Counts
}

func newImpairer(imp Impairment) *impairer {
	return &impairer{imp: imp, rng: rand.New(rand.NewPCG(imp.Seed, imp.Seed^0x9e3779b97f4a7c15))}
}

func isRTCP(b []byte) bool { return len(b) >= 2 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223 }

// write applies the impairment; send does the real write.
func (m *impairer) write(b []byte, to net.Addr, send func([]byte, net.Addr) (int, error)) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if isRTCP(b) && !m.imp.RTCPToo {
		return send(b, to)
	}
	m.counts.Sent++
	if m.rng.Float64() < m.imp.Drop {
		m.counts.Dropped++
		return len(b), nil
	}
	if m.held == nil && m.rng.Float64() < m.imp.Reorder {
		m.held = append([]byte(nil), b...)
		m.heldTo = to
		m.counts.Reordered++
		return len(b), nil
	}
	n, err := send(b, to)
	if m.rng.Float64() < m.imp.Dup {
		m.counts.Duplicated++
		_, _ = send(b, to)
	}
	if m.held != nil {
		_, _ = send(m.held, m.heldTo)
		m.held = nil
	}
	return n, err
}

func (m *impairer) snapshot() Counts {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts
}

// PacketConn impairs what is written with WriteTo; reads pass through.
type PacketConn struct {
	net.PacketConn
	m *impairer
}

// NewPacketConn wraps pc. Closing the wrapper closes pc.
func NewPacketConn(pc net.PacketConn, imp Impairment) *PacketConn {
	return &PacketConn{PacketConn: pc, m: newImpairer(imp)}
}

// WriteTo implements net.PacketConn.
func (c *PacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	return c.m.write(b, to, c.PacketConn.WriteTo)
}

// Counts returns what was done so far.
func (c *PacketConn) Counts() Counts { return c.m.snapshot() }

// Conn impairs what is written with Write on a connected conn (such as the
// one an ICE agent returns); reads pass through.
type Conn struct {
	net.Conn
	m *impairer
}

// NewConn wraps c. Closing the wrapper closes c.
func NewConn(c net.Conn, imp Impairment) *Conn {
	return &Conn{Conn: c, m: newImpairer(imp)}
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	return c.m.write(b, nil, func(p []byte, _ net.Addr) (int, error) { return c.Conn.Write(p) })
}

// Counts returns what was done so far.
func (c *Conn) Counts() Counts { return c.m.snapshot() }

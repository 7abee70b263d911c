package relay

import (
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxDatagram is the read buffer per datagram: pion drops anything of its
// inbound MTU (1600) or more, so a larger datagram only needs to show that
// it was larger.
const maxDatagram = 1600

// batchReader reads UDP datagrams several per system call (recvmmsg).
// Under load, and on a busy machine where a read loop waits for a CPU, a
// backlog is drained with one call and one wake-up instead of one per
// datagram. It is used by one goroutine only.
type batchReader struct {
	pc    net.PacketConn
	batch interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	} // nil: one datagram per read (not a host UDP socket, e.g. vnet)
	msgs        []ipv4.Message
	next, count int // msgs[next:count] are read and not yet returned
}

func newBatchReader(pc net.PacketConn, size int) batchReader {
	r := batchReader{pc: pc}
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return r
	}
	if la, ok := u.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() != nil {
		r.batch = ipv4.NewPacketConn(u)
	} else {
		r.batch = ipv6.NewPacketConn(u)
	}
	r.msgs = make([]ipv4.Message, size)
	for i := range r.msgs {
		r.msgs[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	return r
}

// read returns the next datagram, from the batch or the socket.
func (r *batchReader) read(p []byte) (int, net.Addr, error) {
	if r.batch == nil {
		return r.pc.ReadFrom(p)
	}
	if r.next == r.count {
		n, err := r.batch.ReadBatch(r.msgs, 0)
		if err != nil {
			return 0, nil, err
		}
		r.next, r.count = 0, n
	}
	m := &r.msgs[r.next]
	r.next++
	n := copy(p, m.Buffers[0][:m.N])
	if m.N >= maxDatagram {
		n = len(p) // truncated: let pion see an oversize datagram and drop it
	}
	return n, m.Addr, nil
}

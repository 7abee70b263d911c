//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: one datagram of a recvmmsg/sendmmsg call.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// sockName is a socket address as the kernel reads and writes it; big
// enough for sockaddr_in6.
type sockName [unix.SizeofSockaddrInet6]byte

// mmsgBatch holds the kernel-facing arrays for one recvmmsg or sendmmsg:
// headers, I/O vectors and addresses, all allocated once, so a batch
// costs no allocation per datagram. headroom bytes are kept in front of
// each received datagram, so a ChannelData header can be put there
// without copying the payload.
type mmsgBatch struct {
	hdrs     []mmsghdr
	iovs     []unix.Iovec
	names    []sockName
	bufs     [][]byte // each headroom+maxDatagram long (receive batches)
	headroom int
}

func newMmsgBatch(size, headroom int) *mmsgBatch {
	b := &mmsgBatch{
		hdrs:     make([]mmsghdr, size),
		iovs:     make([]unix.Iovec, size),
		names:    make([]sockName, size),
		bufs:     make([][]byte, size),
		headroom: headroom,
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, headroom+maxDatagram+channelPad)
	}
	return b
}

// newSendBatch is a batch for sendmmsg only: its messages point at
// buffers owned elsewhere.
func newSendBatch(size int) *mmsgBatch {
	return &mmsgBatch{
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]sockName, size),
	}
}

// channelPad is the room after a datagram for ChannelData padding.
const channelPad = 3

// data returns datagram i of a received batch.
func (b *mmsgBatch) data(i int) []byte {
	return b.bufs[i][b.headroom : b.headroom+int(b.hdrs[i].n)]
}

// recv reads up to len(b.hdrs) datagrams from fd without blocking. It
// returns EAGAIN when nothing is queued.
func (b *mmsgBatch) recv(fd uintptr) (int, syscall.Errno) {
	for i := range b.hdrs {
		buf := b.bufs[i][b.headroom : b.headroom+maxDatagram]
		b.iovs[i].Base = &buf[0]
		b.iovs[i].SetLen(len(buf))
		h := &b.hdrs[i].hdr
		h.Name = &b.names[i][0]
		h.Namelen = uint32(len(b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = nil
		h.SetControllen(0)
		h.Flags = 0
		b.hdrs[i].n = 0
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])),
			uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), 0
	}
}

// truncated reports whether datagram i did not fit its buffer.
func (b *mmsgBatch) truncated(i int) bool {
	return b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 || int(b.hdrs[i].n) >= maxDatagram
}

// from returns the sender of datagram i (IPv4-mapped addresses unmapped;
// an IPv6 scope is dropped, as pion's own address comparison does).
func (b *mmsgBatch) from(i int) netip.AddrPort {
	return decodeName(&b.names[i], b.hdrs[i].hdr.Namelen)
}

func decodeName(n *sockName, l uint32) netip.AddrPort {
	switch binary.NativeEndian.Uint16(n[0:2]) {
	case unix.AF_INET:
		if l < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		port := binary.BigEndian.Uint16(n[2:4])
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(n[4:8])), port)
	case unix.AF_INET6:
		if l < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		port := binary.BigEndian.Uint16(n[2:4])
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(n[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// encodeName writes ap as the socket address for a socket of the given
// family (an IPv4 address is mapped for an IPv6 socket) and returns its
// length, or 0 when the address cannot be sent from such a socket.
func encodeName(n *sockName, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 {
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		*n = sockName{}
		binary.NativeEndian.PutUint16(n[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(n[2:4], ap.Port())
		ip := a.As4()
		copy(n[4:8], ip[:])
		return unix.SizeofSockaddrInet4
	}
	*n = sockName{}
	binary.NativeEndian.PutUint16(n[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(n[2:4], ap.Port())
	ip := a.As16()
	copy(n[8:24], ip[:])
	return unix.SizeofSockaddrInet6
}

// set fills message i of a send batch.
func (b *mmsgBatch) set(i int, p []byte, to netip.AddrPort, v6 bool) bool {
	l := encodeName(&b.names[i], to, v6)
	if l == 0 || len(p) == 0 {
		return false
	}
	b.iovs[i].Base = &p[0]
	b.iovs[i].SetLen(len(p))
	h := &b.hdrs[i].hdr
	h.Name = &b.names[i][0]
	h.Namelen = l
	h.Iov = &b.iovs[i]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	h.Flags = 0
	return true
}

// send sends messages [from, to) of the batch with sendmmsg and returns
// how many the kernel took.
func (b *mmsgBatch) send(fd uintptr, from, to int) (int, syscall.Errno) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[from])),
			uintptr(to-from), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		return int(r), e
	}
}

// rawSocket is a host UDP socket's descriptor access for batched I/O.
type rawSocket struct {
	rc syscall.RawConn
	v6 bool // AF_INET6 (possibly dual-stack): IPv4 peers are written mapped
}

// newRawSocket returns the raw access to pc, or ok=false when pc is not a
// host UDP socket (vnet, wrappers) and batching is not possible.
func newRawSocket(pc net.PacketConn) (rawSocket, bool) {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return rawSocket{}, false
	}
	rc, err := u.SyscallConn()
	if err != nil {
		return rawSocket{}, false
	}
	var family int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		sa, serr = unix.Getsockname(int(fd))
		if _, is6 := sa.(*unix.SockaddrInet6); is6 {
			family = unix.AF_INET6
		} else {
			family = unix.AF_INET
		}
	}); err != nil || serr != nil {
		return rawSocket{}, false
	}
	return rawSocket{rc: rc, v6: family == unix.AF_INET6}, true
}

// read runs step on the socket's descriptor until it reports done,
// waiting in the runtime's poller (without holding a thread) while it
// does not: step does one non-blocking recvmmsg and reports EAGAIN as
// not done. step is a long-lived func value, so a read allocates nothing.
func (s rawSocket) read(step func(fd uintptr) bool) error {
	return s.rc.Read(step)
}

// batchWriter sends batches with sendmmsg. It belongs to one goroutine;
// its step function is made once, so a write allocates nothing.
type batchWriter struct {
	b              *mmsgBatch
	count, i, sent int
	step           func(fd uintptr) bool
}

func newBatchWriter() *batchWriter {
	w := &batchWriter{}
	w.step = w.send
	return w
}

// write sends messages [0, count) of b on s, waiting while the socket's
// send buffer is full. Messages the kernel refuses one by one (an
// unreachable destination, say) are skipped, as a failed sendto would
// drop them, and marked for sentCounts; the result is how many were sent.
func (w *batchWriter) write(s rawSocket, b *mmsgBatch, count int) (int, error) {
	for j := range count {
		b.hdrs[j].n = 0
	}
	w.b, w.count, w.i, w.sent = b, count, 0, 0
	err := s.rc.Write(w.step)
	w.b = nil
	return w.sent, err
}

func (w *batchWriter) send(fd uintptr) bool {
	for w.i < w.count {
		n, errno := w.b.send(fd, w.i, w.count)
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno != 0:
			w.b.hdrs[w.i].n = sendFailed // drop it and go on
			w.i++
		default:
			w.i += n
			w.sent += n
		}
	}
	return true
}

// sendFailed marks a message of a send batch the kernel refused.
const sendFailed = ^uint32(0)

// sentCounts returns how many of messages [0, k) were sent after a
// successful write, and their bytes.
func (b *mmsgBatch) sentCounts(k int) (pkts, bytes int) {
	for j := range k {
		if n := b.hdrs[j].n; n != sendFailed {
			pkts++
			bytes += int(n)
		}
	}
	return pkts, bytes
}

// scope returns the IPv6 scope (interface index) datagram i came with.
func (b *mmsgBatch) scope(i int) uint32 {
	n := &b.names[i]
	if binary.NativeEndian.Uint16(n[0:2]) != unix.AF_INET6 || b.hdrs[i].hdr.Namelen < unix.SizeofSockaddrInet6 {
		return 0
	}
	return binary.NativeEndian.Uint32(n[24:28])
}

// batchIO reports whether batched socket I/O is built in.
const batchIO = true

//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
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

// mmsgBatch holds the kernel-facing arrays for one recvmmsg: headers, I/O
// vectors and addresses, all allocated once, so a batch costs no
// allocation per datagram. headroom bytes are kept in front of each
// received datagram, so a ChannelData header can be put there without
// copying the payload.
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

// cut reports whether datagram i was larger than its buffer.
func (b *mmsgBatch) cut(i int) bool {
	return b.hdrs[i].hdr.Flags&unix.MSG_TRUNC != 0
}

// truncated reports whether datagram i reached pion's inbound MTU, so pion
// would take it for cut off and drop it.
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

// rawSocket is a host UDP socket's descriptor access for batched I/O.
type rawSocket struct {
	rc syscall.RawConn
	v6 bool // AF_INET6 (possibly dual-stack): IPv4 peers are written mapped
	// noGSO is set once the kernel refused a UDP_SEGMENT send on this
	// socket (a route whose device cannot checksum, say); from then on
	// every datagram is its own message.
	noGSO *atomic.Bool
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
	return rawSocket{rc: rc, v6: family == unix.AF_INET6, noGSO: new(atomic.Bool)}, true
}

// read runs step on the socket's descriptor until it reports done,
// waiting in the runtime's poller (without holding a thread) while it
// does not: step does one non-blocking recvmmsg and reports EAGAIN as
// not done. step is a long-lived func value, so a read allocates nothing.
func (s rawSocket) read(step func(fd uintptr) bool) error {
	return s.rc.Read(step)
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

// Limits of one UDP GSO message (UDP_SEGMENT, Linux 4.18): the kernel
// takes at most 64 segments (128 since 6.x) and one IP datagram's worth
// of payload.
// Frames above maxGSOSegment are sent alone: a segment and its headers
// must fit the route's MTU, or the kernel refuses the whole message.
const (
	maxGSOSegments = 64
	maxGSOBytes    = 60000
	maxGSOSegment  = 1400
)

// cmsgSegment is the room for one UDP_SEGMENT control message.
const cmsgSegment = 24 // CMSG_SPACE(sizeof(uint16)) on 64- and 32-bit Linux

// sendBatch builds the messages of one sendmmsg from frames queued with
// add. Consecutive frames of one size for one destination become one UDP
// GSO message (UDP_SEGMENT; the last frame of a run may be shorter), which
// the kernel routes and passes down the stack once and cuts into the
// original datagrams on the way, so the receiver sees exactly the frames
// that were queued, in order. It belongs to one goroutine.
type sendBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec // one per frame, each message a run of them
	names []sockName
	ctrl  [][cmsgSegment]byte
	to    []netip.AddrPort
	segs  []int // frames per message
	first []int // index of a message's first frame

	nmsg, nframes int
	segSize       int  // the open run's frame size
	closed        bool // the open run got its short last frame
	runBytes      int

	// write state
	sock    rawSocket
	i, sent int
	refused bool // the kernel refused a GSO message
	step    func(fd uintptr) bool
}

func newSendBatch(size int) *sendBatch {
	b := &sendBatch{
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]sockName, size),
		ctrl:  make([][cmsgSegment]byte, size),
		to:    make([]netip.AddrPort, size),
		segs:  make([]int, size),
		first: make([]int, size),
	}
	b.step = b.send
	return b
}

func (b *sendBatch) reset() {
	b.nmsg, b.nframes = 0, 0
}

// len is the number of frames queued.
func (b *sendBatch) len() int { return b.nframes }

// full reports whether another frame would not fit.
func (b *sendBatch) full() bool { return b.nframes == len(b.iovs) }

// add queues frame p for to; gso allows joining it to the open run. The
// frame's bytes must stay untouched until the batch is written.
func (b *sendBatch) add(p []byte, to netip.AddrPort, gso bool) {
	if len(p) == 0 || b.full() {
		return
	}
	gso = gso && len(p) <= maxGSOSegment
	f := b.nframes
	b.iovs[f].Base = &p[0]
	b.iovs[f].SetLen(len(p))
	b.nframes++
	if m := b.nmsg - 1; gso && m >= 0 && b.to[m] == to && !b.closed && len(p) <= b.segSize &&
		b.segs[m] < maxGSOSegments && b.runBytes+len(p) <= maxGSOBytes {
		b.segs[m]++
		b.runBytes += len(p)
		b.closed = len(p) < b.segSize
		return
	}
	m := b.nmsg
	b.nmsg++
	b.to[m], b.segs[m], b.first[m] = to, 1, f
	b.segSize, b.closed, b.runBytes = len(p), false, len(p)
}

// seal fills the message headers for a socket of the given family.
func (b *sendBatch) seal(v6 bool) {
	for m := range b.nmsg {
		h := &b.hdrs[m].hdr
		h.Name = &b.names[m][0]
		h.Namelen = encodeName(&b.names[m], b.to[m], v6)
		h.Iov = &b.iovs[b.first[m]]
		h.SetIovlen(b.segs[m])
		h.Control = nil
		h.SetControllen(0)
		h.Flags = 0
		b.hdrs[m].n = 0
		if b.segs[m] > 1 {
			c := &b.ctrl[m]
			*c = [cmsgSegment]byte{}
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level = unix.SOL_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(b.iovs[b.first[m]].Len))
			h.Control = &c[0]
			h.SetControllen(unix.CmsgSpace(2))
		}
	}
}

// splitFrom turns messages m and after into one message per frame.
func (b *sendBatch) splitFrom(m int) {
	if m >= b.nmsg {
		return
	}
	first := b.first[m]
	iovs := make([]unix.Iovec, 0, b.nframes-first) // rare: only when GSO is refused
	tos := make([]netip.AddrPort, 0, b.nframes-first)
	for k := m; k < b.nmsg; k++ {
		for j := range b.segs[k] {
			iovs = append(iovs, b.iovs[b.first[k]+j])
			tos = append(tos, b.to[k])
		}
	}
	b.nmsg, b.nframes = m, first
	for j := range iovs {
		b.add(unsafe.Slice(iovs[j].Base, iovs[j].Len), tos[j], false)
	}
}

// write sends the batch on s, waiting while the socket's send buffer is
// full. Messages the kernel refuses one by one (an unreachable
// destination, say) are dropped, as a failed sendto would drop them, and
// left out of counts; if it refuses GSO, the socket stops using it and the
// rest goes frame by frame.
func (b *sendBatch) write(s rawSocket) error {
	b.seal(s.v6)
	b.sock, b.i, b.sent = s, 0, 0
	for {
		b.refused = false
		if err := s.rc.Write(b.step); err != nil {
			return err
		}
		if !b.refused {
			return nil
		}
		s.noGSO.Store(true)
		b.splitFrom(b.i)
		b.seal(s.v6)
	}
}

func (b *sendBatch) send(fd uintptr) bool {
	for b.i < b.nmsg {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.i])),
			uintptr(b.nmsg-b.i), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			return false
		case errno != 0 && b.segs[b.i] > 1 && (errno == unix.EIO || errno == unix.EINVAL || errno == unix.EOPNOTSUPP):
			b.refused = true
			return true
		case errno != 0:
			b.hdrs[b.i].n = sendFailed // drop it and go on
			b.i++
		default:
			b.i += int(r)
		}
	}
	return true
}

// sendFailed marks a message the kernel refused.
const sendFailed = ^uint32(0)

// counts returns how many frames were sent after a successful write, and
// their bytes.
func (b *sendBatch) counts() (frames, bytes int) {
	for m := range b.nmsg {
		if n := b.hdrs[m].n; n != sendFailed {
			frames += b.segs[m]
			bytes += int(n)
		}
	}
	return frames, bytes
}

// gso reports whether the socket may send UDP GSO messages.
func (s rawSocket) gso() bool { return !s.noGSO.Load() }

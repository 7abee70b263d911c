//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// Batched socket I/O (recvmmsg/sendmmsg) is Linux only; elsewhere every
// datagram takes pion's path and these are never used.
const batchIO = false

var errNoBatchIO = errors.New("batched socket I/O not supported here")

type mmsgBatch struct {
	hdrs []struct{ n uint32 }
	bufs [][]byte
}

func newMmsgBatch(size, headroom int) *mmsgBatch { return &mmsgBatch{} }

func (b *mmsgBatch) data(i int) []byte                    { return nil }
func (b *mmsgBatch) cut(i int) bool                       { return true }
func (b *mmsgBatch) truncated(i int) bool                 { return true }
func (b *mmsgBatch) from(i int) netip.AddrPort            { return netip.AddrPort{} }
func (b *mmsgBatch) scope(i int) uint32                   { return 0 }
func (b *mmsgBatch) recv(fd uintptr) (int, syscall.Errno) { return 0, syscall.EINVAL }

type sendBatch struct{}

func newSendBatch(size int) *sendBatch                         { return &sendBatch{} }
func (b *sendBatch) reset()                                    {}
func (b *sendBatch) len() int                                  { return 0 }
func (b *sendBatch) add(p []byte, to netip.AddrPort, gso bool) {}
func (b *sendBatch) write(s rawSocket) error                   { return errNoBatchIO }
func (b *sendBatch) counts() (frames, bytes int)               { return 0, 0 }

type rawSocket struct{ v6 bool }

func newRawSocket(net.PacketConn) (rawSocket, bool) { return rawSocket{}, false }

func (s rawSocket) read(step func(fd uintptr) bool) error { return errNoBatchIO }
func (s rawSocket) gso() bool                             { return false }

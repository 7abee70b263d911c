//go:build linux

package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// gsoPair is a sending socket wrapped for batched I/O and a receiver.
func gsoPair(t *testing.T) (rawSocket, *net.UDPConn, netip.AddrPort) {
	t.Helper()
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Close() })
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	raw, ok := newRawSocket(send)
	if !ok {
		t.Fatal("a host UDP socket must allow batched I/O")
	}
	return raw, recv, recv.LocalAddr().(*net.UDPAddr).AddrPort()
}

// frames queues n frames of size bytes (the last one short by short) and
// returns them.
func frames(b *sendBatch, to netip.AddrPort, n, size, short int) [][]byte {
	var out [][]byte
	for i := range n {
		l := size
		if i == n-1 {
			l -= short
		}
		f := bytes.Repeat([]byte{byte('a' + i)}, l)
		out = append(out, f)
		b.add(f, to, true)
	}
	return out
}

func expectDatagrams(t *testing.T, recv *net.UDPConn, want [][]byte) {
	t.Helper()
	buf := make([]byte, 2048)
	for i, w := range want {
		recv.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := recv.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d is %q (%d bytes), want %q (%d bytes)", i, buf[:min(n, 8)], n, w[:min(len(w), 8)], len(w))
		}
	}
	recv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := recv.Read(buf); err == nil {
		t.Fatalf("an extra datagram of %d bytes", n)
	}
}

// TestSendBatchGSOKeepsDatagrams checks that a run of equal frames sent as
// one UDP GSO message arrives as the same separate datagrams, a short last
// frame included, and that frames for other destinations or of another
// size start a new message.
func TestSendBatchGSOKeepsDatagrams(t *testing.T) {
	raw, recv, to := gsoPair(t)
	_, recv2, to2 := gsoPair(t)
	b := newSendBatch(32)
	want := frames(b, to, 7, 176, 60)
	if b.nmsg != 1 || b.segs[0] != 7 {
		t.Fatalf("7 frames of one run made %d messages (%v), want 1 of 7", b.nmsg, b.segs[:b.nmsg])
	}
	want2 := frames(b, to2, 3, 100, 0)
	more := frames(b, to, 2, 300, 0) // after a short frame: a new run
	if b.nmsg != 3 {
		t.Fatalf("%d messages, want 3 (one run per destination and size)", b.nmsg)
	}
	if err := b.write(raw); err != nil {
		t.Fatal(err)
	}
	if !raw.gso() {
		t.Fatal("loopback refused UDP GSO")
	}
	if f, n := b.counts(); f != 12 || n != 7*176-60+3*100+2*300 {
		t.Errorf("counts = %d frames, %d bytes", f, n)
	}
	expectDatagrams(t, recv, append(want, more...))
	expectDatagrams(t, recv2, want2)
}

// TestSendBatchFallsBackWhenGSOIsRefused makes the kernel refuse GSO (a
// socket without UDP checksums may not use it) and checks that every
// frame still goes out, one message each, and the socket stops trying.
func TestSendBatchFallsBackWhenGSOIsRefused(t *testing.T) {
	raw, recv, to := gsoPair(t)
	var serr error
	if err := raw.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	}); err != nil || serr != nil {
		t.Skipf("SO_NO_CHECK: %v %v", err, serr)
	}
	b := newSendBatch(32)
	want := frames(b, to, 5, 120, 0)
	if err := b.write(raw); err != nil {
		t.Fatal(err)
	}
	if raw.gso() {
		t.Fatal("the socket still uses GSO after the kernel refused it")
	}
	if f, n := b.counts(); f != 5 || n != 5*120 {
		t.Errorf("counts = %d frames, %d bytes, want 5, %d", f, n, 5*120)
	}
	expectDatagrams(t, recv, want)
}

// TestSendBatchDropsRefusedMessage sends to an address the kernel refuses
// (port 0) between two good ones: the bad one is dropped and left out of
// the counts, the others arrive.
func TestSendBatchDropsRefusedMessage(t *testing.T) {
	raw, recv, to := gsoPair(t)
	b := newSendBatch(8)
	b.add([]byte("one"), to, true)
	b.add([]byte("bad"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0), true)
	b.add([]byte("two"), to, true)
	if err := b.write(raw); err != nil {
		t.Fatal(err)
	}
	if f, n := b.counts(); f != 2 || n != 6 {
		t.Errorf("counts = %d frames, %d bytes, want 2, 6", f, n)
	}
	expectDatagrams(t, recv, [][]byte{[]byte("one"), []byte("two")})
}

func TestDecodeEncodeNames(t *testing.T) {
	for _, s := range []string{"127.0.0.1:3478", "[::1]:5349", "[2001:db8::7]:1"} {
		ap := netip.MustParseAddrPort(s)
		for _, v6 := range []bool{false, true} {
			var n sockName
			l := encodeName(&n, ap, v6)
			if ap.Addr().Is6() && !v6 {
				if l != 0 {
					t.Errorf("%s encoded for an IPv4 socket", s)
				}
				continue
			}
			if got := decodeName(&n, l); got != ap {
				t.Errorf("%s (v6 socket %v) decodes as %s", s, v6, got)
			}
		}
	}
	var n sockName
	if got := decodeName(&n, 0); got.IsValid() {
		t.Errorf("an empty name decodes as %s", got)
	}
}

package lab

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestProbeWithoutNAT runs the RFC 5780 probe over loopback, where there is
// no NAT: it must measure endpoint-independent mapping and filtering, a
// preserved port, and a mapping that "lives" through a delayed answer.
// Needs no root: 127.0.0.0/8 is all local on Linux.
func TestProbeWithoutNAT(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	primary := netip.MustParseAddrPort("127.0.0.1:0")
	srv, primary, alt := startLoopbackProbe(t, primary)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := Discover(ctx, primary, alt)
	if err != nil {
		t.Fatal(err)
	}
	if want := FullCone.Expected(); rep.Behavior != want || !rep.PortPreserved {
		t.Fatalf("no NAT measured as %+v, want %s with the port preserved", rep, want)
	}
	alive, err := MappingLives(ctx, primary, 200*time.Millisecond)
	if err != nil || !alive {
		t.Fatalf("delayed answer did not arrive: alive=%v err=%v", alive, err)
	}
	ok, mapped, err := UDPReaches(ctx, primary)
	if err != nil || !ok || mapped.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("UDPReaches(responder) = %v, %v, %v", ok, mapped, err)
	}
	// A refused TCP port is reachable: the refusal is an answer.
	ok, err = TCPReaches(ctx, netip.AddrPortFrom(primary.Addr(), 1))
	if err != nil || !ok {
		t.Fatalf("TCPReaches(refusing port) = %v, %v", ok, err)
	}
}

// startLoopbackProbe finds two free port numbers and starts a responder on
// 127.0.0.1 and 127.0.0.2 with them.
func startLoopbackProbe(t *testing.T, _ netip.AddrPort) (*ProbeServer, netip.AddrPort, netip.AddrPort) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		p1, p2 := freeUDPPort(t), freeUDPPort(t)
		if p1 == p2 {
			continue
		}
		primary := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p1)
		alt := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), p2)
		srv, err := NewProbeServer(primary, alt)
		if err == nil {
			return srv, primary, alt
		}
	}
	t.Fatal("no free ports for the probe responder")
	return nil, netip.AddrPort{}, netip.AddrPort{}
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := listenProbe()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// FuzzParseProbeRequest: the responder parses whatever arrives on its
// sockets; malformed input must give an error, never a panic or a delay
// above the bound.
func FuzzParseProbeRequest(f *testing.F) {
	for _, flags := range []uint32{0, changeIP, changePort, changeIP | changePort} {
		f.Add(buildRequest(f, flags, 0))
	}
	f.Add(buildRequest(f, 0, 1500*time.Millisecond))
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseProbeRequest(b)
		if err == nil && (req.delay < 0 || req.delay > maxResponseDelay) {
			t.Fatalf("accepted delay %v", req.delay)
		}
	})
}

func buildRequest(f *testing.F, flags uint32, delay time.Duration) []byte {
	m, err := buildProbeRequest(flags, delay)
	if err != nil {
		f.Fatal(err)
	}
	return m.Raw
}

package relay

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// mutations returns n hostile datagrams derived from valid ones: random
// bytes, truncations, bit flips, lying length fields, ChannelData for
// unbound channels, oversize datagrams and signed requests with random
// attributes.
func mutations(t testing.TB, rng *rand.Rand, n int) [][]byte {
	seeds := [][]byte{
		signed(t, stun.MethodAllocate, inspectKey, udpTransport(), lifetimeAttr(time.Hour)),
		signed(t, stun.MethodRefresh, inspectKey, lifetimeAttr(0)),
		signed(t, stun.MethodCreatePermission, inspectKey, peerAttr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})),
		signed(t, stun.MethodChannelBind, inspectKey, peerAttr(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9})),
		mustBuild(t, stun.MethodSend, peerAttr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})),
		mustBuild(t, stun.MethodAllocate, udpTransport()),
		mustBuild(t, stun.MethodBinding),
		{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4},
	}
	out := make([][]byte, 0, n)
	for range n {
		s := append([]byte(nil), seeds[rng.IntN(len(seeds))]...)
		switch rng.IntN(7) {
		case 0: // random bytes
			s = make([]byte, rng.IntN(200))
			for i := range s {
				s[i] = byte(rng.UintN(256))
			}
		case 1: // truncation
			s = s[:rng.IntN(len(s)+1)]
		case 2: // bit flips
			for range 1 + rng.IntN(4) {
				i := rng.IntN(len(s))
				s[i] ^= 1 << rng.UintN(8)
			}
		case 3: // lying length
			if len(s) >= 4 {
				binary.BigEndian.PutUint16(s[2:4], uint16(rng.UintN(65536)))
			}
		case 4: // ChannelData on any channel
			s = make([]byte, 4+rng.IntN(100))
			binary.BigEndian.PutUint16(s[0:2], 0x4000+uint16(rng.UintN(0x4000)))
			binary.BigEndian.PutUint16(s[2:4], uint16(len(s)-4+rng.IntN(3)-1))
		case 5: // oversize
			s = append(s, make([]byte, 1600+rng.IntN(400))...)
		}
		out = append(out, s)
	}
	return out
}

func TestServerSurvivesGarbageAndAllocateFloods(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.MaxAllocationsPerUser = 5 })
	rng := rand.New(rand.NewPCG(1, 2))
	var socks []net.PacketConn
	for range 4 {
		socks = append(socks, newPeer(t))
	}
	for i, d := range mutations(t, rng, 4000) {
		socks[i%len(socks)].WriteTo(d, r.udp)
	}
	// A flood of unauthenticated Allocates from many ports.
	for i := range 500 {
		socks[i%len(socks)].WriteTo(mustBuild(t, stun.MethodAllocate, udpTransport()), r.udp)
	}
	// A flood of authenticated Allocates by one user is cut at its quota.
	for range 20 {
		c := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		c.allocate() //nolint:errcheck // most are refused; counted below.
	}
	if got := r.srv.AllocationCount(); got != 5 {
		t.Errorf("allocations after flood = %d, want the quota of 5", got)
	}
	// Garbage on TCP: the connection is dropped, the listener lives on.
	if c, err := net.Dial("tcp", r.tcp.String()); err == nil {
		for _, d := range mutations(t, rng, 200) {
			c.Write(d)
		}
		c.Close()
	}
	// A real client is still served, on both transports.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pionRoundTrip(t, conn, r.udp, "bob", "bob-pw")
	tc, err := net.Dial("tcp", r.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	pionRoundTrip(t, turn.NewSTUNConn(tc), r.tcp, "bob", "bob-pw")
}

// FuzzServerDatagram sends each input to a live server with a single read
// loop and then requires an answer to a STUN Binding request queued behind
// it on the same socket: no input may crash or wedge the server.
func FuzzServerDatagram(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, d := range mutations(f, rng, 16) {
		f.Add(d)
	}
	r := startRelay(f, func(c *Config) { c.ReadLoops = 1 })
	sender, probe := newPeer(f), newPeer(f)
	binding := mustBuild(f, stun.MethodBinding)
	buf := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := sender.WriteTo(data, r.udp); err != nil {
			t.Skip("datagram too large for the socket")
		}
		if _, err := probe.WriteTo(binding, r.udp); err != nil {
			t.Fatal(err)
		}
		probe.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := probe.ReadFrom(buf)
			if err != nil {
				t.Fatalf("server stopped answering after %x: %v", data, err)
			}
			m := &stun.Message{Raw: buf[:n]}
			if m.Decode() == nil && m.Type == stun.BindingSuccess {
				return
			}
		}
	})
}

package focus

import (
	"net"
	"testing"
)

func TestMeshPortLatchesOnlyOntoTheTokenHolder(t *testing.T) {
	p := &hubPort{user: "ann", kind: KindMesh, token: "s3cret"}
	ann := &net.UDPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}
	eve := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 66), Port: 50000}
	rtp := make([]byte, 172)
	rtp[0] = 0x80
	steps := []struct {
		what string
		pkt  []byte
		from net.Addr
		want bool
	}{
		{"RTP before any token", rtp, eve, false},
		{"a wrong token", MediaKeepalive("guess"), eve, false},
		{"an empty keepalive", []byte{0}, eve, false},
		{"the member's token", MediaKeepalive("s3cret"), ann, true},
		{"RTP from the latched address", rtp, ann, true},
		{"RTP from anyone else", rtp, eve, false},
		{"the token from a new address (NAT rebinding)", MediaKeepalive("s3cret"), eve, true},
		{"RTP from the old address after the move", rtp, ann, false},
	}
	for _, s := range steps {
		if got := p.admit(s.pkt, s.from); got != s.want {
			t.Fatalf("%s from %v: admitted %v, want %v", s.what, s.from, got, s.want)
		}
	}
}

func TestBridgePortLatchesOntoRTPSource(t *testing.T) {
	sdpAddr := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 6000}
	p := &hubPort{user: "carl", kind: KindBridge, peer: sdpAddr}
	real := &net.UDPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 31000}
	rtp := make([]byte, 172)
	rtp[0] = 0x80
	if p.admit([]byte{0}, real) {
		t.Fatal("a bridged phone's port must not take non-RTP")
	}
	if !p.admit(rtp, real) || p.latched().String() != real.String() {
		t.Fatalf("symmetric RTP: latched %v, want %v", p.latched(), real)
	}
}

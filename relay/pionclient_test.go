package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// echoPeer answers every datagram with the same bytes until closed.
func echoPeer(t *testing.T) net.PacketConn {
	t.Helper()
	pc := newPeer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc
}

// pionRoundTrip allocates through pion's client on conn and relays a few
// datagrams to an echo peer and back.
func pionRoundTrip(t *testing.T, conn net.PacketConn, server net.Addr, user, pass string, during ...func()) {
	t.Helper()
	peer := echoPeer(t)
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayConn.Close()
	buf := make([]byte, 1500)
	// pion binds a channel after the first send; later ones go as ChannelData.
	for i := range 5 {
		msg := []byte("ping " + strings.Repeat("x", i))
		if _, err := relayConn.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		relayConn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := relayConn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if string(buf[:n]) != string(msg) || from.String() != peer.LocalAddr().String() {
			t.Fatalf("got %q from %v", buf[:n], from)
		}
	}
	for _, f := range during {
		f()
	}
	mapped, err := client.SendBindingRequest()
	if err != nil {
		t.Fatalf("STUN binding: %v", err)
	}
	if !strings.HasPrefix(mapped.String(), "127.0.0.1:") {
		t.Errorf("mapped address %v", mapped)
	}
}

func TestPionClientOverUDP(t *testing.T) {
	r := startRelay(t, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pionRoundTrip(t, conn, r.udp, "alice", "alice-pw", func() {
		// pion's client binds a channel in the background after the first
		// send; the data after that flows as ChannelData.
		eventually(t, 2*time.Second, "channel bound", func() bool {
			return metric(t, r.reg, "punchline_turn_channels") == 1
		})
	})
	eventually(t, 2*time.Second, "allocation released on client close", func() bool {
		return metric(t, r.reg, "punchline_turn_allocations") == 0 && metric(t, r.reg, "punchline_turn_channels") == 0
	})
}

func TestPionClientOverTCP(t *testing.T) {
	r := startRelay(t, nil)
	c, err := net.Dial("tcp", r.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pionRoundTrip(t, turn.NewSTUNConn(c), r.tcp, "alice", "alice-pw")
}

func TestPionClientOverTLSWithRESTCredentials(t *testing.T) {
	cert := selfSigned(t)
	r := startRelay(t, func(c *Config) {
		c.Listeners = []Listener{{Network: "tls", Addr: "127.0.0.1:0"}}
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	eps := r.srv.Endpoints()
	if len(eps) != 1 || eps[0].Network != "tls" {
		t.Fatalf("endpoints %v", eps)
	}
	c, err := tls.Dial("tcp", eps[0].Addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate.
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	user, pass, _ := RESTCredentials("rest-secret", "dave", time.Now(), time.Hour)
	pionRoundTrip(t, turn.NewSTUNConn(c), eps[0].Addr, user, pass)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

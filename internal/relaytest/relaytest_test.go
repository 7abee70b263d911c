package relaytest

import (
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// pion's TURN client binds a channel in a goroutine of its own that
	// Client.Close does not wait for; it ends when its transaction times
	// out. That goroutine is the client's, not the relay's.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/pion/turn/v5/internal/client.(*Transaction).WaitForResult"))
}

func allocateAndEcho(t *testing.T, conn net.PacketConn, server net.Addr, user, pass, realm string, peer net.PacketConn) {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(), TURNServerAddr: server.String(),
		Conn: conn, Username: user, Password: pass, Realm: realm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer rc.Close()
	if _, err := rc.WriteTo([]byte("hi"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if from.String() != rc.LocalAddr().String() {
		t.Errorf("peer saw %v, relayed address is %v", from, rc.LocalAddr())
	}
}

func TestStartOnLoopback(t *testing.T) {
	r := Start(t, Options{})
	if r.UDP == nil || r.TCP == nil || r.Username != DefaultUser {
		t.Fatalf("relay %+v", r)
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, cred := range [][2]string{{r.Username, r.Password}, func() [2]string {
		u, p := r.RESTCredentials("eve", time.Hour)
		return [2]string{u, p}
	}()} {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		allocateAndEcho(t, conn, r.UDP, cred[0], cred[1], r.Realm, peer)
		conn.Close()
	}
}

func TestStartOnVirtualNetwork(t *testing.T) {
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "1.2.3.0/24", LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatal(err)
	}
	serverNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"1.2.3.4"}})
	if err != nil {
		t.Fatal(err)
	}
	clientNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"1.2.3.5"}})
	if err != nil {
		t.Fatal(err)
	}
	peerNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"1.2.3.6"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*vnet.Net{serverNet, clientNet, peerNet} {
		if err := wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	defer wan.Stop() //nolint:errcheck // test teardown.

	r := Start(t, Options{Net: serverNet, Addr: "1.2.3.4:3478"})
	if r.UDP.String() != "1.2.3.4:3478" || r.TCP != nil {
		t.Fatalf("endpoints udp %v tcp %v", r.UDP, r.TCP)
	}
	conn, err := clientNet.ListenPacket("udp4", "1.2.3.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := peerNet.ListenPacket("udp4", "1.2.3.6:5000")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	allocateAndEcho(t, conn, r.UDP, r.Username, r.Password, r.Realm, peer)
	// Close the relay before the router stops, as a test's cleanup order
	// would not guarantee.
	r.Server.Close()
}

package labtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/lab"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestLabFromAnotherPackage is what a conference test would do: a LAN
// behind a symmetric NAT, verified with the built natprobe, and serve
// answering STUN from it with the router's address.
func TestLabFromAnotherPackage(t *testing.T) {
	l := New(t, lab.Config{LANs: []lab.LANConfig{{NAT: lab.Symmetric, Hosts: 2}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.VerifyAll(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := l.StartServer(ctx, lab.ServerConfig{Binary: Punchline(t), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := l.STUNMapped(ctx, l.LANs[0].Hosts[1], srv.TURN)
	if err != nil {
		t.Fatal(err)
	}
	if mapped.Addr() != l.LANs[0].Router.Addr {
		t.Fatalf("serve saw %s, want the router's %s", mapped, l.LANs[0].Router.Addr)
	}
}

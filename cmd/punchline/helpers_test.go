package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// buildPunchline builds the real binary into the test's temp dir, so
// end-to-end tests run punchline as users do. The go build cache makes
// every build after the first a link.
func buildPunchline(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "punchline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1 right
// now (SIP and TURN listen on both).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool skips when an external tool is missing, except in CI's lab
// mode (PUNCHLINE_LAB=1) where a missing tool is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatalf("%s not found but PUNCHLINE_LAB is set: install coturn", name)
		}
		t.Skipf("%s not found (install Debian's coturn to run this test)", name)
	}
	return p
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type relayProc struct {
	port    int
	metrics string // URL of /metrics
}

// startServe runs `punchline serve` with only the relay, on UDP and TCP,
// and waits for its readiness line.
func startServe(t *testing.T, bin, data string, extra ...string) relayProc {
	t.Helper()
	return startServeOn(t, bin, data, []string{"udp", "tcp"}, extra...)
}

// startServeOn runs the relay with listeners of the given transports on
// one free port.
func startServeOn(t *testing.T, bin, data string, transports []string, extra ...string) relayProc {
	t.Helper()
	port := freePort(t)
	httpPort := freeTCPPort(t)
	var listeners []string
	for _, tr := range transports {
		listeners = append(listeners, fmt.Sprintf("%s:127.0.0.1:%d", tr, port))
	}
	args := append([]string{"serve", "--data", data, "--sip", "",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--turn", strings.Join(listeners, ","),
	}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan string, 1)
	var logTail strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if logTail.Len() < 8192 {
				logTail.WriteString(line + "\n")
			}
			if strings.HasPrefix(line, "punchline ready:") {
				ready <- line
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case line := <-ready:
		for _, tr := range transports {
			if want := fmt.Sprintf("turn %s 127.0.0.1:%d", tr, port); !strings.Contains(line, want) {
				t.Fatalf("readiness line %q lacks %q", line, want)
			}
		}
	case <-exited:
		t.Fatalf("punchline serve exited early:\n%s", logTail.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("punchline serve not ready after 20s:\n%s", logTail.String())
	}
	return relayProc{port: port, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)}
}

// startTurnPeer runs coturn's echoing turnutils_peer and waits until it
// answers.
func startTurnPeer(t *testing.T) int {
	t.Helper()
	bin := needTool(t, "turnutils_peer")
	var port int
	var cmd *exec.Cmd
	for range 10 {
		port = freePort(t)
		cmd = exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		buf := make([]byte, 64)
		for range 50 {
			probe.WriteTo([]byte("probe"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			probe.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := probe.ReadFrom(buf); err == nil && string(buf[:n]) == "probe" {
				ok = true
				break
			}
		}
		probe.Close()
		if ok {
			break
		}
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
	}
	if cmd == nil {
		t.Fatal("turnutils_peer never answered")
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return port
}

type uclientResult struct {
	sent, received, lost int
	ok                   bool // exit status 0
	out                  string
}

var (
	reTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+)`)
)

// runUclient runs coturn's turnutils_uclient against the relay.
func runUclient(t *testing.T, relayPort, peerPort int, user, pass string, extra ...string) uclientResult {
	t.Helper()
	bin := needTool(t, "turnutils_uclient")
	args := append(append([]string{}, extra...),
		"-u", user, "-w", pass,
		"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
		"-p", strconv.Itoa(relayPort),
		"-n", "100", "-m", "2", "-l", "172", "-z", "5",
		"127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	r := uclientResult{ok: err == nil, out: string(out), sent: -1, received: -1, lost: -1}
	if m := reTotals.FindAllStringSubmatch(r.out, -1); len(m) > 0 {
		last := m[len(m)-1]
		r.sent, _ = strconv.Atoi(last[1])
		r.received, _ = strconv.Atoi(last[2])
	}
	if m := reLost.FindStringSubmatch(r.out); m != nil {
		r.lost, _ = strconv.Atoi(m[1])
	}
	return r
}

func tailOf(s string) string {
	if len(s) > 1500 {
		return "…" + s[len(s)-1500:]
	}
	return s
}

func scrape(t *testing.T, url, series string) float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	t.Fatalf("series %s not in /metrics", series)
	return 0
}

// TestRelayWithCoturnClients drives the real `punchline serve` binary with
// coturn's test clients, a TURN implementation this project did not write.
func TestRelayWithCoturnClients(t *testing.T) {
	needTool(t, "turnutils_uclient")
	bin := buildPunchline(t)
	data := t.TempDir()
	if out, err := exec.Command(bin, "user", "add", "alice", "--password", "wonderland", "--data", data, "--realm", "punchline").CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	const secret = "relay-shared-secret"
	peer := startTurnPeer(t)

	t.Run("loopback peers allowed", func(t *testing.T) {
		srv := startServe(t, bin, data, "--turn-secret", secret, "--turn-allow-peer", "127.0.0.0/8")
		noLoss := func(t *testing.T, r uclientResult) {
			t.Helper()
			if !r.ok || r.sent <= 0 || r.received != r.sent || r.lost != 0 {
				t.Fatalf("sent %d, received %d, lost %d, exit ok %v; want no loss\n%s", r.sent, r.received, r.lost, r.ok, tailOf(r.out))
			}
			t.Logf("sent %d, received %d, lost %d", r.sent, r.received, r.lost)
		}
		t.Run("registered user over UDP relays without loss", func(t *testing.T) {
			noLoss(t, runUclient(t, srv.port, peer, "alice", "wonderland"))
		})
		t.Run("registered user over TCP relays without loss", func(t *testing.T) {
			noLoss(t, runUclient(t, srv.port, peer, "alice", "wonderland", "-t"))
		})
		t.Run("REST credentials from turn-credentials relay without loss", func(t *testing.T) {
			out, err := exec.Command(bin, "turn-credentials", "--secret", secret, "--user", "bob", "--ttl", "1h").Output()
			if err != nil {
				t.Fatalf("turn-credentials: %v", err)
			}
			var user, pass string
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "username: "); ok {
					user = v
				}
				if v, ok := strings.CutPrefix(line, "password: "); ok {
					pass = v
				}
			}
			if !strings.HasSuffix(user, ":bob") || pass == "" {
				t.Fatalf("turn-credentials printed %q", out)
			}
			noLoss(t, runUclient(t, srv.port, peer, user, pass))
		})
		t.Run("wrong password is refused", func(t *testing.T) {
			before := scrape(t, srv.metrics, `punchline_turn_auth_failures_total{reason="bad_password"}`)
			r := runUclient(t, srv.port, peer, "alice", "not-the-password")
			if r.ok || r.received > 0 || !strings.Contains(r.out, "Cannot complete Allocation") {
				t.Fatalf("uclient with a wrong password: exit ok %v, received %d\n%s", r.ok, r.received, tailOf(r.out))
			}
			if after := scrape(t, srv.metrics, `punchline_turn_auth_failures_total{reason="bad_password"}`); after <= before {
				t.Errorf("bad_password failures %v → %v, want an increase", before, after)
			}
		})
		if got := scrape(t, srv.metrics, `punchline_turn_relayed_packets_total{direction="client_to_peer"}`); got < 600 {
			t.Errorf("client_to_peer packets = %v, want at least the 600 sent by the three runs", got)
		}
	})

	t.Run("TURN over TLS relays without loss", func(t *testing.T) {
		certFile, keyFile := writeSelfSignedCert(t)
		srv := startServeOn(t, bin, data, []string{"tls"}, "--turn-allow-peer", "127.0.0.0/8",
			"--tls-cert", certFile, "--tls-key", keyFile)
		r := runUclient(t, srv.port, peer, "alice", "wonderland", "-t", "-S")
		if !r.ok || r.sent <= 0 || r.received != r.sent || r.lost != 0 {
			t.Fatalf("uclient over TLS: sent %d, received %d, lost %d, exit ok %v\n%s", r.sent, r.received, r.lost, r.ok, tailOf(r.out))
		}
	})

	t.Run("loopback peers refused by default", func(t *testing.T) {
		srv := startServe(t, bin, data, "--turn-secret", secret)
		for _, transport := range []struct {
			name  string
			flags []string
		}{{"UDP", nil}, {"TCP", []string{"-t"}}} {
			t.Run(transport.name, func(t *testing.T) {
				r := runUclient(t, srv.port, peer, "alice", "wonderland", transport.flags...)
				if r.ok || r.received > 0 || !strings.Contains(r.out, "403") {
					t.Fatalf("uclient to a loopback peer: exit ok %v, received %d; want 403\n%s", r.ok, r.received, tailOf(r.out))
				}
			})
		}
		if got := scrape(t, srv.metrics, "punchline_turn_refused_peers_total"); got < 2 {
			t.Errorf("refused peers = %v, want at least 2", got)
		}
	})
}

// writeSelfSignedCert writes a throwaway certificate for 127.0.0.1.
func writeSelfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// sipServed is a running `punchline serve`.
type sipServed struct {
	cmd    *exec.Cmd
	ready  string
	stderr *strings.Builder
	done   chan error
}

func startSIPServe(t *testing.T, bin, data string, sipPort, httpPort int, extra ...string) *sipServed {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--turn", "",
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d,tcp:127.0.0.1:%d", sipPort, sipPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort)}, extra...)
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sipServed{cmd: cmd, stderr: &strings.Builder{}, done: make(chan error, 1)}
	readyCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.WriteString(line + "\n")
			if strings.HasPrefix(line, "punchline ready:") {
				readyCh <- line
			}
		}
	}()
	go func() {
		s.done <- cmd.Wait()
		pw.Close()
	}()
	select {
	case s.ready = <-readyCh:
	case err := <-s.done:
		t.Fatalf("serve exited before ready: %v\n%s", err, s.stderr.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve not ready in 20s\n%s", s.stderr.String())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

func (s *sipServed) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, s.stderr.String())
		}
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("serve did not stop on %v", sig)
	}
}

func sipRunCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("punchline %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func sipMetricsText(t *testing.T, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// sipExpectInviteAt waits for the proxied INVITE at peer's socket.
func sipExpectInviteAt(t *testing.T, p *udpPeer) {
	t.Helper()
	m := p.next(5 * time.Second)
	req, ok := m.(*siplib.Request)
	if !ok || req.Method != siplib.INVITE {
		t.Fatalf("%s: want the proxied INVITE, got %v", p.user, m)
	}
}

func TestServeRestartKeepsUsersAndRegistrations(t *testing.T) {
	bin := buildPunchline(t)
	data := t.TempDir()
	sipRunCLI(t, bin, "user", "add", "alice", "--password", "apw", "--data", data)
	sipRunCLI(t, bin, "user", "add", "bob", "--password", "bpw", "--data", data)
	sipRunCLI(t, bin, "user", "add", "carol", "--password", "cpw", "--data", data)
	sipPort, httpPort := freePort(t), freePort(t)
	srvAddr := fmt.Sprintf("127.0.0.1:%d", sipPort)

	s1 := startSIPServe(t, bin, data, sipPort, httpPort)
	if !strings.Contains(s1.ready, "sip udp "+srvAddr) || !strings.Contains(s1.ready, "sip tcp "+srvAddr) {
		t.Fatalf("readiness line %q does not name the SIP listeners", s1.ready)
	}
	// Bob is behind a NAT: his Contact names a private address, his
	// packets come from this socket.
	bob := newUDPPeer(t, srvAddr, "bob", "bpw")
	if code := bob.register("<sip:bob@192.168.1.50:5060>"); code != 200 {
		t.Fatalf("bob register: %d", code)
	}
	if m := sipMetricsText(t, httpPort); !strings.Contains(m, "punchline_sip_registrations 1") {
		t.Fatalf("metrics do not show the registration:\n%s", m)
	}
	s1.stop(t, syscall.SIGTERM)

	// After a graceful restart bob is still registered: alice's call
	// reaches his socket although he has not registered again.
	s2 := startSIPServe(t, bin, data, sipPort, httpPort)
	alice := newUDPPeer(t, srvAddr, "alice", "apw")
	alice.invite("bob")
	sipExpectInviteAt(t, bob)

	// kill -9 loses at most the last flush interval (500 ms) of changes:
	// a registration older than that survives.
	carol := newUDPPeer(t, srvAddr, "carol", "cpw")
	if code := carol.register("<sip:carol@10.9.9.9:5060>"); code != 200 {
		t.Fatalf("carol register: %d", code)
	}
	time.Sleep(1500 * time.Millisecond)
	s2.stop(t, syscall.SIGKILL)

	startSIPServe(t, bin, data, sipPort, httpPort)
	alice2 := newUDPPeer(t, srvAddr, "alice", "apw")
	alice2.invite("carol")
	sipExpectInviteAt(t, carol)
}

func TestServeUsersListedAfterRestart(t *testing.T) {
	bin := buildPunchline(t)
	data := t.TempDir()
	sipRunCLI(t, bin, "user", "add", "dora", "--password", "x", "--data", data)
	port, hport := freePort(t), freePort(t)
	startSIPServe(t, bin, data, port, hport).stop(t, syscall.SIGTERM)
	if out := sipRunCLI(t, bin, "user", "list", "--data", data); !strings.Contains(out, "dora") {
		t.Fatalf("user list after serve: %q", out)
	}
}

func TestServeStartsTLSAndWSListeners(t *testing.T) {
	bin := buildPunchline(t)
	data := t.TempDir()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	sipWriteSelfSigned(t, cert, key)
	p1, p2, p3, hp := freePort(t), freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "--data", data, "--turn", "", "--http", fmt.Sprintf("127.0.0.1:%d", hp),
		"--sip", fmt.Sprintf("udp:127.0.0.1:%d,tls:127.0.0.1:%d,ws:127.0.0.1:%d", p1, p2, p3),
		"--tls-cert", cert, "--tls-key", key)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	var ready string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "punchline ready:") {
			ready = sc.Text()
			break
		}
	}
	for _, want := range []string{fmt.Sprintf("sip tls 127.0.0.1:%d", p2), fmt.Sprintf("sip ws 127.0.0.1:%d", p3)} {
		if !strings.Contains(ready, want) {
			t.Fatalf("readiness line %q lacks %q", ready, want)
		}
	}
	go io.Copy(io.Discard, stderr)
	// The TLS listener completes a handshake.
	conn, err := sipTLSDial(fmt.Sprintf("127.0.0.1:%d", p2))
	if err != nil {
		t.Fatalf("tls handshake with the sip tls listener: %v", err)
	}
	conn.Close()
	_ = os.Getenv
}

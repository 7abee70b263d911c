package ice_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
)

// startCoturn runs coturn's turnserver on loopback, as the third-party
// TURN server our phones must also work with. Without the binary the test
// skips, except under PUNCHLINE_LAB=1 (CI installs coturn), where that is a
// failure.
func startCoturn(t *testing.T) (string, *lockedLog) {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatal("coturn's turnserver is not installed (apt-get install coturn)")
		}
		t.Skip("coturn's turnserver is not installed (apt-get install coturn); CI runs this with PUNCHLINE_LAB=1")
	}
	// A free port: bind, note, release. turnserver binds it again at once.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"-n", "--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout", "--simple-log",
		"--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port", fmt.Sprint(port),
		"--min-port", "49152", "--max-port", "65535",
		"--lt-cred-mech", "--realm", turnRealm, "--user", turnUser+":"+turnPass,
		"--allow-loopback-peers", "--no-multicast-peers",
		// --verbose logs every peer a permission is installed for; its
		// own user database keeps the system's /var/lib/turn untouched.
		"--verbose", "--pidfile", dir+"/turnserver.pid", "--userdb", dir+"/turndb")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logDone := make(chan struct{})
	log := &lockedLog{}
	ready := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			line := sc.Text()
			log.add(line)
			if !once && strings.Contains(line, "Total General servers") || !once && strings.Contains(line, "IPv4. UDP listener opened") {
				once = true
				close(ready)
			}
		}
		if !once {
			close(ready)
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		<-logDone
		if t.Failed() {
			t.Logf("turnserver log:\n%s", log.String())
		}
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("turnserver did not start")
	}
	return fmt.Sprintf("127.0.0.1:%d", port), log
}

// lockedLog collects turnserver's output while it runs.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCoturnRelay runs calls through coturn: relay-only on both sides,
// relay-only against a peer offering everything (both ways round), and
// both offering everything (direct on loopback). The kernel lab's
// TestCallThroughCoturnAllCandidates is the same behind real NATs.
func TestCoturnRelay(t *testing.T) {
	addr, _ := startCoturn(t)
	relayOnly := func() ice.Config { return relayConfig("turn:" + addr + "?transport=udp") }
	all := func() ice.Config {
		c := loopbackConfig()
		c.Servers = []ice.Server{{URL: "stun:" + addr}, {URL: "turn:" + addr, Username: turnUser, Password: turnPass}}
		return c
	}
	for _, tc := range []struct {
		name           string
		caller, callee func() ice.Config
		want           string
	}{
		{"relay policy on both sides", relayOnly, relayOnly, ice.RouteRelayed},
		{"relay-only caller, callee offering every candidate", relayOnly, all, ice.RouteRelayed},
		{"caller offering every candidate, relay-only callee", all, relayOnly, ice.RouteRelayed},
		{"both offering every candidate (loopback: direct)", all, all, ice.RouteDirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ice.NewSession(tc.caller(), true)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := ice.NewSession(tc.callee(), false)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			start := time.Now()
			ca, cb := pair(t, a, b)
			r, err := a.Route()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s/%s in %v", r.Route, r.LocalType, r.RemoteType, time.Since(start))
			if r.Route != tc.want {
				t.Fatalf("route %+v, want %s", r, tc.want)
			}
			exchange(t, ca, cb, 5)
		})
	}
}

// TestCoturnRelayIgnoresPeersItCannotReach offers the relaying side, besides
// the peer's loopback host candidate, candidates its loopback relay cannot
// reach: a private host address and a public (documentation-range) one, at
// higher priority so they are checked first. coturn 4.6 closes a whole
// allocation when its relay fails to send to one peer (seen in the kernel
// lab: a public relay, no route to a phone's private host candidate), so
// the phone must never ask it to; the call must still go through coturn,
// and coturn must never have been asked for those peers at all (its log
// names every peer it installs a permission for).
func TestCoturnRelayIgnoresPeersItCannotReach(t *testing.T) {
	addr, log := startCoturn(t)
	a, err := ice.NewSession(relayConfig("turn:"+addr+"?transport=udp"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ice.NewSession(loopbackConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	la, err := a.Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unreachable := []string{"10.99.0.7", "198.51.100.9"}
	remote := []string{
		"1 1 udp 2130706431 " + unreachable[0] + " 40000 typ host",
		"2 1 udp 2130706430 " + unreachable[1] + " 40002 typ host",
	}
	remote = append(remote, lb.Candidates...)
	if err := a.SetRemote(lb.Ufrag, lb.Pwd, remote); err != nil {
		t.Fatal(err)
	}
	if err := b.SetRemote(la.Ufrag, la.Pwd, la.Candidates); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	var cb net.Conn
	go func() {
		var err error
		cb, err = b.Connect(ctx)
		errc <- err
	}()
	ca, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r, err := a.Route()
	if err != nil {
		t.Fatal(err)
	}
	if r.Route != ice.RouteRelayed || r.RemoteType != "host" {
		t.Fatalf("route %+v, want relayed to the loopback host candidate", r)
	}
	// Long enough for many check rounds towards the unreachable peers.
	exchange(t, ca, cb, 20)
	out := log.String()
	for _, ip := range unreachable {
		if strings.Contains(out, "peer "+ip) {
			t.Errorf("coturn was asked to reach %s, which its loopback relay cannot:\n%s", ip, out)
		}
	}
	if !strings.Contains(out, "peer 127.0.0.1") {
		t.Errorf("coturn's log shows no permission for the loopback peer; is it logging peers?\n%s", out)
	}
}

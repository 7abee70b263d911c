package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// challengeAlgorithms sends one unauthenticated REGISTER and returns the
// algorithm of each WWW-Authenticate challenge in the 401, in order.
func challengeAlgorithms(t *testing.T, p *udpPeer) []string {
	t.Helper()
	p.cseq++
	p.send(fmt.Sprintf(`REGISTER sip:%[1]s SIP/2.0
Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK-alg%[3]d;rport
From: <sip:%[4]s@punchline>;tag=alg
To: <sip:%[4]s@punchline>
Call-ID: alg-%[2]s
CSeq: %[3]d REGISTER
Contact: <sip:%[4]s@%[2]s>
Max-Forwards: 70
Content-Length: 0

`, p.server, p.addr(), p.cseq, p.user))
	res := p.response(3 * time.Second)
	if res.StatusCode != 401 {
		t.Fatalf("unauthenticated REGISTER: %d, want 401", res.StatusCode)
	}
	var algs []string
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		v := h.Value()
		i := strings.Index(v, "algorithm=")
		if i < 0 {
			t.Fatalf("challenge without algorithm: %q", v)
		}
		a, _, _ := strings.Cut(v[i+len("algorithm="):], ",")
		algs = append(algs, strings.Trim(a, `" `))
	}
	return algs
}

// TestServeDigestAlgorithms: serve challenges with MD5 alone by default
// (baresip 1.0 gives up on a 401 that holds any SHA-256 challenge), offers
// what --sip-digest lists in its order, and refuses algorithms it does not
// know.
func TestServeDigestAlgorithms(t *testing.T) {
	bin := buildPunchline(t)
	data := t.TempDir()
	sipRunCLI(t, bin, "user", "add", "alice", "--password", "apw", "--data", data)

	sipPort, httpPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", sipPort)
	s := startSIPServe(t, bin, data, sipPort, httpPort)
	alice := newUDPPeer(t, addr, "alice", "apw")
	if got := challengeAlgorithms(t, alice); strings.Join(got, ",") != "MD5" {
		t.Errorf("default challenges %v, want [MD5]", got)
	}
	if code := alice.register(fmt.Sprintf("<sip:alice@%s>", alice.addr())); code != 200 {
		t.Errorf("MD5 registration: %d", code)
	}
	s.stop(t, syscall.SIGTERM)

	startSIPServe(t, bin, data, sipPort, httpPort, "--sip-digest", "sha-256,MD5")
	alice = newUDPPeer(t, addr, "alice", "apw")
	if got := challengeAlgorithms(t, alice); strings.Join(got, ",") != "SHA-256,MD5" {
		t.Errorf("--sip-digest sha-256,MD5 challenges %v, want [SHA-256 MD5]", got)
	}

	for _, bad := range []string{"SHA1", ""} {
		out, err := exec.Command(bin, "serve", "--data", t.TempDir(), "--turn", "", "--http", "",
			"--sip", fmt.Sprintf("udp:127.0.0.1:%d", freePort(t)), "--sip-digest", bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "digest") {
			t.Errorf("--sip-digest %q: err %v, output %q; want a refusal naming the digest setting", bad, err, out)
		}
	}
}

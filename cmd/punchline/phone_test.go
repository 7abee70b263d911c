package main

// End-to-end tests of `punchline phone`: the real binary, registered with
// a real `punchline serve` (registrar, proxy and TURN relay) on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/media"
)

// phoneProc is a running punchline process whose stderr is collected.
type phoneProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu      sync.Mutex
	out     bytes.Buffer
	changed chan struct{}
}

func phoneStart(t *testing.T, name, bin string, args ...string) *phoneProc {
	t.Helper()
	p := &phoneProc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), changed: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *phoneProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until stderr contains s.
func (p *phoneProc) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		p.mu.Lock()
		has, ch := strings.Contains(p.out.String(), s), p.changed
		p.mu.Unlock()
		if has {
			return
		}
		select {
		case <-ch:
		case <-p.done:
			t.Fatalf("%s exited before saying %q: %v\n%s", p.name, s, p.err, p.output())
		case <-deadline:
			t.Fatalf("%s did not say %q within %v\n%s", p.name, s, d, p.output())
		}
	}
}

// wait waits for the process to exit and returns its error.
func (p *phoneProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s still running after %v\n%s", p.name, d, p.output())
		return nil
	}
}

// phoneServer is a running `punchline serve` with accounts.
type phoneServer struct {
	sip, turn string
	http      string // "" unless asked for
	proc      *phoneProc
}

var phoneUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

func phoneServe(t *testing.T, bin string, withHTTP bool) *phoneServer {
	t.Helper()
	data := t.TempDir()
	for u, pw := range phoneUsers {
		if out, err := exec.Command(bin, "user", "add", u, "--password", pw, "--data", data).CombinedOutput(); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	s := &phoneServer{
		sip:  net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		turn: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
	}
	if withHTTP {
		s.http = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	}
	s.proc = phoneStart(t, "serve", bin, "serve", "--data", data,
		"--sip", "udp:"+s.sip+",tcp:"+s.sip, "--turn", "udp:"+s.turn,
		"--turn-allow-peer", "127.0.0.0/8", "--http", s.http)
	s.proc.waitFor(t, "punchline ready:", 20*time.Second)
	return s
}

// phoneRelayOnly starts a second `punchline serve` that is only a relay,
// with the default peer policy (loopback refused), and returns its address.
func phoneRelayOnly(t *testing.T, bin string) string {
	t.Helper()
	data := t.TempDir()
	for u, pw := range phoneUsers {
		if out, err := exec.Command(bin, "user", "add", u, "--password", pw, "--data", data).CombinedOutput(); err != nil {
			t.Fatalf("user add %s: %v\n%s", u, err, out)
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := phoneStart(t, "relay", bin, "serve", "--data", data, "--sip", "", "--turn", "udp:"+addr, "--http", "")
	p.waitFor(t, "punchline ready:", 20*time.Second)
	return addr
}

// phoneArgs are the flags every phone in these tests gets: the test
// server, its relay (on a free port, not 3478), stats into dir.
func (s *phoneServer) phoneArgs(user, dir string) []string {
	return []string{"phone", "--server", s.sip, "--user", user, "--password", phoneUsers[user],
		"--stun", "stun:" + s.turn, "--turn", "turn:" + s.turn + "?transport=udp",
		"--stats-json", filepath.Join(dir, user+".json"), "--log-level", "info"}
}

func readPhoneStats(t *testing.T, path string) phone.Stats {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st phone.Stats
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return st
}

func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	s, err := media.ReadWAVFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// metricSum adds up every sample of a metric family in /metrics text.
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// callResult is what one alice→bob call left behind.
type callResult struct {
	alice, bob       phone.Stats
	aliceWAV, bobWAV []int16
	aliceOut, bobOut string
}

// phoneCall runs bob answering and alice calling with the extra flags
// given, and collects stats and recordings.
func phoneCall(t *testing.T, bin string, s *phoneServer, aliceExtra, bobExtra []string) callResult {
	t.Helper()
	dir := t.TempDir()
	bobArgs := append(s.phoneArgs("bob", dir), "--answer", "--duration", "30s",
		"--record", filepath.Join(dir, "bob.wav"))
	bob := phoneStart(t, "bob", bin, append(bobArgs, bobExtra...)...)
	bob.waitFor(t, "registered", 15*time.Second)
	aliceArgs := append(s.phoneArgs("alice", dir), "--call", "bob", "--duration", "3s",
		"--record", filepath.Join(dir, "alice.wav"))
	alice := phoneStart(t, "alice", bin, append(aliceArgs, aliceExtra...)...)
	if err := alice.wait(t, 45*time.Second); err != nil {
		t.Fatalf("alice: %v\n%s\nbob:\n%s", err, alice.output(), bob.output())
	}
	// bob must end because alice's BYE reached him, long before his 30 s.
	if err := bob.wait(t, 10*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s", err, bob.output())
	}
	if !strings.Contains(bob.output(), "hung up") {
		t.Errorf("bob did not notice the hang-up:\n%s", bob.output())
	}
	return callResult{
		alice: readPhoneStats(t, filepath.Join(dir, "alice.json")), bob: readPhoneStats(t, filepath.Join(dir, "bob.json")),
		aliceWAV: readWAV(t, filepath.Join(dir, "alice.wav")), bobWAV: readWAV(t, filepath.Join(dir, "bob.wav")),
		aliceOut: alice.output(), bobOut: bob.output(),
	}
}

// checkAudio asserts that bob heard alice's WAV and alice heard bob's tone.
func checkAudio(t *testing.T, r callResult, sent []int16, tone float64) {
	t.Helper()
	m := media.Match(r.bobWAV, sent)
	t.Logf("bob's recording against the WAV alice played: score %.2f over %d windows, lag %d samples", m.Score, m.Windows, m.Lag)
	if m.Windows < 4 || m.Score < 0.8 {
		t.Errorf("bob's recording does not carry what alice played: score %.2f over %d windows", m.Score, m.Windows)
	}
	if lvl := media.ToneLevel(r.aliceWAV, tone); lvl < 0.5 {
		t.Errorf("alice's recording holds too little of bob's %v Hz tone: level %.2f", tone, lvl)
	}
}

func checkStats(t *testing.T, who string, st phone.Stats, route string) {
	t.Helper()
	t.Logf("%s: route %s (%s/%s), setup %.1f ms, sent %d, received %d, loss %.3f, jitter %.1f ms, rtt %.1f ms, MOS %.2f",
		who, st.Route, st.LocalCandidateType, st.RemoteCandidateType, st.SetupMs, st.PacketsSent, st.PacketsReceived,
		st.LossFraction, st.JitterMs, st.RTTMs, st.MOS)
	if st.Route != route {
		t.Errorf("%s's call went %q (%s/%s), want %s", who, st.Route, st.LocalCandidateType, st.RemoteCandidateType, route)
	}
	relayTypes := st.LocalCandidateType == "relay" || st.RemoteCandidateType == "relay"
	if (route == "relayed") != relayTypes {
		t.Errorf("%s: route %s but pair %s/%s", who, st.Route, st.LocalCandidateType, st.RemoteCandidateType)
	}
	if st.SetupMs <= 0 {
		t.Errorf("%s: no setup time", who)
	}
	// 3 s of 20 ms packets is 150; allow for setup and teardown.
	if st.PacketsSent < 100 || st.PacketsReceived < 100 {
		t.Errorf("%s: sent %d, received %d RTP packets in a 3 s call", who, st.PacketsSent, st.PacketsReceived)
	}
	if st.MOS < 3.5 {
		t.Errorf("%s: MOS %.2f on loopback", who, st.MOS)
	}
}

func TestPhoneCallGoesDirectAndCarriesAudio(t *testing.T) {
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	wav := filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav")
	sent := readWAV(t, wav)
	// alice over UDP, bob over TCP: both SIP transports in one call.
	r := phoneCall(t, bin, s, []string{"--play", wav}, []string{"--tone", "600", "--transport", "tcp"})
	checkStats(t, "alice", r.alice, "direct")
	checkStats(t, "bob", r.bob, "direct")
	checkAudio(t, r, sent, 600)
	if !r.alice.ICE || !r.bob.ICE {
		t.Error("a call between two punchline phones ran without ICE")
	}
}

func TestPhoneRelayPolicyGoesThroughOurRelay(t *testing.T) {
	bin := buildPunchline(t)
	s := phoneServe(t, bin, true)
	before := metricSum(t, s.http, "punchline_turn_relayed_bytes_total")
	wav := filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav")
	sent := readWAV(t, wav)
	r := phoneCall(t, bin, s, []string{"--play", wav, "--ice-policy", "relay"}, []string{"--tone", "600", "--ice-policy", "relay"})
	checkStats(t, "alice", r.alice, "relayed")
	checkStats(t, "bob", r.bob, "relayed")
	checkAudio(t, r, sent, 600)
	relayed := metricSum(t, s.http, "punchline_turn_relayed_bytes_total") - before
	// Both directions' RTP crossed the relay (twice, in and out, if the
	// relay counts each leg): at least what the phones received.
	media := float64(r.alice.BytesReceived + r.bob.BytesReceived)
	t.Logf("relay counted %.0f bytes; the phones received %.0f bytes of RTP", relayed, media)
	if relayed < media {
		t.Errorf("the relay counted %.0f bytes, less than the %.0f bytes of RTP the phones received", relayed, media)
	}
}

func TestPhoneFailuresSayWhyInOneLine(t *testing.T) {
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	// A relay that keeps its default and refuses loopback peers: a phone
	// restricted to it cannot reach anything on this host.
	strictRelay := phoneRelayOnly(t, bin)
	dir := t.TempDir()
	bob := phoneStart(t, "bob", bin, append(s.phoneArgs("bob", dir), "--answer", "--duration", "20s")...)
	bob.waitFor(t, "registered", 15*time.Second)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", []string{"phone", "--server", s.sip, "--user", "alice", "--password", "nope", "--call", "bob"}, "register alice@127.0.0.1"},
		{"no such user", append(s.phoneArgs("alice", dir), "--call", "nobody"), "no such user"},
		{"user offline", append(s.phoneArgs("alice", dir), "--call", "carol"), "user offline"},
		{"no call mode", []string{"phone", "--server", s.sip, "--user", "alice", "--password", "x"}, "--call TARGET, --answer or --join ROOM"},
		{"no path between the phones", []string{"phone", "--server", s.sip, "--user", "alice", "--password", phoneUsers["alice"],
			"--call", "bob", "--ice-policy", "relay", "--stun", "none", "--turn", "turn:" + strictRelay},
			"ICE failed"},
		{"relay unreachable with relay policy", []string{"phone", "--server", s.sip, "--user", "alice", "--password", phoneUsers["alice"],
			"--call", "bob", "--ice-policy", "relay", "--stun", "none", "--turn", "turn:127.0.0.1:" + strconv.Itoa(freePort(t))},
			"no relayed candidate (is the TURN server reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("exit status 0\n%s", stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, tc.want) {
				t.Errorf("last line %q does not say %q\n%s", last, tc.want, stderr.String())
			}
			t.Logf("%s -> %s", tc.name, last)
		})
	}
}

// phoneSipp returns the sipp binary, skipping (failing under
// PUNCHLINE_LAB, where CI installs it) when it is missing.
func phoneSipp(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatal("sipp (Debian sip-tester) is not installed")
		}
		t.Skip("sipp (Debian sip-tester) is not installed")
	}
	return p
}

// sippCallsBob runs one sipp call as carol to bob through s with the
// named scenario from testdata/sipp, echoing RTP, with its logs in dir.
func sippCallsBob(t *testing.T, sipp string, s *phoneServer, dir, scenario string) ([]byte, error) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "testdata", "sipp", scenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sf", path, "-s", "bob",
		"-key", "caller", "carol", "-au", "carol", "-ap", phoneUsers["carol"],
		"-rtp_echo", "-mp", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
		"-m", "1", "-d", "3000", "-nostdin", "-timeout", "40s", "-timeout_error", s.sip)
	cmd.Dir = dir // sipp writes its logs into the working directory
	return cmd.CombinedOutput()
}

// A SIP phone without ICE (sipp, with plain SDP) calls our phone through
// the proxy. sipp echoes every RTP packet it gets back to its sender, so
// our phone's recording holds the WAV it played only if our RTP reached
// the c=/m= address sipp offered and we accepted RTP coming back from it.
func TestPhoneAnswersCallerWithoutICE(t *testing.T) {
	sipp := phoneSipp(t)
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	dir := t.TempDir()
	wav := filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav")
	sent := readWAV(t, wav)
	bob := phoneStart(t, "bob", bin, append(s.phoneArgs("bob", dir), "--answer", "--duration", "30s",
		"--play", wav, "--record", filepath.Join(dir, "bob.wav"))...)
	bob.waitFor(t, "registered", 15*time.Second)

	out, err := sippCallsBob(t, sipp, s, dir, "uac_plain_rtp_echo.xml")
	if err != nil {
		t.Fatalf("sipp: %v\n%s\nbob:\n%s", err, tailLines(string(out), 30), bob.output())
	}
	if err := bob.wait(t, 10*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s", err, bob.output())
	}
	st := readPhoneStats(t, filepath.Join(dir, "bob.json"))
	t.Logf("bob: route %s, ice %v, remote %s (%s), setup %.1f ms, sent %d, received %d",
		st.Route, st.ICE, st.RemoteAddr, st.RemoteCandidateType, st.SetupMs, st.PacketsSent, st.PacketsReceived)
	if st.ICE {
		t.Error("the call with a peer without ICE claims to use ICE")
	}
	if st.PacketsSent < 100 || st.PacketsReceived < 100 {
		t.Errorf("sent %d, received %d RTP packets in a 3 s call", st.PacketsSent, st.PacketsReceived)
	}
	m := media.Match(readWAV(t, filepath.Join(dir, "bob.wav")), sent)
	t.Logf("bob's recording of sipp's echo against what bob played: score %.2f over %d windows, lag %d samples", m.Score, m.Windows, m.Lag)
	if m.Windows < 4 || m.Score < 0.8 {
		t.Errorf("the echo sipp sent back does not carry what bob played: score %.2f over %d windows", m.Score, m.Windows)
	}
}

// writeRTPPcap writes samples as a pcap of 20 ms PCMU RTP packets over
// Ethernet/IPv4/UDP, the form sipp's play_pcap_audio replays.
func writeRTPPcap(t *testing.T, path string, samples []int16) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4) // microsecond timestamps
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	b.Write(hdr)
	const frame = media.FrameSamples
	for i := 0; (i+1)*frame <= len(samples); i++ {
		payload := media.PCMU.Encode(nil, samples[i*frame:(i+1)*frame])
		rtpPkt := make([]byte, 12, 12+len(payload))
		rtpPkt[0], rtpPkt[1] = 0x80, 0 // v2, PT 0
		binary.BigEndian.PutUint16(rtpPkt[2:], uint16(1000+i))
		binary.BigEndian.PutUint32(rtpPkt[4:], uint32(8000+i*frame))
		binary.BigEndian.PutUint32(rtpPkt[8:], 0x5eed5eed)
		rtpPkt = append(rtpPkt, payload...)
		udp := make([]byte, 8, 8+len(rtpPkt))
		binary.BigEndian.PutUint16(udp[0:], 40000)
		binary.BigEndian.PutUint16(udp[2:], 40002)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(rtpPkt)))
		udp = append(udp, rtpPkt...)
		ip := make([]byte, 20, 20+len(udp))
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		ip = append(ip, udp...)
		eth := append(make([]byte, 12), 0x08, 0x00)
		pkt := append(eth, ip...)
		rec := make([]byte, 16)
		us := i * 20000
		le.PutUint32(rec[0:], uint32(us/1e6))
		le.PutUint32(rec[4:], uint32(us%1e6))
		le.PutUint32(rec[8:], uint32(len(pkt)))
		le.PutUint32(rec[12:], uint32(len(pkt)))
		b.Write(rec)
		b.Write(pkt)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sipp plays a third-party RTP stream (a pcap made from a WAV) at our
// phone; what our phone recorded must be that WAV.
func TestPhoneDecodesRTPFromCallerWithoutICE(t *testing.T) {
	sipp := phoneSipp(t)
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	dir := t.TempDir()
	sent := readWAV(t, filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav"))
	writeRTPPcap(t, filepath.Join(dir, "audio.pcap"), sent)
	bob := phoneStart(t, "bob", bin, append(s.phoneArgs("bob", dir), "--answer", "--duration", "30s",
		"--tone", "600", "--record", filepath.Join(dir, "bob.wav"))...)
	bob.waitFor(t, "registered", 15*time.Second)
	scenario, err := filepath.Abs(filepath.Join("..", "..", "testdata", "sipp", "uac_plain_rtp_pcap.xml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sf", scenario, "-s", "bob",
		"-key", "caller", "carol", "-au", "carol", "-ap", phoneUsers["carol"],
		"-mp", strconv.Itoa(freePort(t)), "-mi", "127.0.0.1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t)),
		"-m", "1", "-d", "3000", "-nostdin", "-timeout", "40s", "-timeout_error", s.sip)
	cmd.Dir = dir // audio.pcap is read from, and logs written to, the working directory
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sipp: %v\n%s\nbob:\n%s", err, tailLines(string(out), 30), bob.output())
	}
	if err := bob.wait(t, 10*time.Second); err != nil {
		t.Fatalf("bob: %v\n%s", err, bob.output())
	}
	st := readPhoneStats(t, filepath.Join(dir, "bob.json"))
	t.Logf("bob: route %s, ice %v, remote %s (%s), received %d, lost %d", st.Route, st.ICE, st.RemoteAddr, st.RemoteCandidateType, st.PacketsReceived, st.PacketsLost)
	m := media.Match(readWAV(t, filepath.Join(dir, "bob.wav")), sent)
	t.Logf("bob's recording against the WAV in sipp's pcap: score %.2f over %d windows", m.Score, m.Windows)
	if m.Windows < 4 || m.Score < 0.8 {
		t.Errorf("bob did not play out sipp's RTP: score %.2f over %d windows", m.Score, m.Windows)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

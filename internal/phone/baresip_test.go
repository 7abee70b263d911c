package phone_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/internal/phone/phonetest"
	"github.com/punchline/punchline/media"
)

// baresipNetnsEnv carries the address of the namespace's interface to the
// re-executed test binary running inside it.
const baresipNetnsEnv = "PUNCHLINE_BARESIP_NETNS_ADDR"

// baresipAddr is the address of the veth interface in the namespace. The
// namespace has no link anywhere: nothing leaves it.
const baresipAddr = "10.213.0.1"

// Interop with a real SDES-SRTP softphone, baresip (Debian's baresip-core):
// it answers our calls with srtp-mand (RTP/SAVP) and best-effort srtp, and
// calls us with srtp-mand. Each call must come up encrypted on both ends
// (baresip logs "SRTP is Enabled", we report the suite), and the audio
// must survive: our recording of what baresip plays (a speech WAV)
// correlates with the file, and baresip's own dump of what it decoded
// from us holds our tone.
//
// baresip ignores loopback interfaces, so the test runs in a network
// namespace of its own with one veth interface: the test binary re-runs
// itself there (root needed).
func TestSRTPInteropWithBaresip(t *testing.T) {
	if addr := os.Getenv(baresipNetnsEnv); addr != "" {
		runBaresipInterop(t, addr)
		return
	}
	need := func(why string) {
		t.Helper()
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("baresip"); err != nil {
		need("baresip (Debian baresip-core) is not installed")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		need("ip (iproute2) is not installed")
	}
	if os.Geteuid() != 0 {
		need("needs root to create a network namespace")
	}
	ns := fmt.Sprintf("plsrtp%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ip("-n", ns, "addr", "add", baresipAddr+"/24", "dev", "v0")
	ip("-n", ns, "link", "set", "v0", "up")
	ip("-n", ns, "link", "set", "v1", "up")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0],
		"-test.run", "^TestSRTPInteropWithBaresip$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), baresipNetnsEnv+"="+baresipAddr)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the interop run failed: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestSRTPInteropWithBaresip")) {
		t.Fatal("the interop run did not pass (skipped?)")
	}
}

// baresip is one running baresip process with its output collected.
type baresip struct {
	cmd  *exec.Cmd
	dir  string
	done chan struct{}

	mu  sync.Mutex
	out bytes.Buffer
}

func (b *baresip) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

func (b *baresip) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

func (b *baresip) waitFor(t *testing.T, what string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(b.output(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("baresip did not say %q within %v:\n%s", what, d, b.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBaresip runs baresip as bob with the given media encryption, auto
// answer, the speech WAV as its audio source and a dump of what it hears
// and sends, and extra -e commands.
func startBaresip(t *testing.T, srv *phonetest.Server, addr, mediaenc string, commands ...string) *baresip {
	t.Helper()
	dir := t.TempDir()
	wav, err := filepath.Abs(filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	config := strings.Join([]string{
		"poll_method epoll",
		"sip_listen " + addr + ":5070",
		"audio_source aufile," + wav,
		"audio_player aufile,/dev/null",
		"audio_alert aufile,/dev/null",
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module aufile.so",
		"module sndfile.so",
		"module srtp.so",
		"module_app account.so",
		"module_app menu.so",
		"snd_path " + dir,
		"",
	}, "\n")
	account := fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;outbound=\"sip:%s\";answermode=auto;mediaenc=%s;regint=600\n",
		addr, phonetest.Password("bob"), srv.SIPAddr, mediaenc)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", dir}
	for _, c := range commands {
		args = append(args, "-e", c)
	}
	b := &baresip{dir: dir, done: make(chan struct{})}
	b.cmd = exec.Command("baresip", args...)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		// SIGINT lets baresip unregister, so the next one is bob's only
		// binding.
		_ = b.cmd.Process.Signal(os.Interrupt)
		select {
		case <-b.done:
		case <-time.After(5 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		if t.Failed() {
			t.Logf("baresip:\n%s", b.output())
		}
	})
	return b
}

func runBaresipInterop(t *testing.T, addr string) {
	srv := phonetest.StartWith(t, []string{"alice", "bob"}, nil, phonetest.Options{
		Addr: addr,
		// baresip 1.0's digest code gives up ("Function not
		// implemented") when a challenge offers SHA-256 besides MD5.
		Algorithms: []string{"MD5"},
	})
	sent, err := media.ReadWAVFile(filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		mediaenc string
		ours     phone.SRTPMode
		dials    bool // baresip calls us
	}{
		{"baresip srtp-mand answers our default call", "srtp-mand", phone.SRTPOptional, false},
		{"baresip best-effort srtp answers our mandatory call", "srtp", phone.SRTPMandatory, false},
		{"baresip best-effort srtp answers our default call", "srtp", phone.SRTPOptional, false},
		{"baresip srtp-mand calls us", "srtp-mand", phone.SRTPOptional, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := srv.PhoneConfig("alice")
			cfg.LocalIP, cfg.SRTP = net.ParseIP(addr), tc.ours
			alice := srv.NewPhone(t, cfg)
			var heard media.Recording
			opts := phone.MediaOptions{Source: media.NewToneSource(440, 0), Sink: &heard}
			var (
				call *phone.Call
				b    *baresip
			)
			if tc.dials {
				answered := make(chan error, 1)
				go func() {
					var err error
					call, err = alice.Answer(ctxFor(t, 30*time.Second), opts)
					answered <- err
				}()
				b = startBaresip(t, srv, addr, tc.mediaenc, "/dial sip:alice@"+addr)
				if err := <-answered; err != nil {
					t.Fatal(err)
				}
			} else {
				b = startBaresip(t, srv, addr, tc.mediaenc)
				b.waitFor(t, "200 OK (punchline) [1 binding]", 10*time.Second)
				var err error
				if call, err = alice.Call(ctxFor(t, 30*time.Second), "bob", opts); err != nil {
					t.Fatalf("%v\nbaresip:\n%s", err, b.output())
				}
			}
			defer call.Hangup(context.Background())
			// baresip hangs up when its 2 s WAV ends.
			waitFor(t, 15*time.Second, "baresip's WAV", func() bool {
				return call.Stats().PacketsReceived >= 90
			})
			select {
			case <-call.Done():
			case <-time.After(10 * time.Second):
				t.Error("baresip did not hang up at the end of its WAV")
			}
			st := call.Stats()
			t.Logf("media %s, route %s (ice %v), received %d packets, %d decrypted, %d auth failures",
				st.Encryption, st.Route, st.ICE, st.PacketsReceived, st.Unprotected, st.AuthFailures)
			if !strings.HasPrefix(st.Encryption, "srtp ") || st.Unprotected < 90 || st.AuthFailures != 0 {
				t.Errorf("call not encrypted or not decrypting: %q, %+v", st.Encryption, st.SRTPStats)
			}
			m := media.Match(heard.Samples(), sent)
			t.Logf("our recording of baresip's WAV: score %.2f over %d windows", m.Score, m.Windows)
			if m.Windows < 4 || m.Score < 0.8 {
				t.Errorf("what we heard from baresip is not its WAV: score %.2f over %d windows", m.Score, m.Windows)
			}
			if !strings.Contains(b.output(), "SRTP is Enabled") {
				t.Error("baresip does not say SRTP is enabled")
			}
			// What baresip decrypted and decoded from us: our tone.
			dumps, _ := filepath.Glob(filepath.Join(b.dir, "dump-*-dec.wav"))
			if len(dumps) != 1 {
				t.Fatalf("baresip's decode dumps: %q", dumps)
			}
			var dec []int16
			deadline := time.Now().Add(5 * time.Second)
			for {
				dec, err = media.ReadWAVFile(dumps[0])
				if err == nil && len(dec) >= media.SampleRate {
					break
				}
				if time.Now().After(deadline) {
					fi, _ := os.Stat(dumps[0])
					t.Fatalf("baresip's dump %s: %d samples, %v (%d bytes)", dumps[0], len(dec), err, fi.Size())
				}
				time.Sleep(50 * time.Millisecond)
			}
			tail := dec[len(dec)-media.SampleRate/2:]
			if tones := media.DetectTones(tail, []float64{440, 1000}, 0); len(tones) != 1 || tones[0] != 440 {
				t.Errorf("baresip heard %v Hz from us, want [440]", tones)
			}
		})
	}
}

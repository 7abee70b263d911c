package main

// End-to-end tests of `punchline phone --srtp`: encrypted media between
// punchline phones, and what happens with phones that do not encrypt.

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/punchline/punchline/media"
)

const mtiSuite = "AES_CM_128_HMAC_SHA1_80"

// Two punchline phones encrypt their media: by default (optional on both
// sides) on the direct path, and with --srtp mandatory through the relay.
// The audio arrives as before (the WAV correlates, the tone is heard), the
// routes are what they must be, and both phones say the call is SRTP.
func TestPhoneSRTPCallsCarryAudio(t *testing.T) {
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	wav := filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav")
	sent := readWAV(t, wav)
	for _, tc := range []struct {
		name       string
		alice, bob []string
		route      string
	}{
		{"default settings, direct", nil, nil, "direct"},
		{"mandatory caller, relay policy", []string{"--srtp", "mandatory", "--ice-policy", "relay"},
			[]string{"--ice-policy", "relay"}, "relayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := phoneCall(t, bin, s, append([]string{"--play", wav}, tc.alice...), append([]string{"--tone", "600"}, tc.bob...))
			checkStats(t, "alice", r.alice, tc.route)
			checkStats(t, "bob", r.bob, tc.route)
			checkAudio(t, r, sent, 600)
			for who, out := range map[string]string{"alice": r.aliceOut, "bob": r.bobOut} {
				if !strings.Contains(out, "media: srtp "+mtiSuite) {
					t.Errorf("%s does not say the call was encrypted:\n%s", who, out)
				}
			}
			for who, st := range map[string]struct {
				enc                     string
				unprot, fails, replayed uint64
			}{
				"alice": {r.alice.Encryption, r.alice.Unprotected, r.alice.AuthFailures, r.alice.Replays},
				"bob":   {r.bob.Encryption, r.bob.Unprotected, r.bob.AuthFailures, r.bob.Replays},
			} {
				if st.enc != "srtp "+mtiSuite || st.unprot < 100 || st.fails != 0 || st.replayed != 0 {
					t.Errorf("%s: media_encryption %q, %d packets decrypted, %d auth failures, %d replays",
						who, st.enc, st.unprot, st.fails, st.replayed)
				}
			}
		})
	}
}

// A phone that requires SRTP and one that turned it off cannot talk: the
// callee refuses with 488 and both say why in their last line.
func TestPhoneSRTPMandatoryAgainstPlainSaysWhy(t *testing.T) {
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	dir := t.TempDir()
	bob := phoneStart(t, "bob", bin, append(s.phoneArgs("bob", dir), "--answer", "--duration", "20s", "--srtp", "mandatory")...)
	bob.waitFor(t, "registered", 15*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(s.phoneArgs("alice", dir), "--call", "bob", "--srtp", "off")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("alice: exit status 0\n%s", stderr.String())
	}
	last := lastLine(stderr.String())
	t.Logf("alice -> %s", last)
	if !strings.Contains(last, "488") || !strings.Contains(last, "SRTP required") || !strings.Contains(last, "--srtp off") {
		t.Errorf("alice's last line %q does not say 488, SRTP required and our --srtp off", last)
	}
	if err := bob.wait(t, 10*time.Second); err == nil {
		t.Errorf("bob exited 0 after refusing the call\n%s", bob.output())
	}
	last = lastLine(bob.output())
	t.Logf("bob -> %s", last)
	if !strings.Contains(last, "requires SRTP") {
		t.Errorf("bob's last line %q does not say it requires SRTP", last)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A plain SIP phone (sipp, RTP/AVP without a=crypto) calls our phone: with
// the default --srtp optional the call works unencrypted and says so (the
// echo sipp sends back carries what we played); with --srtp mandatory sipp
// gets 488 (its scenario expects exactly that).
func TestPhoneSRTPWithPlainSipp(t *testing.T) {
	sipp := phoneSipp(t)
	bin := buildPunchline(t)
	s := phoneServe(t, bin, false)
	wav := filepath.Join("..", "..", "testdata", "audio", "speech-8k.wav")
	sent := readWAV(t, wav)
	for _, tc := range []struct {
		mode, scenario string
	}{
		{"optional", "uac_plain_rtp_echo.xml"},
		{"mandatory", "uac_plain_expect_488.xml"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			bob := phoneStart(t, "bob", bin, append(s.phoneArgs("bob", dir), "--answer", "--duration", "30s",
				"--play", wav, "--record", filepath.Join(dir, "bob.wav"), "--srtp", tc.mode)...)
			bob.waitFor(t, "registered", 15*time.Second)
			out, err := sippCallsBob(t, sipp, s, dir, tc.scenario)
			if err != nil {
				t.Fatalf("sipp: %v\n%s\nbob:\n%s", err, tailLines(string(out), 30), bob.output())
			}
			berr := bob.wait(t, 10*time.Second)
			if tc.mode == "mandatory" {
				if berr == nil || !strings.Contains(lastLine(bob.output()), "requires SRTP") {
					t.Errorf("bob: %v, last line %q: want a failure saying it requires SRTP", berr, lastLine(bob.output()))
				}
				return
			}
			if berr != nil {
				t.Fatalf("bob: %v\n%s", berr, bob.output())
			}
			st := readPhoneStats(t, filepath.Join(dir, "bob.json"))
			if st.Encryption != "none" || st.Protected != 0 || !strings.Contains(bob.output(), "media: unencrypted RTP") {
				t.Errorf("plain call reported as %q (%d packets protected)\n%s", st.Encryption, st.Protected, bob.output())
			}
			m := media.Match(readWAV(t, filepath.Join(dir, "bob.wav")), sent)
			t.Logf("sipp's echo of what bob played: score %.2f over %d windows", m.Score, m.Windows)
			if m.Windows < 4 || m.Score < 0.8 {
				t.Errorf("the echo does not carry what bob played: score %.2f over %d windows", m.Score, m.Windows)
			}
		})
	}
}

// Conference media is not encrypted yet: asking for SRTP only and joining
// a room is refused before anything is sent, and a bad --srtp value too.
func TestPhoneSRTPFlagIsChecked(t *testing.T) {
	bin := buildPunchline(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--join", "standup", "--srtp", "mandatory"}, "conferences (--join) carry plain RTP"},
		{[]string{"--call", "bob", "--srtp", "sometimes"}, "want off, optional or mandatory"},
	} {
		cmd := exec.Command(bin, append([]string{"phone", "--server", "127.0.0.1:1", "--user", "alice", "--password", "x"}, tc.args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Errorf("%v: exit status 0", tc.args)
		}
		if last := lastLine(stderr.String()); !strings.Contains(last, tc.want) {
			t.Errorf("%v: last line %q does not say %q", tc.args, last, tc.want)
		}
	}
}

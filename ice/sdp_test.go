package ice_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/punchline/punchline/ice"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "sdp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sampleWant is what each softphone sample must yield.
type sampleWant struct {
	file           string
	hasICE         bool
	ufrag, pwd     string
	candidates     int // component-1 and -2 a=candidate lines of the audio stream
	addr           string
	port           int
	defaultMatches bool
	te             uint8
	rtcpMux        bool
	dir            ice.Direction
	codec          string // what Negotiate picks
	others         int
	lite           bool
}

var samples = []sampleWant{
	{file: "baresip-offer.sdp", hasICE: true, ufrag: "Kj3f", pwd: "Xq0p9aWs2LmN7cB4vR8tY1zD", candidates: 2,
		addr: "198.51.100.31", port: 16482, defaultMatches: true, te: 101, rtcpMux: true, dir: ice.SendRecv, codec: "PCMU"},
	{file: "linphone-offer.sdp", hasICE: true, ufrag: "c94e01a3", pwd: "7a2e9c04d15b83f6e0c1a7d2", candidates: 4,
		addr: "203.0.113.92", port: 7078, defaultMatches: true, te: 100, rtcpMux: false, dir: ice.SendRecv, codec: "PCMU"},
	{file: "pjsip-offer.sdp", hasICE: true, ufrag: "4ac73b1e", pwd: "6f0d92a85c3e17b4", candidates: 6,
		addr: "192.0.2.140", port: 4002, defaultMatches: true, te: 96, rtcpMux: false, dir: ice.SendRecv, codec: "PCMU"},
	{file: "pjsip-reinvite-after-ice.sdp", hasICE: true, ufrag: "4ac73b1e", pwd: "6f0d92a85c3e17b4", candidates: 2,
		addr: "172.16.8.40", port: 4002, defaultMatches: true, te: 96, rtcpMux: false, dir: ice.SendRecv, codec: "PCMU"},
	{file: "browser-offer.sdp", hasICE: true, ufrag: "yP7m", pwd: "Qw3kz8LZtF1nVb6Rc0Ys5HxJ", candidates: 4,
		addr: "198.51.100.64", port: 61942, defaultMatches: true, te: 126, rtcpMux: true, dir: ice.SendRecv, codec: "PCMU"},
	{file: "plain-phone-offer.sdp", addr: "192.168.20.77", port: 11780, te: 101, dir: ice.SendRecv, codec: "PCMU"},
	{file: "plain-phone-hold.sdp", addr: "192.168.20.77", port: 11780, te: 101, dir: ice.SendOnly, codec: "PCMA"},
	{file: "sipp-offer.sdp", addr: "127.0.0.1", port: 6000, dir: ice.SendRecv, codec: "PCMU"},
	{file: "video-and-audio-offer.sdp", addr: "10.1.1.9", port: 7078, te: 101, dir: ice.Inactive, codec: "PCMA", others: 1},
	// SDES-SRTP offers (a=crypto; see crypto_test.go for their answers).
	{file: "baresip-srtp-offer.sdp", hasICE: true, ufrag: "Pq7e", pwd: "Lm3n8bVc1xZa6sDf0gHj4kQw", candidates: 2,
		addr: "198.51.100.31", port: 16490, defaultMatches: true, te: 101, rtcpMux: true, dir: ice.SendRecv, codec: "PCMU"},
	{file: "baresip-srtp-mand-offer.sdp", addr: "192.168.178.31", port: 16496, te: 101, rtcpMux: true, dir: ice.SendRecv, codec: "PCMU"},
	{file: "linphone-srtp-offer.sdp", hasICE: true, ufrag: "7d31c0ae", pwd: "1be07a4c2d9f63e85a0b71c4", candidates: 4,
		addr: "203.0.113.92", port: 7078, defaultMatches: true, te: 100, dir: ice.SendRecv, codec: "PCMU"},
	{file: "pjsip-srtp-optional-offer.sdp", hasICE: true, ufrag: "5bd20f9e", pwd: "2c7e0a41d93f86b5", candidates: 4,
		addr: "192.0.2.140", port: 4012, defaultMatches: true, te: 96, dir: ice.SendRecv, codec: "PCMU"},
	{file: "sdes-offer-unusual-lines.sdp", addr: "172.16.8.40", port: 4010, te: 96, dir: ice.SendRecv, codec: "PCMU"},
}

func TestParseSoftphoneSamples(t *testing.T) {
	for _, w := range samples {
		t.Run(w.file, func(t *testing.T) {
			d, err := ice.Parse(readSample(t, w.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkSample(t, d, w)
		})
	}
}

func checkSample(t *testing.T, d *ice.Description, w sampleWant) {
	t.Helper()
	if d.HasICE() != w.hasICE {
		t.Errorf("HasICE = %v, want %v", d.HasICE(), w.hasICE)
	}
	if d.Ufrag != w.ufrag || d.Pwd != w.pwd {
		t.Errorf("credentials = %q/%q, want %q/%q", d.Ufrag, d.Pwd, w.ufrag, w.pwd)
	}
	if len(d.Candidates) != w.candidates {
		t.Errorf("%d candidates, want %d", len(d.Candidates), w.candidates)
	}
	if d.Address != w.addr || d.Port != w.port {
		t.Errorf("default address %s:%d, want %s:%d", d.Address, d.Port, w.addr, w.port)
	}
	if w.hasICE && d.DefaultMatches() != w.defaultMatches {
		t.Errorf("DefaultMatches = %v, want %v", d.DefaultMatches(), w.defaultMatches)
	}
	if d.TelephoneEvent != w.te {
		t.Errorf("telephone-event PT %d, want %d", d.TelephoneEvent, w.te)
	}
	if d.RTCPMux != w.rtcpMux {
		t.Errorf("rtcp-mux = %v, want %v", d.RTCPMux, w.rtcpMux)
	}
	if d.Direction != w.dir {
		t.Errorf("direction %q, want %q", d.Direction, w.dir)
	}
	if len(d.Other) != w.others {
		t.Errorf("%d other m-lines, want %d", len(d.Other), w.others)
	}
	if d.Lite != w.lite {
		t.Errorf("lite = %v", d.Lite)
	}
	c, err := ice.Negotiate(d.Codecs)
	if err != nil {
		t.Fatalf("Negotiate: %v", err)
	}
	if c.Name != w.codec {
		t.Errorf("negotiated %s, want %s", c.Name, w.codec)
	}
	for _, raw := range d.Candidates {
		if _, err := ice.ParseCandidate(raw); err != nil {
			t.Errorf("candidate %q: %v", raw, err)
		}
	}
}

// TestSamplesRoundTrip parses each sample, writes it with Marshal and
// parses the result: everything a phone uses must survive.
func TestSamplesRoundTrip(t *testing.T) {
	for _, w := range samples {
		t.Run(w.file, func(t *testing.T) {
			d, err := ice.Parse(readSample(t, w.file))
			if err != nil {
				t.Fatal(err)
			}
			body, err := d.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			d2, err := ice.Parse(body)
			if err != nil {
				t.Fatalf("re-Parse: %v\n%s", err, body)
			}
			checkSample(t, d2, w)
			if !slices.Equal(d.Codecs, d2.Codecs) {
				t.Errorf("codecs changed:\n%+v\n%+v", d.Codecs, d2.Codecs)
			}
			if !slices.Equal(d.Candidates, d2.Candidates) {
				t.Errorf("candidates changed:\n%q\n%q", d.Candidates, d2.Candidates)
			}
			if len(d.Crypto) != len(d2.Crypto) {
				t.Errorf("%d a=crypto lines became %d", len(d.Crypto), len(d2.Crypto))
			} else {
				for i := range d.Crypto {
					if d.Crypto[i].Value() != d2.Crypto[i].Value() {
						t.Errorf("a=crypto %d changed: %v -> %v", i, d.Crypto[i], d2.Crypto[i])
					}
				}
			}
			if d.Proto != d2.Proto {
				t.Errorf("m= profile %s became %s", d.Proto, d2.Proto)
			}
			if d.RTCPPort != d2.RTCPPort || d.RTCPAddress != d2.RTCPAddress {
				t.Errorf("a=rtcp changed: %d %q -> %d %q", d.RTCPPort, d.RTCPAddress, d2.RTCPPort, d2.RTCPAddress)
			}
			if d.SessionID != d2.SessionID || d.SessionVersion != d2.SessionVersion || d.AudioIndex != d2.AudioIndex {
				t.Errorf("origin or audio index changed")
			}
		})
	}
}

func TestPionCandidateRoundTripOnSamples(t *testing.T) {
	for _, w := range samples {
		d, err := ice.Parse(readSample(t, w.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range d.Candidates {
			m, err := ice.MarshalCandidate(raw)
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			a, _ := ice.ParseCandidate(raw)
			b, err := ice.ParseCandidate(m)
			if err != nil || a != b {
				t.Errorf("%s: %q -> %q: %+v != %+v (%v)", w.file, raw, m, a, b, err)
			}
		}
	}
}

func TestOurOfferRoundTrips(t *testing.T) {
	local := ice.Local{
		Ufrag: "abcdEFGH", Pwd: "0123456789abcdefghijkl",
		Candidates: []string{
			"1 1 udp 2130706431 192.168.1.10 40000 typ host",
			"2 1 udp 1694498815 198.51.100.1 40000 typ srflx raddr 192.168.1.10 rport 40000",
			"3 1 udp 16777215 203.0.113.5 50000 typ relay raddr 198.51.100.1 rport 40000",
		},
	}
	d := ice.NewAudio()
	if err := d.SetICE(local); err != nil {
		t.Fatal(err)
	}
	// RFC 8445 §5.1.4: the relayed candidate is the default.
	if d.Address != "203.0.113.5" || d.Port != 50000 {
		t.Fatalf("default %s:%d, want the relayed candidate", d.Address, d.Port)
	}
	body, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"m=audio 50000 RTP/AVP 0 8 101\r\n", "c=IN IP4 203.0.113.5\r\n",
		"a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:8 PCMA/8000\r\n", "a=rtpmap:101 telephone-event/8000\r\n",
		"a=fmtp:101 0-16\r\n", "a=ptime:20\r\n", "a=sendrecv\r\n", "a=rtcp-mux\r\n",
		"a=ice-ufrag:abcdEFGH\r\n", "a=ice-pwd:0123456789abcdefghijkl\r\n",
		"a=candidate:3 1 udp 16777215 203.0.113.5 50000 typ relay raddr 198.51.100.1 rport 40000\r\n",
		"a=end-of-candidates\r\n",
	} {
		if !bytes.Contains(body, []byte(line)) {
			t.Errorf("offer lacks %q:\n%s", line, body)
		}
	}
	p, err := ice.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasICE() || !p.DefaultMatches() || !p.EndOfCandidates || !slices.Equal(p.Candidates, local.Candidates) {
		t.Errorf("parsed offer lost ICE: %+v", p)
	}
	if p.SessionID != d.SessionID || p.SessionVersion != d.SessionVersion {
		t.Errorf("origin changed")
	}
}

func TestDefaultCandidatePreference(t *testing.T) {
	host := "1 1 udp 2130706431 10.0.0.1 1000 typ host"
	host2 := "1 1 udp 2130706000 10.0.0.2 1001 typ host"
	srflx := "2 1 udp 1694498815 198.51.100.1 2000 typ srflx raddr 10.0.0.1 rport 1000"
	mdns := "3 1 udp 2130706431 abc.local 3000 typ host"
	rtcp := "4 2 udp 16777214 203.0.113.9 4001 typ relay"
	tcp := "5 1 tcp 16777214 203.0.113.9 4002 typ relay tcptype passive"
	for _, tc := range []struct {
		name  string
		cands []string
		want  string
		ok    bool
	}{
		{"host only picks the highest priority", []string{host2, host}, "10.0.0.1", true},
		{"srflx beats host", []string{host, srflx}, "198.51.100.1", true},
		{"mdns, rtcp and tcp candidates never default", []string{mdns, rtcp, tcp, host}, "10.0.0.1", true},
		{"nothing usable", []string{mdns, "junk"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := ice.DefaultCandidate(tc.cands)
			if ok != tc.ok || c.Address != tc.want {
				t.Fatalf("got %q %v, want %q %v", c.Address, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	local := ice.NewAudio()
	if err := local.SetICE(ice.Local{Ufrag: "uf12", Pwd: "0123456789abcdefghijkl",
		Candidates: []string{"1 1 udp 2130706431 10.9.9.9 30000 typ host"}}); err != nil {
		t.Fatal(err)
	}
	t.Run("browser offer needs DTLS-SRTP: refused", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "browser-offer.sdp"))
		if _, err := ice.NewAnswer(offer, local); !errors.Is(err, ice.ErrUnsupportedTransport) {
			t.Fatalf("err = %v, want ErrUnsupportedTransport", err)
		}
	})
	t.Run("linphone offer keeps its telephone-event PT and ICE", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "linphone-offer.sdp"))
		ans, err := ice.NewAnswer(offer, local)
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Codecs) != 2 || !ans.Codecs[0].IsPCMU() || ans.Codecs[1].PT != 100 || ans.TelephoneEvent != 100 {
			t.Errorf("codecs %+v te %d", ans.Codecs, ans.TelephoneEvent)
		}
		// linphone did not offer rtcp-mux: the answer must not claim it.
		if !ans.HasICE() || ans.RTCPMux || ans.Proto != "RTP/AVP" {
			t.Errorf("answer %+v", ans)
		}
	})
	t.Run("baresip offer: mux kept, PCMU picked after opus and G722", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "baresip-offer.sdp"))
		ans, err := ice.NewAnswer(offer, local)
		if err != nil {
			t.Fatal(err)
		}
		if !ans.Codecs[0].IsPCMU() || !ans.RTCPMux || ans.PTime != 20 {
			t.Errorf("answer %+v", ans)
		}
	})
	t.Run("pjsip's a=rtcp is read", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "pjsip-offer.sdp"))
		if offer.RTCPPort != 4003 || offer.RTCPAddress != "192.0.2.140" {
			t.Errorf("a=rtcp read as %d %q", offer.RTCPPort, offer.RTCPAddress)
		}
		lin, _ := ice.Parse(readSample(t, "linphone-offer.sdp"))
		if lin.RTCPPort != 7079 || lin.RTCPAddress != "" {
			t.Errorf("linphone a=rtcp read as %d %q", lin.RTCPPort, lin.RTCPAddress)
		}
	})
	t.Run("plain phone gets no ICE and no rtcp-mux", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "plain-phone-offer.sdp"))
		ans, err := ice.NewAnswer(offer, local)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := ans.Marshal()
		if ans.HasICE() || ans.RTCPMux || bytes.Contains(body, []byte("a=ice-")) || bytes.Contains(body, []byte("a=candidate")) {
			t.Errorf("answer to a non-ICE offer carries ICE:\n%s", body)
		}
	})
	t.Run("hold offer is answered recvonly", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "plain-phone-hold.sdp"))
		if !offer.OnHold() {
			t.Error("sendonly offer not seen as hold")
		}
		ans, err := ice.NewAnswer(offer, local)
		if err != nil {
			t.Fatal(err)
		}
		if ans.Direction != ice.RecvOnly || !ans.Codecs[0].IsPCMA() {
			t.Errorf("direction %s codec %+v", ans.Direction, ans.Codecs[0])
		}
	})
	t.Run("video line is rejected in place", func(t *testing.T) {
		offer, _ := ice.Parse(readSample(t, "video-and-audio-offer.sdp"))
		ans, err := ice.NewAnswer(offer, local)
		if err != nil {
			t.Fatal(err)
		}
		body, err := ans.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s := string(body)
		v, a := strings.Index(s, "m=video 0 RTP/AVP 96"), strings.Index(s, "m=audio 30000 ")
		if v < 0 || a < 0 || v > a {
			t.Errorf("want the rejected video line before audio:\n%s", s)
		}
		if ans.Direction != ice.Inactive {
			t.Errorf("direction %s", ans.Direction)
		}
	})
	t.Run("no common codec", func(t *testing.T) {
		offer := &ice.Description{Codecs: []ice.Codec{{PT: 96, Name: "opus", Rate: 48000, Channels: 2}}}
		if _, err := ice.NewAnswer(offer, local); !errors.Is(err, ice.ErrNoCommonCodec) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestParseRejectsBadBodies(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		err  error
	}{
		{"empty", "", ice.ErrBadSDP},
		{"not sdp", "INVITE sip:bob SIP/2.0\r\n", ice.ErrBadSDP},
		{"no audio", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n", ice.ErrNoAudio},
		{"no c= anywhere", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", ice.ErrBadSDP},
		{"huge", "v=0\r\n" + strings.Repeat("a=x\r\n", 20000), ice.ErrBadSDP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ice.Parse([]byte(tc.body)); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestMarshalRejectsIncomplete(t *testing.T) {
	d := ice.NewAudio()
	if _, err := d.Marshal(); !errors.Is(err, ice.ErrIncomplete) {
		t.Fatalf("err = %v", err)
	}
	if err := d.SetICE(ice.Local{Ufrag: "a", Pwd: "b"}); !errors.Is(err, ice.ErrIncomplete) {
		t.Fatalf("SetICE without candidates = %v", err)
	}
}

func TestReinviteAfterICEIsNotARestart(t *testing.T) {
	first, err := ice.Parse(readSample(t, "pjsip-offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := ice.Parse(readSample(t, "pjsip-reinvite-after-ice.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Restarts(first) {
		t.Error("pjsip's post-ICE re-INVITE read as an ICE restart")
	}
	if again.SessionVersion != first.SessionVersion+1 {
		t.Errorf("session version %d after %d", again.SessionVersion, first.SessionVersion)
	}
	restarted := *again
	restarted.Ufrag = "n3wufrag"
	if !restarted.Restarts(first) {
		t.Error("new ufrag not read as a restart")
	}
}

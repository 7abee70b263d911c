package phone_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/internal/phone/phonetest"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip/ua"
)

// tap is a UDP forwarder in front of the TURN relay that keeps a copy of
// every datagram it carries, both ways: the wire between the phones and
// the relay, which is where an eavesdropper on either phone's network, or
// the relay's operator, sees the media.
type tap struct {
	ln    *net.UDPConn
	relay *net.UDPAddr
	wg    sync.WaitGroup
	// mangle, if set, turns each datagram from the relay to a phone into
	// the datagrams to deliver instead (an attacker on the path).
	mangle func(b []byte) [][]byte

	mu       sync.Mutex // guards the fields below
	upstream map[string]*net.UDPConn
	seen     [][]byte
	closed   bool
}

func newTap(t *testing.T, relay string, mangle func([]byte) [][]byte) *tap {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp4", relay)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{ln: ln, relay: ra, upstream: map[string]*net.UDPConn{}, mangle: mangle}
	tp.wg.Add(1)
	go tp.fromClients()
	t.Cleanup(tp.close)
	return tp
}

func (tp *tap) addr() string { return tp.ln.LocalAddr().String() }

// callThroughTap sets up a call from alice (440 Hz) to bob (1000 Hz), both
// forced onto the relay through tp, with the given SRTP mode; bobHeard
// records what bob hears.
func callThroughTap(t *testing.T, srv *phonetest.Server, tp *tap, mode phone.SRTPMode) (ac, bc *phone.Call, bobHeard *media.Recording) {
	t.Helper()
	acfg, bcfg := srv.PhoneConfig("alice"), srv.PhoneConfig("bob")
	for _, c := range []*phone.Config{&acfg, &bcfg} {
		c.STUN, c.TURN = []string{}, []string{"turn:" + tp.addr() + "?transport=udp"}
		c.ICEPolicy = ice.PolicyRelay
		c.SRTP = mode
	}
	alice := srv.NewPhone(t, acfg)
	bob := srv.NewPhone(t, bcfg)
	bobHeard = &media.Recording{}
	ac, bc = dial(t, alice, bob,
		phone.MediaOptions{Source: media.NewToneSource(440, 0)},
		phone.MediaOptions{Source: media.NewToneSource(1000, 0), Sink: bobHeard})
	return ac, bc, bobHeard
}

// maxCaptured bounds the capture: a few seconds of two calls' worth.
const maxCaptured = 20000

func (tp *tap) keep(b []byte) {
	tp.mu.Lock()
	if len(tp.seen) < maxCaptured {
		tp.seen = append(tp.seen, slices.Clone(b))
	}
	tp.mu.Unlock()
}

func (tp *tap) fromClients() {
	defer tp.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := tp.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		tp.keep(buf[:n])
		tp.mu.Lock()
		up, ok := tp.upstream[from.String()]
		if !ok && !tp.closed {
			if up, err = net.DialUDP("udp4", nil, tp.relay); err == nil {
				tp.upstream[from.String()] = up
				tp.wg.Add(1)
				go tp.fromRelay(up, from)
			}
		}
		tp.mu.Unlock()
		if up != nil {
			_, _ = up.Write(buf[:n])
		}
	}
}

func (tp *tap) fromRelay(up *net.UDPConn, client *net.UDPAddr) {
	defer tp.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP refusals while a phone is gone
		}
		tp.keep(buf[:n])
		out := [][]byte{buf[:n]}
		if tp.mangle != nil {
			out = tp.mangle(buf[:n])
		}
		for _, d := range out {
			_, _ = tp.ln.WriteToUDP(d, client)
		}
	}
}

func (tp *tap) close() {
	tp.mu.Lock()
	tp.closed = true
	for _, up := range tp.upstream {
		up.Close()
	}
	tp.mu.Unlock()
	tp.ln.Close()
	tp.wg.Wait()
}

func (tp *tap) captured() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.seen)
}

// plaintextWindows returns 24-byte pieces of what a 440 Hz tone source
// sends as PCMU payloads: any of them on the wire means audio in clear.
// (8.8 periods per 20 ms frame: the frames repeat every five.)
func plaintextWindows() map[string]bool {
	src := media.NewToneSource(440, 0)
	frame := make([]int16, media.FrameSamples)
	out := map[string]bool{}
	for i := 0; i < 50; i++ {
		_ = src.ReadFrame(frame)
		enc := media.PCMU.Encode(nil, frame)
		for off := 0; off+24 <= len(enc); off += 24 {
			out[string(enc[off:off+24])] = true
		}
	}
	return out
}

// plaintextHits counts captured datagrams holding a piece of the tone's
// PCMU payload.
func plaintextHits(capture [][]byte, windows map[string]bool) int {
	hits := 0
	for _, d := range capture {
		for off := 0; off+24 <= len(d); off++ {
			if windows[string(d[off:off+24])] {
				hits++
				break
			}
		}
	}
	return hits
}

// Two punchline phones call through the relay (relay-only policy), with
// everything between them and the relay captured. With SRTP (the default)
// the tone arrives and not one captured datagram holds a piece of it;
// with --srtp off the same capture finds it, so the check can see
// plaintext when there is some.
func TestSRTPCallThroughRelayCarriesOnlyCiphertext(t *testing.T) {
	windows := plaintextWindows()
	for _, tc := range []struct {
		mode      phone.SRTPMode
		encrypted bool
	}{
		{phone.SRTPOptional, true},
		{phone.SRTPOff, false},
	} {
		t.Run("srtp "+tc.mode.String(), func(t *testing.T) {
			srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
			tp := newTap(t, srv.TURNAddr, nil)
			ac, bc, bobHeard := callThroughTap(t, srv, tp, tc.mode)
			waitFor(t, 15*time.Second, "a second of audio each way", func() bool {
				return ac.Stats().PacketsReceived >= 50 && bc.Stats().PacketsReceived >= 50
			})
			got := bobHeard.Samples()
			if tones := media.DetectTones(got[len(got)-media.SampleRate/2:], []float64{440, 1000}, 0); !slices.Equal(tones, []float64{440}) {
				t.Errorf("bob heard %v Hz, want [440]", tones)
			}
			for who, c := range map[string]*phone.Call{"alice": ac, "bob": bc} {
				st := c.Stats()
				if st.Route != ice.RouteRelayed {
					t.Errorf("%s: route %s, want relayed", who, st.Route)
				}
				want := "none"
				if tc.encrypted {
					want = "srtp " + ice.SuiteAES128SHA1_80
				}
				if st.Encryption != want {
					t.Errorf("%s: media %q, want %q", who, st.Encryption, want)
				}
				if tc.encrypted && (st.AuthFailures != 0 || st.Unprotected < 50) {
					t.Errorf("%s: SRTP stats %+v", who, st.SRTPStats)
				}
			}
			if err := ac.Hangup(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			capture := tp.captured()
			hits := plaintextHits(capture, windows)
			t.Logf("captured %d datagrams between the phones and the relay; %d hold plaintext tone payload", len(capture), hits)
			if len(capture) < 100 {
				t.Fatalf("the tap saw only %d datagrams: the media did not pass it", len(capture))
			}
			if tc.encrypted && hits != 0 {
				t.Errorf("%d datagrams on the wire carry the plaintext audio", hits)
			}
			if !tc.encrypted && hits < 50 {
				t.Errorf("plain call: only %d datagrams with the tone found; the check is blind", hits)
			}
		})
	}
}

// A phone that requires SRTP answers a plain caller with 488, and says
// why; a phone that requires SRTP calling a phone that turned it off
// gets 488 and an error naming the setting.
func TestSRTPMandatoryRefusesPlainPeers(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	for _, tc := range []struct {
		name          string
		caller, calle phone.SRTPMode
		reason        string
		calleeErr     error
	}{
		{"plain caller, mandatory callee", phone.SRTPOff, phone.SRTPMandatory, "SRTP required", phone.ErrSRTPRequired},
		{"mandatory caller, plain callee", phone.SRTPMandatory, phone.SRTPOff, "SRTP turned off", ice.ErrUnsupportedTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acfg, bcfg := srv.PhoneConfig("alice"), srv.PhoneConfig("bob")
			acfg.SRTP, bcfg.SRTP = tc.caller, tc.calle
			alice := srv.NewPhone(t, acfg)
			bob := srv.NewPhone(t, bcfg)
			answered := make(chan error, 1)
			go func() {
				c, err := bob.Answer(ctxFor(t, 15*time.Second), phone.MediaOptions{})
				if c != nil {
					c.Hangup(context.Background())
				}
				answered <- err
			}()
			c, err := alice.Call(ctxFor(t, 15*time.Second), "bob", phone.MediaOptions{})
			if err == nil {
				c.Hangup(context.Background())
				t.Fatal("the call connected")
			}
			var se *ua.StatusError
			if !errors.As(err, &se) || se.Code != 488 || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), "--srtp") {
				t.Errorf("caller's error %q: want a 488 naming %q and the --srtp setting", err, tc.reason)
			}
			t.Logf("caller: %v", err)
			berr := <-answered
			if !errors.Is(berr, tc.calleeErr) {
				t.Errorf("callee's error %v, want %v", berr, tc.calleeErr)
			}
			t.Logf("callee: %v", berr)
		})
	}
}

// The engine answers a plain SIP phone's offer (no ICE, no crypto) with
// plain RTP under the default, and reports the call unencrypted; a
// best-effort offer from a plain phone with a=crypto it will not use is
// covered by the leg tests.
func TestSRTPOptionalAnswersPlainOffer(t *testing.T) {
	l := phone.NewLeg(phone.LegConfig{Media: media.Config{Source: media.NewToneSource(440, 0)}}, false)
	defer l.Close()
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
	ans, err := l.Answer(context.Background(), []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	d, err := ice.Parse(ans)
	if err != nil {
		t.Fatal(err)
	}
	if d.Proto != "RTP/AVP" || len(d.Crypto) != 0 || bytes.Contains(ans, []byte("crypto")) {
		t.Errorf("answer to a plain offer: %s with %d a=crypto", d.Proto, len(d.Crypto))
	}
	if e := l.Encryption(); e != "none" {
		t.Errorf("encryption %q", e)
	}
}

// An attacker between the relay and the phones replays every fifth media
// datagram and sends a tampered copy (one bit of the auth tag flipped)
// of every seventh, ahead of the genuine one. The phones count and drop
// both kinds before their RTP stack: no phone accepts more RTP packets
// than the other sent, and the tone is heard clean.
func TestSRTPCallDropsReplayedAndTamperedPackets(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	var mu sync.Mutex
	var n, replayed, tampered int
	mangle := func(b []byte) [][]byte {
		// Only TURN ChannelData (first two bits 01) carrying media.
		if len(b) < 100 || b[0]&0xc0 != 0x40 {
			return [][]byte{b}
		}
		size := int(b[2])<<8 | int(b[3])
		if 4+size > len(b) {
			return [][]byte{b}
		}
		mu.Lock()
		defer mu.Unlock()
		n++
		switch {
		case n%7 == 0:
			bad := slices.Clone(b)
			bad[4+size-1] ^= 0x01
			tampered++
			return [][]byte{bad, b}
		case n%5 == 0:
			replayed++
			return [][]byte{b, b}
		}
		return [][]byte{b}
	}
	tp := newTap(t, srv.TURNAddr, mangle)
	ac, bc, bobHeard := callThroughTap(t, srv, tp, phone.SRTPOptional)
	waitFor(t, 15*time.Second, "some replays and tampered packets dropped", func() bool {
		a, b := ac.Stats(), bc.Stats()
		return a.Replays+b.Replays >= 20 && a.AuthFailures+b.AuthFailures >= 15 && b.PacketsReceived >= 75
	})
	got := bobHeard.Samples()
	if tones := media.DetectTones(got[len(got)-media.SampleRate/2:], []float64{440, 1000}, 0); !slices.Equal(tones, []float64{440}) {
		t.Errorf("bob heard %v Hz, want [440]", tones)
	}
	if err := ac.Hangup(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	a, b := ac.Stats(), bc.Stats()
	mu.Lock()
	t.Logf("tap replayed %d and tampered %d datagrams; alice dropped %d replays, %d forged; bob %d, %d",
		replayed, tampered, a.Replays, a.AuthFailures, b.Replays, b.AuthFailures)
	mu.Unlock()
	for who, pair := range map[string][2]phone.Stats{"alice": {a, b}, "bob": {b, a}} {
		me, peer := pair[0], pair[1]
		if me.PacketsReceived > peer.PacketsSent {
			t.Errorf("%s accepted %d RTP packets, but the other phone sent only %d: replays got through", who, me.PacketsReceived, peer.PacketsSent)
		}
		if me.Encryption != "srtp "+ice.SuiteAES128SHA1_80 {
			t.Errorf("%s: media %q", who, me.Encryption)
		}
	}
}

// A callee that requires SRTP but refuses best-effort offers (RTP/AVP with
// a=crypto), as baresip's srtp-mand does, answers 488; the default caller
// then offers RTP/SAVP in a second INVITE and the call is SRTP.
func TestSRTPOptionalRetriesAsSAVPAfter488(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	alice := srv.NewPhone(t, srv.PhoneConfig("alice"))
	bcfg := srv.PhoneConfig("bob")
	bcfg.SRTP = phone.SRTPMandatory
	bob := srv.NewPhone(t, bcfg)

	type result struct {
		protos []string
		call   *ua.Call
		leg    *phone.Leg
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		for len(r.protos) < 2 {
			ic, err := bob.SIP().Accept(ctxFor(t, 15*time.Second))
			if err != nil {
				r.err = err
				return
			}
			d, err := ice.Parse(ic.Offer())
			if err != nil {
				r.err = err
				return
			}
			r.protos = append(r.protos, d.Proto)
			if !ice.SDESProto(d.Proto) {
				ic.Reject(488, "Not Acceptable Here")
				continue
			}
			leg, err := bob.NewLeg(phone.MediaOptions{Source: media.NewToneSource(1000, 0)}, false)
			if err != nil {
				r.err = err
				return
			}
			ans, err := leg.Answer(ctxFor(t, 10*time.Second), ic.Offer())
			if err != nil {
				leg.Close()
				r.err = err
				return
			}
			if r.call, err = ic.Answer(ctxFor(t, 10*time.Second), ans); err != nil {
				leg.Close()
				r.err = err
				return
			}
			r.leg = leg
			r.err = leg.Connect(ctxFor(t, 10*time.Second))
			return
		}
	}()
	ac, err := alice.Call(ctxFor(t, 20*time.Second), "bob", phone.MediaOptions{Source: media.NewToneSource(440, 0)})
	r := <-done
	if r.leg != nil {
		defer r.leg.Close()
	}
	if err != nil {
		t.Fatalf("call: %v (callee saw %v, %v)", err, r.protos, r.err)
	}
	defer ac.Hangup(context.Background())
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(r.protos, []string{"RTP/AVP", "RTP/SAVP"}) {
		t.Errorf("offers seen by the callee: %v, want best effort then RTP/SAVP", r.protos)
	}
	waitFor(t, 10*time.Second, "SRTP both ways", func() bool {
		return ac.Stats().Unprotected >= 20 && r.leg.Stats().Unprotected >= 20
	})
	if e := ac.Stats().Encryption; e != "srtp "+ice.SuiteAES128SHA1_80 {
		t.Errorf("caller's media %q", e)
	}
}

// syncBuffer is a bytes.Buffer safe for the loggers of several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Everything both phones log at debug level during an SRTP call, its hold
// re-INVITE (which repeats the keys) and its hang-up: the suite is named,
// no key is.
func TestSRTPKeysAreNeverLogged(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	acfg, bcfg := srv.PhoneConfig("alice"), srv.PhoneConfig("bob")
	acfg.Logger, bcfg.Logger = log.With("phone", "alice"), log.With("phone", "bob")
	alice := srv.NewPhone(t, acfg)
	bob := srv.NewPhone(t, bcfg)
	ac, bc := dial(t, alice, bob, phone.MediaOptions{Source: media.NewToneSource(440, 0)}, phone.MediaOptions{})
	if err := ac.Hold(ctxFor(t, 5*time.Second), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "some SRTP", func() bool { return bc.Stats().Unprotected > 20 })
	if err := ac.Hangup(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "srtp "+ice.SuiteAES128SHA1_80) {
		t.Fatalf("the logs do not name the suite; did logging work?\n%s", out)
	}
	for _, leak := range []string{"inline:", "a=crypto"} {
		if strings.Contains(out, leak) {
			t.Errorf("the logs hold %q:\n%s", leak, out)
		}
	}
	t.Logf("%d bytes of debug logs, no key material", len(out))
}

package phone_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/internal/phone/phonetest"
	"github.com/punchline/punchline/internal/vnetlab"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip/ua"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial has bob answer and alice call, and returns both calls.
func dial(t *testing.T, alice, bob *phone.Phone, aliceOpts, bobOpts phone.MediaOptions) (ac, bc *phone.Call) {
	t.Helper()
	type res struct {
		c   *phone.Call
		err error
	}
	answered := make(chan res, 1)
	go func() {
		c, err := bob.Answer(ctxFor(t, 20*time.Second), bobOpts)
		answered <- res{c, err}
	}()
	ac, err := alice.Call(ctxFor(t, 20*time.Second), "bob", aliceOpts)
	if err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, c := range []*phone.Call{ac, r.c} {
		select {
		case <-c.FirstRTP():
		case <-time.After(5 * time.Second):
			t.Fatal("no RTP within 5 s of connecting")
		}
	}
	return ac, r.c
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallCarriesTonesAndDTMFAndEndsOnBye(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	alice := srv.NewPhone(t, srv.PhoneConfig("alice"))
	bob := srv.NewPhone(t, srv.PhoneConfig("bob"))

	var aliceHeard, bobHeard media.Recording
	var mu sync.Mutex
	var digits []rune
	ac, bc := dial(t, alice, bob,
		phone.MediaOptions{Source: media.NewToneSource(440, 0), Sink: &aliceHeard},
		phone.MediaOptions{Source: media.NewToneSource(1000, 0), Sink: &bobHeard, OnDTMF: func(d media.DTMF) {
			mu.Lock()
			digits = append(digits, d.Digit)
			mu.Unlock()
		}})
	if err := ac.SendDTMF(ctxFor(t, 5*time.Second), "1#9"); err != nil {
		t.Fatal(err)
	}
	// While the digits play the receiver hears them, not the tone: judge
	// the audio from a little after the last digit.
	afterDTMF := len(bobHeard.Samples()) + media.SampleRate/5
	time.Sleep(time.Second)
	for _, c := range []struct {
		who string
		st  phone.Stats
	}{{"alice", ac.Stats()}, {"bob", bc.Stats()}} {
		t.Logf("%s: %s %s/%s setup %.1f ms rx %d", c.who, c.st.Route, c.st.LocalCandidateType, c.st.RemoteCandidateType, c.st.SetupMs, c.st.PacketsReceived)
		if c.st.Route != ice.RouteDirect || !c.st.ICE {
			t.Errorf("%s: route %q ice %v, want direct over ICE", c.who, c.st.Route, c.st.ICE)
		}
		if c.st.SetupMs <= 0 || c.st.PacketsReceived == 0 {
			t.Errorf("%s: setup %.1f ms, %d packets received", c.who, c.st.SetupMs, c.st.PacketsReceived)
		}
	}
	// Hold and resume by re-INVITE: not an ICE restart, the call goes on.
	if err := ac.Hold(ctxFor(t, 5*time.Second), true); err != nil {
		t.Fatal(err)
	}
	if !bc.RemoteHolds() {
		t.Error("bob does not know he is on hold")
	}
	if err := ac.Hold(ctxFor(t, 5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	if bc.RemoteHolds() {
		t.Error("bob still on hold after the resume")
	}
	if n := ac.Stats().ICERestarts + bc.Stats().ICERestarts; n != 0 {
		t.Errorf("hold and resume caused %d ICE restarts", n)
	}
	if err := ac.Hangup(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bob's call did not end after alice hung up")
	}
	if !bc.RemoteHungUp() {
		t.Errorf("bob's call ended with %v, want the remote hang-up", bc.Err())
	}
	if share := toneShare(bobHeard.Samples()[afterDTMF:], 440); share < 0.8 {
		t.Errorf("only %.0f%% of what bob heard is alice's 440 Hz", 100*share)
	}
	if share := toneShare(aliceHeard.Samples(), 1000); share < 0.8 {
		t.Errorf("only %.0f%% of what alice heard is bob's 1000 Hz", 100*share)
	}
	mu.Lock()
	got := string(digits)
	mu.Unlock()
	if got != "1#9" {
		t.Errorf("bob received DTMF %q, want 1#9", got)
	}
}

func TestRelayPolicyRelaysThroughOurRelay(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	acfg, bcfg := srv.PhoneConfig("alice"), srv.PhoneConfig("bob")
	acfg.ICEPolicy, bcfg.ICEPolicy = ice.PolicyRelay, ice.PolicyRelay
	alice, bob := srv.NewPhone(t, acfg), srv.NewPhone(t, bcfg)
	before := srv.RelayedBytes(t)
	ac, bc := dial(t, alice, bob, phone.MediaOptions{Source: media.NewToneSource(440, 0)}, phone.MediaOptions{})
	time.Sleep(500 * time.Millisecond)
	st := ac.Stats()
	if st.Route != ice.RouteRelayed || st.LocalCandidateType != "relay" {
		t.Errorf("alice: route %s %s/%s, want relayed from a relay candidate", st.Route, st.LocalCandidateType, st.RemoteCandidateType)
	}
	if after := srv.RelayedBytes(t); after-before < float64(bc.Stats().BytesReceived) {
		t.Errorf("relay counted %.0f bytes, bob received %d", after-before, bc.Stats().BytesReceived)
	}
	ac.Hangup(ctxFor(t, 5*time.Second))
}

func TestCallFailuresAreClear(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	alice := srv.NewPhone(t, srv.PhoneConfig("alice"))
	_, err := alice.Call(ctxFor(t, 10*time.Second), "bob", phone.MediaOptions{})
	if !errors.Is(err, ua.ErrOffline) {
		t.Errorf("calling an unregistered user: %v", err)
	}
	cfg := srv.PhoneConfig("alice")
	cfg.Password = "wrong"
	p, err := phone.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Register(ctxFor(t, 5*time.Second))
	if !errors.Is(err, ua.ErrAuth) || !strings.Contains(err.Error(), "register alice@") {
		t.Errorf("wrong password: %v", err)
	}
}

// The direct path dies mid-call (the WAN router drops everything between
// the two NATs): the caller restarts ICE with a re-INVITE through the real
// proxy and the call continues through the relay without hanging up.
func TestCallMovesToRelayWhenDirectPathDies(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	lab, err := vnetlab.New(vnetlab.Config{Sites: []vnetlab.Site{
		{Name: "alice", NAT: vnetlab.FullCone}, {Name: "bob", NAT: vnetlab.PortRestrictedCone}}})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	osNet, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := fmt.Sprintf("%s:%d", vnetlab.ServerIP, vnetlab.RelayPort)
	inLab := func(user string, h *vnetlab.Host) phone.Config {
		c := srv.PhoneConfig(user)
		c.Net, c.SIPNet = h.Net, osNet // media in the lab, SIP on loopback
		c.STUN = []string{"stun:" + relayAddr}
		c.TURN = []string{"turn:" + relayAddr + "?transport=udp"}
		c.TURNUser, c.TURNPassword = vnetlab.TURNUser, vnetlab.TURNPassword
		return c
	}
	ah, bh := lab.Host("alice"), lab.Host("bob")
	alice, bob := srv.NewPhone(t, inLab("alice", ah)), srv.NewPhone(t, inLab("bob", bh))
	var bobHeard media.Recording
	ac, bc := dial(t, alice, bob, phone.MediaOptions{Source: media.NewToneSource(440, 0)}, phone.MediaOptions{Sink: &bobHeard})
	if st := ac.Stats(); st.Route != ice.RouteDirect {
		t.Fatalf("first route %s (%s/%s), want direct", st.Route, st.LocalCandidateType, st.RemoteCandidateType)
	}

	host := func(a net.Addr) string { h, _, _ := net.SplitHostPort(a.String()); return h }
	lab.AddWANFilter(func(src, dst net.Addr) bool {
		s, d := host(src), host(dst)
		return !((s == ah.PublicIP && d == bh.PublicIP) || (s == bh.PublicIP && d == ah.PublicIP))
	})
	cut := time.Now()
	waitFor(t, 30*time.Second, "the call to move to the relay", func() bool {
		return ac.Stats().Route == ice.RouteRelayed && bc.Stats().Route == ice.RouteRelayed
	})
	t.Logf("relayed %v after the cut; alice %+v", time.Since(cut).Round(time.Millisecond), ac.Stats().ICERestarts)
	rx := bc.Stats().PacketsReceived
	waitFor(t, 10*time.Second, "audio through the relay", func() bool { return bc.Stats().PacketsReceived > rx+25 })
	select {
	case <-ac.Done():
		t.Fatalf("the call ended: %v", ac.Err())
	case <-bc.Done():
		t.Fatalf("the call ended: %v", bc.Err())
	default:
	}
	if ac.Stats().ICERestarts == 0 {
		t.Error("the route changed without an ICE restart")
	}
	// The restart renewed the SRTP keys both ways, and what arrives
	// through the relay decrypts under the new ones.
	for who, c := range map[string]*phone.Call{"alice": ac, "bob": bc} {
		st := c.Stats()
		t.Logf("%s: %s, %d rekeys, %d decrypted, %d auth failures", who, st.Encryption, st.Rekeys, st.Unprotected, st.AuthFailures)
		if !strings.HasPrefix(st.Encryption, "srtp ") || st.Rekeys < 2 {
			t.Errorf("%s: media %q with %d rekeys after an ICE restart", who, st.Encryption, st.Rekeys)
		}
	}
	ux := bc.Stats().Unprotected
	waitFor(t, 10*time.Second, "SRTP under the new keys", func() bool { return bc.Stats().Unprotected > ux+25 })
	ac.Hangup(ctxFor(t, 5*time.Second))
}

// toneShare is the fraction of the 100 ms windows with sound in them that
// are mostly the freq Hz tone.
func toneShare(samples []int16, freq float64) float64 {
	const win = media.SampleRate / 10
	var loud, tone int
	for i := 0; i+win <= len(samples); i += win {
		w := samples[i : i+win]
		var e float64
		for _, s := range w {
			e += float64(s) * float64(s)
		}
		if e/win < 100*100 { // quieter than -50 dBFS: silence or a gap
			continue
		}
		loud++
		if media.ToneLevel(w, freq) >= 0.5 {
			tone++
		}
	}
	if loud < 5 {
		return 0
	}
	return float64(tone) / float64(loud)
}

// No path at all between the phones: the callee gives up first (a shorter
// ConnectTimeout), and its BYE tells the caller why (RFC 3326 Reason), so
// the caller, whose own checks are still running, reports the failed ICE
// rather than only "remote party hung up".
func TestCallerLearnsWhyTheCalleeGaveUp(t *testing.T) {
	srv := phonetest.Start(t, []string{"alice", "bob"}, nil)
	lab, err := vnetlab.New(vnetlab.Config{Sites: []vnetlab.Site{
		{Name: "alice", NAT: vnetlab.PortRestrictedCone}, {Name: "bob", NAT: vnetlab.PortRestrictedCone}}})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	ah, bh := lab.Host("alice"), lab.Host("bob")
	host := func(a net.Addr) string { h, _, _ := net.SplitHostPort(a.String()); return h }
	lab.AddWANFilter(func(src, dst net.Addr) bool {
		s, d := host(src), host(dst)
		return !((s == ah.PublicIP && d == bh.PublicIP) || (s == bh.PublicIP && d == ah.PublicIP))
	})
	osNet, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	inLab := func(user string, h *vnetlab.Host, timeout time.Duration) phone.Config {
		c := srv.PhoneConfig(user)
		c.Net, c.SIPNet = h.Net, osNet
		c.STUN, c.TURN = []string{}, []string{} // no relay: nothing can carry the call
		c.ConnectTimeout = timeout
		return c
	}
	alice := srv.NewPhone(t, inLab("alice", ah, 8*time.Second))
	bob := srv.NewPhone(t, inLab("bob", bh, time.Second))
	answered := make(chan error, 1)
	go func() {
		_, err := bob.Answer(ctxFor(t, 20*time.Second), phone.MediaOptions{})
		answered <- err
	}()
	start := time.Now()
	_, err = alice.Call(ctxFor(t, 20*time.Second), "bob", phone.MediaOptions{})
	took := time.Since(start)
	if berr := <-answered; !errors.Is(berr, phone.ErrICEFailed) {
		t.Errorf("bob: %v, want ICE failed", berr)
	}
	t.Logf("alice after %v: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, ua.ErrRemoteHangup) || !strings.Contains(err.Error(), phone.ErrICEFailed.Error()) {
		t.Fatalf("alice: %v, want bob's hang-up saying %q", err, phone.ErrICEFailed)
	}
	if took >= 8*time.Second {
		t.Errorf("alice took %v: her own timeout ended the call, not bob's BYE", took)
	}
}

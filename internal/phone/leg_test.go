package phone

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
)

// plainOffer is what a SIP phone without ICE offers.
const plainOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"

func loopbackLegConfig() LegConfig {
	return LegConfig{
		ICE:   ice.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }},
		Media: media.Config{Source: media.NewToneSource(440, 0)},
	}
}

func TestLegAnswersPlainOfferWithoutICE(t *testing.T) {
	l := NewLeg(loopbackLegConfig(), false)
	defer l.Close()
	ans, err := l.Answer(context.Background(), []byte(plainOffer))
	if err != nil {
		t.Fatal(err)
	}
	d, err := ice.Parse(ans)
	if err != nil {
		t.Fatal(err)
	}
	if d.HasICE() || len(d.Candidates) > 0 {
		t.Error("answer to an offer without ICE carries ICE attributes")
	}
	if d.Address != "127.0.0.1" || d.Port == 0 {
		t.Errorf("answer c=/m= %s:%d", d.Address, d.Port)
	}
	if len(d.Codecs) == 0 || !d.Codecs[0].IsPCMA() {
		t.Errorf("answer codecs %+v: want the offerer's first choice, PCMA", d.Codecs)
	}
	if d.TelephoneEvent != 101 {
		t.Errorf("telephone-event %d, want the offer's 101", d.TelephoneEvent)
	}
	if l.UsesICE() {
		t.Error("leg claims ICE")
	}
}

// Two legs negotiate directly (no SIP): offer, answer, connect, media,
// then an ICE restart started by the offerer keeps the media flowing.
func TestLegsConnectAndSurviveRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := newLoopbackLegPair(t)
	offer, answer := negotiate(t, ctx, a, b)
	connectLegs(t, ctx, a, b, 1)
	select {
	case <-b.FirstRTP():
	case <-ctx.Done():
		t.Fatal("no first-RTP signal")
	}
	if ri, ok := a.Route(); !ok || ri.Route != ice.RouteDirect {
		t.Fatalf("route %+v", ri)
	}

	// A re-offer with the same ICE credentials (what pjsip and linphone
	// send after ICE completes, to update c=/m=) is not a restart.
	same, err := b.HandleOffer(ctx, offer)
	if err != nil {
		t.Fatal(err)
	}
	sd, _ := ice.Parse(same)
	first, _ := ice.Parse(answer)
	if sd.Ufrag != first.Ufrag || b.Stats().ICERestarts != 0 {
		t.Errorf("a same-credentials re-offer restarted ICE (ufrag %s -> %s)", first.Ufrag, sd.Ufrag)
	}

	re, err := a.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reAnswer := reoffer(t, ctx, a, b, re)
	od, _ := ice.Parse(re)
	ad, _ := ice.Parse(reAnswer)
	if od.Ufrag == "" || ad.Ufrag == "" {
		t.Fatal("restart offer or answer lost ICE")
	}
	if a.Stats().ICERestarts != 1 || b.Stats().ICERestarts != 1 {
		t.Errorf("restarts counted: %d, %d", a.Stats().ICERestarts, b.Stats().ICERestarts)
	}
	rx := b.Stats().PacketsReceived
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().PacketsReceived < rx+25 {
		if time.Now().After(deadline) {
			t.Fatalf("media stopped after the restart: %d then %d packets", rx, b.Stats().PacketsReceived)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLegRejectsOfferWithoutCommonCodec(t *testing.T) {
	l := NewLeg(loopbackLegConfig(), false)
	defer l.Close()
	offer := strings.ReplaceAll(plainOffer, "RTP/AVP 8 0 101", "RTP/AVP 18")
	if _, err := l.Answer(context.Background(), []byte(offer)); err == nil {
		t.Fatal("answered an offer of G.729 only")
	}
}

// FuzzLegHandleOffer feeds re-offers from the wire to a leg in a call with
// a plain-RTP peer: bad SDP must give an error, never a panic, and an
// accepted re-offer always yields an answer that parses.
func FuzzLegHandleOffer(f *testing.F) {
	f.Add([]byte(plainOffer))
	f.Add([]byte(strings.ReplaceAll(plainOffer, "a=sendrecv", "a=sendonly")))
	f.Add([]byte(strings.ReplaceAll(plainOffer, "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")))
	f.Add([]byte("v=0\r\nm=audio 0 RTP/AVP 0\r\n"))
	f.Add([]byte("garbage"))
	// SDES re-offers: RTP/SAVP and best effort, a usable and an odd line.
	crypto := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^31\r\n" +
		"a=crypto:2 AEAD_AES_128_GCM inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5 WSH=128\r\n"
	f.Add([]byte(strings.Replace(plainOffer, "RTP/AVP", "RTP/SAVP", 1) + crypto))
	f.Add([]byte(plainOffer + crypto))
	l := NewLeg(loopbackLegConfig(), false)
	if _, err := l.Answer(context.Background(), []byte(plainOffer)); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, offer []byte) {
		ans, err := l.HandleOffer(context.Background(), offer)
		if err != nil {
			return
		}
		if _, err := ice.Parse(ans); err != nil {
			t.Fatalf("our answer to %q does not parse: %v\n%s", offer, err, ans)
		}
	})
}

// A peer that answers our ICE offer without ICE gets a plain re-offer, and
// media then flows over plain sockets with latching.
func TestLegFallsBackToPlainRTPForAnswerWithoutICE(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := newLoopbackLegPair(t)
	offer, err := a.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b plays a phone that ignores ICE: it sees the offer without it.
	od, err := ice.Parse(offer)
	if err != nil {
		t.Fatal(err)
	}
	od.ClearICE()
	stripped, err := od.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	answer, err := b.Answer(ctx, stripped)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnswer(answer); err != errNoICE {
		t.Fatalf("SetAnswer of an answer without ICE: %v, want errNoICE", err)
	}
	re, err := a.PlainOffer()
	if err != nil {
		t.Fatal(err)
	}
	if rd, _ := ice.Parse(re); rd.HasICE() {
		t.Fatal("plain re-offer still carries ICE")
	}
	reAnswer, err := b.HandleOffer(ctx, re)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnswer(reAnswer); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.FirstRTP():
	case <-ctx.Done():
		t.Fatal("no RTP over plain sockets")
	}
	if a.UsesICE() || b.UsesICE() {
		t.Error("a leg still uses ICE")
	}
	// The plain sockets carry SRTP all the same: the re-offer repeats the
	// first offer's keys (nothing was sent under them yet), and what
	// arrives decrypts.
	if rd, _ := ice.Parse(re); len(rd.Crypto) != 3 || string(rd.Crypto[0].Key) != string(od.Crypto[0].Key) {
		t.Error("the plain re-offer does not repeat the first offer's keys")
	}
	waitForLeg(t, 10*time.Second, "SRTP both ways", func() bool {
		return a.Stats().Unprotected > 0 && b.Stats().Unprotected > 0
	})
	for name, l := range map[string]*Leg{"offerer": a, "answerer": b} {
		if st := l.Stats(); !strings.HasPrefix(st.Encryption, "srtp ") || st.Unprotected == 0 || st.AuthFailures != 0 {
			t.Errorf("%s over plain sockets: %q, %+v", name, st.Encryption, st.SRTPStats)
		}
	}
	if ri, ok := a.Route(); !ok || ri.Route != ice.RouteDirect {
		t.Errorf("route %+v", ri)
	}
}

// newLoopbackLegPair makes an offering leg a and an answering leg b on
// loopback; both close when the test ends.
// negotiate runs a's first offer through b's Answer and gives a the
// answer.
func negotiate(t *testing.T, ctx context.Context, a, b *Leg) (offer, answer []byte) {
	t.Helper()
	offer, err := a.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if answer, err = b.Answer(ctx, offer); err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	return offer, answer
}

// reoffer hands a re-offer of a's to b mid-call and gives a the answer.
func reoffer(t *testing.T, ctx context.Context, a, b *Leg, offer []byte) (answer []byte) {
	t.Helper()
	answer, err := b.HandleOffer(ctx, offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	return answer
}

func newLoopbackLegPair(t *testing.T) (a, b *Leg) {
	t.Helper()
	a = NewLeg(loopbackLegConfig(), true)
	b = NewLeg(loopbackLegConfig(), false)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

package phone

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
)

func legPairWithModes(t *testing.T, offerer, answerer SRTPMode) (a, b *Leg) {
	t.Helper()
	ca, cb := loopbackLegConfig(), loopbackLegConfig()
	ca.SRTP, cb.SRTP = offerer, answerer
	a, b = NewLeg(ca, true), NewLeg(cb, false)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// connectLegs runs Connect on both and waits until each has received n
// packets.
func connectLegs(t *testing.T, ctx context.Context, a, b *Leg, n uint64) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Connect(ctx) }()
	if err := a.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitForLeg(t, 10*time.Second, "packets both ways", func() bool {
		return a.Stats().PacketsReceived >= n && b.Stats().PacketsReceived >= n
	})
}

func waitForLeg(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every pairing of --srtp settings, offerer and answerer: what is
// offered, answered, and whether the media that flows is encrypted.
func TestSRTPModesNegotiate(t *testing.T) {
	const mti = "srtp " + ice.SuiteAES128SHA1_80
	for _, tc := range []struct {
		name             string
		offerer, answer  SRTPMode
		offerProto       string
		offerLines       int
		want             string // Encryption of both legs; "" when the answerer refuses
		wantErr          error
		answerProto      string
		answerCryptoLine bool
	}{
		{"optional calls optional", SRTPOptional, SRTPOptional, "RTP/AVP", 3, mti, nil, "RTP/AVP", true},
		{"mandatory calls optional", SRTPMandatory, SRTPOptional, "RTP/SAVP", 3, mti, nil, "RTP/SAVP", true},
		{"optional calls mandatory", SRTPOptional, SRTPMandatory, "RTP/AVP", 3, mti, nil, "RTP/AVP", true},
		{"mandatory calls mandatory", SRTPMandatory, SRTPMandatory, "RTP/SAVP", 3, mti, nil, "RTP/SAVP", true},
		{"plain phone calls optional", SRTPOff, SRTPOptional, "RTP/AVP", 0, "none", nil, "RTP/AVP", false},
		{"optional calls plain phone", SRTPOptional, SRTPOff, "RTP/AVP", 3, "none", nil, "RTP/AVP", false},
		{"plain phone calls mandatory: 488", SRTPOff, SRTPMandatory, "RTP/AVP", 0, "", ErrSRTPRequired, "", false},
		{"mandatory calls plain phone: 488", SRTPMandatory, SRTPOff, "RTP/SAVP", 3, "", ice.ErrUnsupportedTransport, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, b := legPairWithModes(t, tc.offerer, tc.answer)
			offer, err := a.Offer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			od, err := ice.Parse(offer)
			if err != nil {
				t.Fatal(err)
			}
			if od.Proto != tc.offerProto || len(od.Crypto) != tc.offerLines {
				t.Fatalf("offer m= %s with %d a=crypto, want %s with %d", od.Proto, len(od.Crypto), tc.offerProto, tc.offerLines)
			}
			answer, err := b.Answer(ctx, offer)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrBadOffer) {
					t.Fatalf("answer error %v, want %v (488)", err, tc.wantErr)
				}
				t.Logf("answerer says: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ad, err := ice.Parse(answer)
			if err != nil {
				t.Fatal(err)
			}
			if ad.Proto != tc.answerProto || (len(ad.Crypto) == 1) != tc.answerCryptoLine || len(ad.Crypto) > 1 {
				t.Fatalf("answer m= %s with %d a=crypto", ad.Proto, len(ad.Crypto))
			}
			if tc.answerCryptoLine && (ad.Crypto[0].Tag != od.Crypto[0].Tag || ad.Crypto[0].Suite != od.Crypto[0].Suite ||
				string(ad.Crypto[0].Key) == string(od.Crypto[0].Key)) {
				t.Fatalf("answer line %v to first offered %v: want the same tag and suite and a key of its own", ad.Crypto[0], od.Crypto[0])
			}
			if err := a.SetAnswer(answer); err != nil {
				t.Fatal(err)
			}
			connectLegs(t, ctx, a, b, 20)
			for name, l := range map[string]*Leg{"offerer": a, "answerer": b} {
				st := l.Stats()
				if st.Encryption != tc.want {
					t.Errorf("%s: media %q, want %q", name, st.Encryption, tc.want)
				}
				if tc.want != "none" && (st.Unprotected < 20 || st.AuthFailures != 0 || st.Replays != 0) {
					t.Errorf("%s: SRTP stats %+v", name, st.SRTPStats)
				}
				if tc.want == "none" && st.Protected != 0 {
					t.Errorf("%s: protected %d packets on a plain call", name, st.Protected)
				}
			}
		})
	}
}

// An offer (or answer) whose lines name no suite we run, or only suites
// with session parameters we refuse, gets a clear error; an RTP/SAVP
// answer to our best-effort offer without a matching tag too.
func TestSRTPRefusesWhatItCannotKey(t *testing.T) {
	ctx := context.Background()
	b := NewLeg(loopbackLegConfig(), false)
	defer b.Close()
	offer := strings.Replace(plainOffer, "RTP/AVP", "RTP/SAVP", 1) +
		"a=crypto:1 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm\r\n" +
		"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm UNENCRYPTED_SRTP\r\n"
	if _, err := b.Answer(ctx, []byte(offer)); !errors.Is(err, ice.ErrNoCommonCrypto) || !errors.Is(err, ErrBadOffer) {
		t.Fatalf("answer to unusable crypto: %v, want ErrNoCommonCrypto", err)
	}

	a := NewLeg(loopbackLegConfig(), true)
	defer a.Close()
	if _, err := a.Offer(ctx); err != nil {
		t.Fatal(err)
	}
	badAnswer := strings.Replace(plainOffer, "RTP/AVP", "RTP/SAVP", 1) +
		"a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm\r\n"
	if err := a.SetAnswer([]byte(badAnswer)); !errors.Is(err, ErrBadOffer) {
		t.Fatalf("answer with a tag we never offered: %v, want ErrBadOffer", err)
	}
}

// Re-INVITEs: a hold keeps the keys, an ICE restart replaces them in both
// directions and media goes on decrypting, and a re-offer that drops SRTP
// from an encrypted call is refused.
func TestSRTPRekeysOnRestartKeepsKeysOnHold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := legPairWithModes(t, SRTPOptional, SRTPOptional)
	_, answer := negotiate(t, ctx, a, b)
	connectLegs(t, ctx, a, b, 10)

	hold, err := a.HoldOffer(true)
	if err != nil {
		t.Fatal(err)
	}
	hd, _ := ice.Parse(hold)
	fd, _ := ice.Parse(answer)
	if len(hd.Crypto) != 1 {
		t.Fatalf("hold re-offer has %d a=crypto lines, want the one in use", len(hd.Crypto))
	}
	holdAns := reoffer(t, ctx, a, b, hold)
	had, _ := ice.Parse(holdAns)
	if len(had.Crypto) != 1 || string(had.Crypto[0].Key) != string(fd.Crypto[0].Key) {
		t.Error("the answer to a hold re-offer changed the key")
	}
	if a.Stats().Rekeys != 0 || b.Stats().Rekeys != 0 {
		t.Errorf("hold rekeyed: %d, %d", a.Stats().Rekeys, b.Stats().Rekeys)
	}

	re, err := a.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := ice.Parse(re)
	if len(rd.Crypto) != 3 || string(rd.Crypto[0].Key) == string(hd.Crypto[0].Key) {
		t.Fatal("ICE restart offer does not carry fresh keys")
	}
	reAns := reoffer(t, ctx, a, b, re)
	rad, _ := ice.Parse(reAns)
	if len(rad.Crypto) != 1 || string(rad.Crypto[0].Key) == string(fd.Crypto[0].Key) {
		t.Fatal("the answer to a restart kept its old key")
	}
	if a.Stats().Rekeys != 2 || b.Stats().Rekeys != 2 {
		t.Errorf("rekeys %d, %d: want both directions on both sides", a.Stats().Rekeys, b.Stats().Rekeys)
	}
	// Media decrypts under the new keys.
	ua, ub := a.Stats().Unprotected, b.Stats().Unprotected
	waitForLeg(t, 10*time.Second, "packets under the new keys", func() bool {
		return a.Stats().Unprotected > ua+25 && b.Stats().Unprotected > ub+25
	})
	// A handful of packets sent under the new key before the other side
	// read the answer may fail; more would mean the switch is broken.
	if f := a.Stats().AuthFailures + b.Stats().AuthFailures; f > 10 {
		t.Errorf("%d auth failures around the rekey", f)
	}

	// Someone (a proxy, an attacker at the SIP server) re-offers plain RTP.
	plain, _ := ice.Parse(re)
	plain.Crypto, plain.SessionVersion = nil, plain.SessionVersion+1
	body, _ := plain.Marshal()
	if _, err := b.HandleOffer(ctx, body); !errors.Is(err, ErrSRTPDowngrade) {
		t.Fatalf("plain re-offer on an encrypted call: %v, want ErrSRTPDowngrade", err)
	}
	if st := b.Stats(); !strings.HasPrefix(st.Encryption, "srtp ") {
		t.Errorf("after the refused downgrade: %q", st.Encryption)
	}
}

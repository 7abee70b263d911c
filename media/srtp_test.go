package media

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func newSRTPKey(t testing.TB, suite string) SRTPKey {
	t.Helper()
	kl, sl := 16, 14
	switch suite {
	case "AES_256_CM_HMAC_SHA1_80", "AES_256_CM_HMAC_SHA1_32":
		kl = 32
	case "AEAD_AES_128_GCM":
		sl = 12
	case "AEAD_AES_256_GCM":
		kl, sl = 32, 12
	}
	b := make([]byte, kl+sl)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return SRTPKey{Suite: suite, MasterKey: b[:kl], MasterSalt: b[kl:]}
}

// srtpPair returns the two ends of one keyed session: a sends with ka and
// b receives with it, and the reverse.
func srtpPair(t testing.TB, suite string) (a, b *SRTP) {
	t.Helper()
	ka, kb := newSRTPKey(t, suite), newSRTPKey(t, suite)
	a, err := NewSRTP(ka, kb, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewSRTP(kb, ka, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestSRTPRoundTripEverySuite(t *testing.T) {
	payload := bytes.Repeat([]byte("plaintext voice "), 10)
	plain := rtpBytes(0, 1000, 160, 0x11223344, payload)
	for _, suite := range SRTPSuites() {
		t.Run(suite, func(t *testing.T) {
			a, b := srtpPair(t, suite)
			enc, err := a.Protect(nil, plain)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(enc, payload[:16]) {
				t.Fatal("SRTP packet carries the plaintext payload")
			}
			if len(enc) <= len(plain) {
				t.Fatalf("SRTP packet of %d bytes has no auth tag (plain %d)", len(enc), len(plain))
			}
			var hdr rtp.Packet
			if err := hdr.Unmarshal(enc); err != nil || hdr.SSRC != 0x11223344 || bytes.Equal(hdr.Payload, payload) {
				t.Fatalf("SRTP header or payload wrong: %v", err)
			}
			dec, err := b.Unprotect(nil, enc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dec, plain) {
				t.Fatal("decrypted packet differs from the plaintext")
			}
			// SRTCP: a receiver report goes out encrypted too.
			rr := []byte{0x81, 201, 0, 7, 1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6}
			encRR, err := a.Protect(nil, rr)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(encRR, rr[8:]) {
				t.Error("SRTCP packet carries the report in the clear")
			}
			decRR, err := b.Unprotect(nil, encRR)
			if err != nil || !bytes.Equal(decRR, rr) {
				t.Fatalf("SRTCP round trip: %v", err)
			}
			if st := b.Stats(); st.Unprotected != 2 || st.AuthFailures != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestSRTPDropsTamperedReplayedAndForeignPackets(t *testing.T) {
	a, b := srtpPair(t, "AES_CM_128_HMAC_SHA1_80")
	enc, err := a.Protect(nil, rtpBytes(0, 7, 160, 42, make([]byte, 160)))
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(enc)
	bad[len(bad)-1] ^= 1 // the auth tag
	if _, err := b.Unprotect(nil, bad); !errors.Is(err, ErrSRTPAuth) {
		t.Fatalf("bad tag: %v, want ErrSRTPAuth", err)
	}
	flipped := slices.Clone(enc)
	flipped[20] ^= 0x80 // the payload
	if _, err := b.Unprotect(nil, flipped); !errors.Is(err, ErrSRTPAuth) {
		t.Fatalf("tampered payload: %v, want ErrSRTPAuth", err)
	}
	// Plain RTP from someone without the key.
	if _, err := b.Unprotect(nil, rtpBytes(0, 8, 320, 42, make([]byte, 160))); !errors.Is(err, ErrSRTPAuth) {
		t.Fatalf("plain RTP: %v, want ErrSRTPAuth", err)
	}
	if _, err := b.Unprotect(nil, enc); err != nil {
		t.Fatalf("genuine packet after the failures: %v", err)
	}
	if _, err := b.Unprotect(nil, enc); !errors.Is(err, ErrSRTPReplay) {
		t.Fatalf("replay: %v, want ErrSRTPReplay", err)
	}
	// A packet signed with another key (an attacker's own SRTP).
	c, _ := srtpPair(t, "AES_CM_128_HMAC_SHA1_80")
	other, _ := c.Protect(nil, rtpBytes(0, 9, 480, 42, make([]byte, 160)))
	if _, err := b.Unprotect(nil, other); !errors.Is(err, ErrSRTPAuth) {
		t.Fatalf("foreign key: %v, want ErrSRTPAuth", err)
	}
	st := b.Stats()
	if st.AuthFailures != 4 || st.Replays != 1 || st.Unprotected != 1 {
		t.Errorf("stats %+v, want 4 auth failures, 1 replay, 1 good", st)
	}
}

func TestSRTPRekeyKeepsOldKeyBriefly(t *testing.T) {
	a, b := srtpPair(t, "AES_CM_128_HMAC_SHA1_80")
	old, _ := a.Protect(nil, rtpBytes(0, 1, 160, 42, make([]byte, 160)))
	nk := newSRTPKey(t, "AEAD_AES_128_GCM")
	if err := a.SetLocalKey(nk); err != nil {
		t.Fatal(err)
	}
	if err := b.SetRemoteKey(nk); err != nil {
		t.Fatal(err)
	}
	fresh, _ := a.Protect(nil, rtpBytes(0, 2, 320, 42, make([]byte, 160)))
	if _, err := b.Unprotect(nil, fresh); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if _, err := b.Unprotect(nil, old); err != nil {
		t.Fatalf("a packet sent before the rekey, arriving after: %v", err)
	}
	if a.Suite() != "AEAD_AES_128_GCM" || b.Stats().Rekeys != 1 {
		t.Errorf("suite %s, rekeys %d", a.Suite(), b.Stats().Rekeys)
	}
}

// Two Streams over real UDP sockets with the SRTP wrappers: the tone gets
// through, what is on the wire is not the plaintext, and injected forged
// or replayed packets are dropped before the Stream and counted.
func TestStreamsOverSRTP(t *testing.T) {
	ca, cb := listenUDP(t), listenUDP(t)
	sa, sb := srtpPair(t, "AES_CM_128_HMAC_SHA1_32")
	var recB Recording
	alice := newStream(t, Config{
		PacketConn: sa.PacketConn(ca), RemoteAddr: cb.LocalAddr(),
		Source: NewToneSource(440, 0), RTCPInterval: 100 * time.Millisecond,
	})
	bob := newStream(t, Config{
		PacketConn: sb.PacketConn(cb), RemoteAddr: ca.LocalAddr(),
		Source: NewToneSource(1000, 0), Sink: &recB, RTCPInterval: 100 * time.Millisecond,
	})
	waitFor(t, 20*time.Second, "50 packets each way", func() bool {
		return alice.Stats().PacketsReceived >= 50 && bob.Stats().PacketsReceived >= 50
	})
	got := recordFor(t, &recB, time.Second)
	if tones := DetectTones(got, []float64{440, 1000}, 0); !slices.Equal(tones, []float64{440}) {
		t.Errorf("bob heard %v Hz, want [440]", tones)
	}
	waitFor(t, 5*time.Second, "RTT over SRTCP", func() bool { return alice.Stats().HaveRTT })

	// An attacker on the path sends plain RTP and forged SRTP to bob.
	evil := listenUDP(t)
	before := bob.Stats()
	for i := 0; i < 20; i++ {
		pkt := rtpBytes(0, uint16(60000+i), uint32(i*160), 0xbad, bytes.Repeat([]byte{0x55}, 160))
		if i%2 == 1 {
			pkt = append(pkt, 1, 2, 3, 4) // looks like an auth tag
		}
		if _, err := evil.WriteTo(pkt, cb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the forged packets counted", func() bool { return sb.Stats().AuthFailures >= 20 })
	after := bob.Stats()
	if after.Discarded != before.Discarded {
		t.Errorf("forged packets reached the stream: discarded %d -> %d", before.Discarded, after.Discarded)
	}
	if ra := bob.RemoteAddr(); ra.String() != ca.LocalAddr().String() {
		t.Errorf("forged packets moved the latch to %v", ra)
	}
	t.Logf("bob srtp %+v", sb.Stats())
}

func TestSRTPConnOverConnectedUDP(t *testing.T) {
	la, lb := listenUDP(t), listenUDP(t)
	ca, err := net.DialUDP("udp4", nil, lb.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	_ = la
	sa, sb := srtpPair(t, "AEAD_AES_128_GCM")
	wa := sa.Conn(ca)
	plain := rtpBytes(8, 5, 800, 77, bytes.Repeat([]byte{0x42}, 160))
	if n, err := wa.Write(plain); err != nil || n != len(plain) {
		t.Fatalf("write %d, %v", n, err)
	}
	buf := make([]byte, 2048)
	_ = lb.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := lb.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf[:n], plain[12:40]) {
		t.Fatal("plaintext on the wire")
	}
	dec, err := sb.Unprotect(nil, buf[:n])
	if err != nil || !bytes.Equal(dec, plain) {
		t.Fatalf("unprotect: %v", err)
	}
}

func BenchmarkSRTPProtectUnprotect(b *testing.B) {
	sa, sb := srtpPair(b, "AES_CM_128_HMAC_SHA1_80")
	plain := rtpBytes(0, 0, 0, 1, make([]byte, 160))
	var enc, dec []byte
	b.SetBytes(int64(len(plain)))
	for i := 0; b.Loop(); i++ {
		plain[2], plain[3] = byte(i>>8), byte(i)
		var err error
		if enc, err = sa.Protect(enc, plain); err != nil {
			b.Fatal(err)
		}
		if dec, err = sb.Unprotect(dec, enc); err != nil {
			b.Fatal(err)
		}
	}
}

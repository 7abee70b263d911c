package sip

import (
	"strings"
	"testing"
	"time"
)

func TestParseCredentials(t *testing.T) {
	good := `Digest username="alice", realm="punchline", nonce="n1", uri="sip:127.0.0.1", response="ABCDEF", algorithm=SHA-256, cnonce="c", qop=auth, nc=0000000a, opaque="o"`
	c, err := ParseCredentials(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "alice" || c.Realm != "punchline" || c.Nonce != "n1" || c.URI != "sip:127.0.0.1" ||
		c.Response != "abcdef" || c.Algorithm != "SHA-256" || c.CNonce != "c" || c.QOP != "auth" || c.NC != 10 || c.Opaque != "o" {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range []string{
		`Basic abc`,
		`Digest username="alice", realm="r"`, // no nonce/uri/response
		`Digest username="a", nonce="n", uri="u", response="r", qop=auth`,                            // qop without nc/cnonce
		`Digest username="a", nonce="n", uri="u", response="r", qop=auth-int, nc=00000001, cnonce=x`, // not offered
		`Digest username="a", nonce="n", uri="u", response="r", nc=1`,                                // nc not 8 hex digits
		`Digest username="a, nonce="n"`,                                                              // unterminated quote
		`Digest username="a" nonce="n"`,                                                              // missing comma
		`Digest username="a", username="b", nonce="n", uri="u", response="r"`,                        // duplicate
	} {
		if _, err := ParseCredentials(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestNonceRetransmissionIsNotAReplay(t *testing.T) {
	now := time.Now()
	k := newNonceKeeper([]byte(strings.Repeat("k", 32)), time.Minute)
	k.now = func() time.Time { return now }
	nonce := k.issue()
	cred := func(nc uint32) *Credentials { return &Credentials{QOP: "auth", NC: nc} }
	use := func(nc uint32, tx string) nonceResult {
		res, use := k.check(nonce, cred(nc), tx)
		if res == nonceOK {
			use.commit()
		}
		return res
	}
	if r := use(1, "txA"); r != nonceOK {
		t.Fatalf("first use: %v", r)
	}
	if r := use(1, "txA"); r != nonceOK {
		t.Fatalf("retransmission of the same transaction: %v, want OK", r)
	}
	if r := use(1, "txB"); r != nonceReplay {
		t.Fatalf("same count from another transaction: %v, want replay", r)
	}
	if r := use(2, "txB"); r != nonceOK {
		t.Fatalf("next count: %v", r)
	}
	if r := use(1, "txA"); r != nonceReplay {
		t.Fatalf("older count: %v, want replay", r)
	}
	now = now.Add(retransWindow + 2*time.Second)
	if r := use(2, "txB"); r != nonceReplay {
		t.Fatalf("same transaction long after: %v, want replay", r)
	}
	now = now.Add(time.Minute)
	if r := use(3, "txC"); r != nonceStale {
		t.Fatalf("after the lifetime: %v, want stale", r)
	}
	if r, _ := k.check("bm90IG91cnM", cred(1), "x"); r != nonceBad {
		t.Fatalf("forged nonce: %v, want bad", r)
	}
}

func TestNonceOutsideTheLiveWindowIsStale(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	k := newNonceKeeper(secret, time.Hour)
	nonce := k.issue()
	c := &Credentials{QOP: "auth", NC: 1}
	if r, _ := k.check(nonce, c, "tx"); r != nonceOK {
		t.Fatalf("fresh nonce: %v", r)
	}
	// A keeper started later (a restart, which takes far longer than the
	// 0.5 ms that nonceSlots nanoseconds are) has no replay state for it.
	time.Sleep(2 * time.Millisecond)
	later := newNonceKeeper(secret, time.Hour)
	if r, _ := later.check(nonce, c, "tx"); r != nonceStale {
		t.Fatalf("nonce from before a restart: %v, want stale", r)
	}
	// Half a million newer nonces reuse its slot.
	k.mu.Lock()
	k.seq += nonceSlots - 1
	k.mu.Unlock()
	if r, _ := k.check(nonce, c, "tx"); r != nonceOK {
		t.Fatalf("oldest live nonce: %v, want ok", r)
	}
	k.issue()
	if r, _ := k.check(nonce, c, "tx"); r != nonceStale {
		t.Fatalf("nonce whose slot was reused: %v, want stale", r)
	}
	// Only the chunks the sequence reached were allocated.
	n := 0
	for _, ch := range k.chunks {
		if ch != nil {
			n++
		}
	}
	if n > 2 {
		t.Fatalf("%d chunks allocated after issuing two nonces", n)
	}
}

func TestTxHashIsTheHashOfTheTransactionID(t *testing.T) {
	if got, want := txHash("z9hG4bK-1", "192.0.2.1", 5060), fnv32("z9hG4bK-1|192.0.2.1:5060"); got != want {
		t.Fatalf("txHash %x, fnv32 of the joined ID %x", got, want)
	}
	k := newNonceKeeper([]byte(strings.Repeat("k", 32)), time.Minute)
	if n := k.issue(); len(n) != nonceLen {
		t.Fatalf("nonce %q is %d long, want %d", n, len(n), nonceLen)
	}
}

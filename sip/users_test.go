package sip

import (
	"errors"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/store"
)

func TestUserCacheKeepsOnlyRecentProxyLookups(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUsers("punchline", map[string]string{"alice": "pw", "bob": "pw"}, false); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := newUserCache(st)
	c.now = func() time.Time { return now }

	a, err := c.lookup("alice", false)
	if err != nil || a.name != "alice" || a.realm != "punchline" || !a.hasMD5 || !a.hasSHA256 {
		t.Fatalf("alice: %+v, %v", a, err)
	}
	md5hex, shahex := store.HA1("alice", "punchline", "pw")
	var buf [64]byte
	if got := string(a.ha1Hex(&buf, "MD5")); got != md5hex {
		t.Fatalf("MD5 HA1 %s, want %s", got, md5hex)
	}
	if got := string(a.ha1Hex(&buf, "SHA-256")); got != shahex {
		t.Fatalf("SHA-256 HA1 %s, want %s", got, shahex)
	}
	if len(c.m) != 0 {
		t.Fatal("a registrar lookup was cached")
	}
	if _, err := c.get("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get("nobody"); !errors.Is(err, store.ErrNoSuchUser) {
		t.Fatalf("unknown user: %v", err)
	}
	if len(c.m) != 2 {
		t.Fatalf("%d cached, want bob and the missing name", len(c.m))
	}
	// Once the TTL has passed, the next lookup sweeps the expired ones.
	now = now.Add(userCacheTTL + time.Second)
	if _, err := c.get("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.m["bob"]; ok || len(c.m) != 1 {
		t.Fatalf("expired entries kept: %d", len(c.m))
	}
}

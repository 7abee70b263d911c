package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkUser measures reading one account among 10,000, as the
// registrar does for every authenticated request its cache misses.
func BenchmarkUser(b *testing.B) {
	st, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	accounts := map[string]string{}
	for i := range 10000 {
		accounts[fmt.Sprintf("u%05d", i)] = "pw"
	}
	if err := st.AddUsers("punchline", accounts, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := st.User(fmt.Sprintf("u%05d", i%10000)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeUserFastPathReadsWhatMarshalWrites(t *testing.T) {
	m, sh := HA1("alice", "punchline", "pw")
	u := User{Name: "alice", Realm: "punchline", HA1MD5: m, HA1SHA256: sh, Created: time.Date(2026, 11, 25, 20, 0, 0, 123456789, time.UTC)}
	raw, _ := json.Marshal(u)
	var got User
	if !decodeUserFast(raw, &got) {
		t.Fatalf("fast path refused %s", raw)
	}
	if got != u {
		t.Fatalf("fast path read %+v, want %+v", got, u)
	}
	// What it refuses still decodes, through encoding/json.
	for _, other := range []string{
		`{"realm":"punchline","name":"alice","ha1_md5":"x","ha1_sha256":"y","created":"2026-11-25T20:00:00Z"}`,
		`{"name":"al\u0069ce","realm":"punchline","ha1_md5":"x","ha1_sha256":"y","created":"2026-11-25T20:00:00Z"}`,
		`{ "name": "alice", "realm": "punchline" }`,
	} {
		if decodeUserFast([]byte(other), &got) {
			t.Errorf("fast path took %s", other)
		}
		if err := decodeUser([]byte(other), &got); err != nil || got.Name != "alice" {
			t.Errorf("%s: %+v, %v", other, got, err)
		}
	}
}

// FuzzDecodeUser checks the fast path against encoding/json: whatever it
// accepts, encoding/json reads identically.
func FuzzDecodeUser(f *testing.F) {
	m, sh := HA1("alice", "punchline", "pw")
	raw, _ := json.Marshal(User{Name: "alice", Realm: "punchline", HA1MD5: m, HA1SHA256: sh, Created: time.Now().UTC()})
	f.Add(raw)
	f.Add([]byte(`{"name":"a","realm":"r","ha1_md5":"","ha1_sha256":"","created":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"name":"a","realm":"r","ha1_md5":"","ha1_sha256":"","created":"2026-11-25T20:00:00+01:00"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast, slow User
		if !decodeUserFast(raw, &fast) {
			return
		}
		if err := json.Unmarshal(raw, &slow); err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, raw)
		}
		if fast.Name != slow.Name || fast.Realm != slow.Realm || fast.HA1MD5 != slow.HA1MD5 ||
			fast.HA1SHA256 != slow.HA1SHA256 || !fast.Created.Equal(slow.Created) {
			t.Fatalf("fast %+v, encoding/json %+v for %q", fast, slow, raw)
		}
	})
}

func TestHasUsers(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if has, err := st.HasUsers(); err != nil || has {
		t.Fatalf("empty store: %v, %v", has, err)
	}
	if err := st.AddUser("alice", "punchline", "pw", false); err != nil {
		t.Fatal(err)
	}
	if has, err := st.HasUsers(); err != nil || !has {
		t.Fatalf("store with alice: %v, %v", has, err)
	}
	if err := st.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if has, _ := st.HasUsers(); has {
		t.Fatal("store without accounts reports some")
	}
}

package relay

import (
	"crypto/md5"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/punchline/punchline/internal/store"
)

func TestLongTermKeyIsTheSIPHA1(t *testing.T) {
	// The stored MD5 HA1 is the TURN key: one password for SIP and TURN.
	md5hex, _ := store.HA1("alice", "example.org", "pw")
	key := LongTermKey("alice", "example.org", "pw")
	if got := string(hexOf(key)); got != md5hex {
		t.Fatalf("LongTermKey = %s, HA1 = %s", got, md5hex)
	}
	if string(turn.GenerateAuthKey("alice", "example.org", "pw")) != string(key) {
		t.Fatal("differs from pion's GenerateAuthKey")
	}
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

func TestRESTCredentialsMatchPion(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	user, pass, exp := RESTCredentials("s3cret", "bob", now, time.Hour)
	if user != strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+":bob" || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("username %q expires %v", user, exp)
	}
	// pion's REST handler must accept what we mint (coturn's format).
	h := turn.LongTermTURNRESTAuthHandler("s3cret", nil)
	id, key, ok := h(&turn.RequestAttributes{Username: user, Realm: "r"})
	if !ok || id != "bob" || string(key) != string(LongTermKey(user, "r", pass)) {
		t.Fatalf("pion's REST handler: ok=%v id=%q, key equal=%v", ok, id, string(key) == string(LongTermKey(user, "r", pass)))
	}
}

func TestAuthenticatorKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := &authenticator{realm: "r", users: testUsersIn("r"), secret: "s", now: func() time.Time { return now }}
	valid, validPass, _ := RESTCredentials("s", "carol", now, time.Minute)
	expired, _, _ := RESTCredentials("s", "carol", now, -time.Second)
	bare, barePass, _ := RESTCredentials("s", "", now, time.Minute)
	cases := []struct {
		name, user, realm string
		wantID            string
		wantKey           []byte
		wantErr           error
	}{
		{"account", "alice", "r", "alice", LongTermKey("alice", "r", "alice-pw"), nil},
		{"unknown account", "zed", "r", "", nil, ErrNoSuchUser},
		{"wrong realm", "alice", "x", "", nil, errWrongRealm},
		{"REST user", valid, "r", "carol", LongTermKey(valid, "r", validPass), nil},
		{"REST timestamp only", bare, "r", bare, LongTermKey(bare, "r", barePass), nil},
		{"REST expired", expired, "r", "", nil, ErrExpired},
		{"REST garbage expiry", "12ab:carol", "r", "", nil, ErrNoSuchUser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, key, err := a.key(tc.user, tc.realm)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.wantID || string(key) != string(tc.wantKey) {
				t.Fatalf("got %q %x %v", id, key, err)
			}
		})
	}
	// Without a secret, REST usernames are unknown users.
	a.secret = ""
	if _, _, err := a.key(valid, "r"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("REST without secret: %v", err)
	}
}

func testUsersIn(realm string) UserKeys {
	return UserKeysFunc(func(u string) ([]byte, error) {
		if u == "alice" {
			return LongTermKey("alice", realm, "alice-pw"), nil
		}
		return nil, ErrNoSuchUser
	})
}

func TestStoreUsers(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddUser("alice", "punchline", "pw", false); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser("bob", "elsewhere", "pw", false); err != nil {
		t.Fatal(err)
	}
	u := StoreUsers(st, "punchline")
	key, err := u.TURNKey("alice")
	if err != nil || len(key) != md5.Size || string(key) != string(LongTermKey("alice", "punchline", "pw")) {
		t.Fatalf("alice: %x %v", key, err)
	}
	if _, err := u.TURNKey("bob"); !errors.Is(err, ErrNoSuchUser) || !strings.Contains(err.Error(), "realm") {
		t.Fatalf("bob made for another realm: %v", err)
	}
	if _, err := u.TURNKey("nobody"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("nobody: %v", err)
	}
}

// FuzzAuthenticatorKey feeds arbitrary usernames and realms to the
// credential parser (account name, or TURN REST "expiry:user"). It must not
// panic, and whatever it accepts must come with a 16-byte key.
func FuzzAuthenticatorKey(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	a := &authenticator{realm: "r", users: testUsersIn("r"), secret: "s", now: func() time.Time { return now }}
	valid, _, _ := RESTCredentials("s", "carol", now, time.Minute)
	for _, u := range []string{"alice", valid, "1800000060", "1800000060:", ":x", "99999999999999999999:x", "-5:x", "alice:bob:carol"} {
		f.Add(u, "r")
	}
	f.Fuzz(func(t *testing.T, username, realm string) {
		id, key, err := a.key(username, realm)
		if err != nil {
			return
		}
		if len(key) != md5.Size || id == "" {
			t.Fatalf("accepted %q with id %q and a %d-byte key", username, id, len(key))
		}
		if realm != "r" {
			t.Fatalf("accepted realm %q", realm)
		}
	})
}

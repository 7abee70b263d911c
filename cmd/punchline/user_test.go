package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/punchline/punchline/internal/store"
)

func runUserForTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runUser(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestUserAddListRemove(t *testing.T) {
	data := t.TempDir()
	if _, err := runUserForTest(t, "add", "alice", "--password", "s3cret", "--data", data, "--realm", "example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := runUserForTest(t, "add", "alice", "--password", "other", "--data", data, "--realm", "example.org"); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("second add: err = %v, want a hint about --replace", err)
	}
	if _, err := runUserForTest(t, "add", "bad name", "--password", "x", "--data", data); err == nil {
		t.Fatal("a name with a space was accepted")
	}
	if _, err := runUserForTest(t, "add", "bob", "--data", data); err == nil {
		t.Fatal("add without a password was accepted")
	}
	out, err := runUserForTest(t, "list", "--data", data)
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "example.org") {
		t.Fatalf("list: %v\n%s", err, out)
	}

	// Only hashes are stored, and they are the digest HA1 for the realm.
	st, err := store.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.User("alice")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if md5hex, _ := store.HA1("alice", "example.org", "s3cret"); u.HA1MD5 != md5hex {
		t.Errorf("stored HA1 %s, want %s", u.HA1MD5, md5hex)
	}

	if _, err := runUserForTest(t, "remove", "alice", "--data", data); err != nil {
		t.Fatal(err)
	}
	if _, err := runUserForTest(t, "remove", "alice", "--data", data); err == nil {
		t.Fatal("removing a missing user succeeded")
	}
}

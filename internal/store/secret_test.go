package store

import (
	"bytes"
	"testing"
)

func TestSecretIsCreatedOnceAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Secret("sip")
	if err != nil || len(a) != 32 {
		t.Fatalf("secret %x, %v", a, err)
	}
	b, _ := s.Secret("sip")
	other, _ := s.Secret("relay")
	if !bytes.Equal(a, b) || bytes.Equal(a, other) {
		t.Fatal("a name must always give the same secret, different names different ones")
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, _ := s.Secret("sip"); !bytes.Equal(a, c) {
		t.Fatal("secret changed across reopening the store")
	}
}

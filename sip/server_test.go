package sip

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/punchline/punchline/internal/store"
)

func TestNewRejectsBadConfig(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no store", Config{Listeners: []Listener{{Transport: "udp", Addr: "127.0.0.1:0"}}}, ErrNoStore},
		{"no listeners", Config{Store: st}, ErrNoListeners},
		{"unknown transport", Config{Store: st, Listeners: []Listener{{Transport: "sctp", Addr: "127.0.0.1:0"}}}, ErrBadListener},
		{"tls without a certificate", Config{Store: st, Listeners: []Listener{{Transport: "tls", Addr: "127.0.0.1:0"}}}, ErrTLSConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.cfg); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	for _, s := range []string{"udp", "udp:", "quic:1.2.3.4:5", "tcp:nohostport"} {
		if _, err := ParseListener(s); !errors.Is(err, ErrBadListener) {
			t.Errorf("ParseListener(%q) = %v, want ErrBadListener", s, err)
		}
	}
	if l, err := ParseListener("TCP:127.0.0.1:5060"); err != nil || l.Transport != "tcp" || l.Addr != "127.0.0.1:5060" {
		t.Errorf("ParseListener: %+v %v", l, err)
	}
}

func TestCloseIsIdempotentFlushesAndLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddUser("alice", "punchline", "apw", false)
	srv, err := New(Config{Store: st, FlushInterval: time.Hour, Listeners: []Listener{
		{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ua := newTCPUA(t, srv.Addrs()[1].Addr.String(), "alice", "apw")
	if res := ua.register("<sip:alice@10.0.0.1>", 300, ""); res.StatusCode != 200 {
		t.Fatalf("register: %d", res.StatusCode)
	}
	ua.conn.Close()
	// With an hour between flushes, only Close can have written the
	// binding.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	stored, err := st.Bindings()
	if err != nil || len(stored["alice"]) == 0 {
		t.Fatalf("binding not flushed at Close: %v %v", stored, err)
	}
}

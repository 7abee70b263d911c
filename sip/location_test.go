package sip

import (
	"encoding/json"
	"testing"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

func TestFixViaAddsReceivedAndRport(t *testing.T) {
	cases := []struct {
		name, via, src, want string
	}{
		{"rport asked: both filled", "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1;rport", "203.0.113.7:40123",
			"SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1;rport=40123;received=203.0.113.7"},
		{"no rport, private sent-by: received only (RFC 3261 18.2.1)", "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1", "203.0.113.7:40123",
			"SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1;received=203.0.113.7"},
		{"host name as sent-by: received", "SIP/2.0/UDP phone.example;branch=z9hG4bK1", "203.0.113.7:5060",
			"SIP/2.0/UDP phone.example;branch=z9hG4bK1;received=203.0.113.7"},
		{"sent-by is the source: untouched", "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1", "203.0.113.7:5060",
			"SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := "OPTIONS sip:x@y SIP/2.0\r\nVia: " + c.via + "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
			m, err := siplib.ParseMessage([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			req := m.(*siplib.Request)
			req.SetSource(c.src)
			fixVia(req)
			if got := req.Via().Value(); got != c.want {
				t.Fatalf("Via %q, want %q", got, c.want)
			}
		})
	}
}

func TestLocationLoadDropsExpiredAndFlushesTheDrop(t *testing.T) {
	now := time.Now()
	live := []Binding{{Contact: "sip:a@1.2.3.4", Q: 1, Expires: now.Add(time.Minute), Flow: Flow{"udp", "5.6.7.8:5060", ""}}}
	mixed := append([]Binding{{Contact: "sip:b@1.2.3.4", Q: 1, Expires: now.Add(-time.Second)}}, live...)
	dead := []Binding{{Contact: "sip:c@1.2.3.4", Q: 1, Expires: now.Add(-time.Minute)}}
	enc := func(bs []Binding) []byte { b, _ := json.Marshal(bs); return b }
	l := newLocation()
	n := l.load(map[string][]byte{"alice": enc(live), "bob": enc(mixed), "carol": enc(dead), "dave": []byte("{not json")}, now)
	if n != 2 {
		t.Fatalf("kept %d bindings, want 2", n)
	}
	if got := l.get("bob", now); len(got) != 1 || got[0].Contact != "sip:a@1.2.3.4" || got[0].Flow.Source != "5.6.7.8:5060" {
		t.Fatalf("bob: %+v", got)
	}
	dirty := l.takeDirty()
	if _, ok := dirty["alice"]; ok {
		t.Error("unchanged AOR marked dirty")
	}
	for _, aor := range []string{"bob", "carol", "dave"} {
		if _, ok := dirty[aor]; !ok {
			t.Errorf("%s not rewritten after dropping expired or unreadable bindings", aor)
		}
	}
	if dirty["carol"] != nil || dirty["dave"] != nil {
		t.Error("AORs without live bindings should be deleted (nil) from the store")
	}
}

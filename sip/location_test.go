package sip

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unsafe"

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
	enc := func(bs []Binding) []byte { return encodeBindings(nil, bs) }
	jsonEnc := func(bs []Binding) []byte { b, _ := json.Marshal(bs); return b }
	l := newLocation()
	n := l.load(map[string][]byte{"alice": enc(live), "bob": enc(mixed), "carol": enc(dead), "dave": []byte("{not json"),
		"erin": jsonEnc(live)}, now)
	if n != 3 {
		t.Fatalf("kept %d bindings, want 3", n)
	}
	if got := l.get("bob", now); len(got) != 1 || got[0].Contact != "sip:a@1.2.3.4" || got[0].Flow.Source != "5.6.7.8:5060" {
		t.Fatalf("bob: %+v", got)
	}
	dirty := l.takeDirty()
	if _, ok := dirty["alice"]; ok {
		t.Error("unchanged AOR marked dirty")
	}
	// erin's blob was written by an older version (JSON): it is read,
	// and rewritten in the binary form.
	if got, err := decodeBindings(dirty["erin"]); err != nil || dirty["erin"][0] != bindingsV1 || len(got) != 1 ||
		got[0].Contact != "sip:a@1.2.3.4" || !got[0].Expires.Equal(live[0].Expires) || got[0].Flow != live[0].Flow {
		t.Errorf("erin not migrated to the binary form: %v %+v", err, got)
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

func TestBindingsBlobRoundTrip(t *testing.T) {
	exp := time.Unix(1795600000, 123456789)
	bs := []Binding{
		{Contact: "sip:alice@192.0.2.1:5062;transport=udp", Q: 0.5, Expires: exp, CallID: "c1@host", CSeq: 4294967295,
			Flow: Flow{"udp", "203.0.113.7:40123", "127.0.0.1:5060"}, Instance: `"<urn:uuid:0001>"`, UserAgent: "phone/1.0"},
		{Contact: "sips:alice@[2001:db8::1]", Q: 1, Expires: exp.Add(time.Hour), Flow: Flow{Transport: "tls", Source: "[2001:db8::1]:5061"}},
	}
	raw := encodeBindings(nil, bs)
	got, err := decodeBindings(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bs) {
		t.Fatalf("%d bindings back, want %d", len(got), len(bs))
	}
	for i := range bs {
		if !got[i].Expires.Equal(bs[i].Expires) {
			t.Errorf("binding %d expires %v, want %v", i, got[i].Expires, bs[i].Expires)
		}
		got[i].Expires = bs[i].Expires
		if got[i] != bs[i] {
			t.Errorf("binding %d: %+v, want %+v", i, got[i], bs[i])
		}
	}
	if j, _ := json.Marshal(bs); len(raw) >= len(j) {
		t.Errorf("binary blob %d bytes, JSON %d: expected smaller", len(raw), len(j))
	}
	for cut := range raw {
		if _, err := decodeBindings(raw[:cut]); err == nil {
			t.Fatalf("truncated blob (%d of %d bytes) decoded", cut, len(raw))
		}
	}
	if _, err := decodeBindings(append(raw, 0)); err == nil {
		t.Fatal("blob with trailing garbage decoded")
	}
}

func FuzzDecodeBindings(f *testing.F) {
	exp := time.Unix(1795600000, 0)
	f.Add(encodeBindings(nil, []Binding{{Contact: "sip:a@1.2.3.4", Q: 1, Expires: exp, CallID: "x", CSeq: 2,
		Flow: Flow{"udp", "5.6.7.8:5060", "127.0.0.1:5060"}, UserAgent: "ua"}}))
	f.Add(encodeBindings(nil, nil))
	f.Add([]byte(`[{"c":"sip:a@1.2.3.4","q":1,"e":"2026-11-25T20:00:00Z","i":"x","n":2,"f":{"t":"udp","s":"5.6.7.8:5060"}}]`))
	f.Add([]byte{bindingsV1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		bs, err := decodeBindings(raw)
		if err != nil || len(raw) == 0 || raw[0] != bindingsV1 {
			return
		}
		// What decodes re-encodes to the same bytes.
		if again := encodeBindings(nil, bs); string(again) != string(raw) {
			t.Fatalf("re-encoding differs:\n%x\n%x", raw, again)
		}
	})
}

func TestInternerSharesAndStaysBounded(t *testing.T) {
	in := interner{m: make(map[string]string)}
	a := in.intern(string([]byte("phone/1.0")))
	b := in.intern(string([]byte("phone/1.0")))
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("equal strings not shared")
	}
	for i := range 3 * internMax {
		in.intern(strconv.Itoa(i))
	}
	if len(in.m) > internMax {
		t.Fatalf("interner holds %d strings, bound %d", len(in.m), internMax)
	}
}

package ice_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/punchline/punchline/ice"
)

// FuzzParse feeds arbitrary bodies to Parse. Whatever parses must marshal,
// and the result must parse to the same values a phone relies on.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "sdp", "*.sdp"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ice.Parse(body)
		if err != nil {
			return
		}
		out, err := d.Marshal()
		if err != nil {
			// Parse accepts some bodies Marshal refuses (no codec, odd
			// port); that is fine as long as it says so.
			return
		}
		d2, err := ice.Parse(out)
		if err != nil {
			t.Fatalf("our own output does not parse: %v\n%q\nfrom %q", err, out, body)
		}
		// Half a credential pair is not ICE, and Marshal drops it.
		if d.HasICE() != d2.HasICE() || (d.HasICE() && (d2.Ufrag != d.Ufrag || d2.Pwd != d.Pwd)) {
			t.Fatalf("round trip changed ICE credentials: %q/%q -> %q/%q", d.Ufrag, d.Pwd, d2.Ufrag, d2.Pwd)
		}
		if d2.Address != d.Address || d2.Port != d.Port ||
			d2.TelephoneEvent != d.TelephoneEvent || d2.RTCPMux != d.RTCPMux || d2.Direction != d.Direction ||
			d2.RTCPPort != d.RTCPPort || d2.RTCPAddress != d.RTCPAddress {
			t.Fatalf("round trip changed the description:\n%+v\n%+v\n%q", d, d2, out)
		}
		if d.HasICE() && !slices.Equal(d.Candidates, d2.Candidates) {
			t.Fatalf("candidates changed: %q -> %q", d.Candidates, d2.Candidates)
		}
		_, _ = ice.Negotiate(d.Codecs)
		_, _ = ice.NewAnswer(d, d)
		_ = d.DefaultMatches()
	})
}

// FuzzCandidate feeds arbitrary a=candidate values through pion's parser
// and writer: what parses must survive Marshal and parse again unchanged,
// and DefaultCandidate must never fail on it.
func FuzzCandidate(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "sdp", "*.sdp"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if d, err := ice.Parse(b); err == nil {
			for _, c := range d.Candidates {
				f.Add(c)
			}
		}
	}
	f.Add("candidate:1 1 udp 2130706431 ::1 5000 typ host")
	f.Add("1 1 tcp 1 10.0.0.1 9 typ host tcptype active")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ice.ParseCandidate(raw)
		if err != nil {
			return
		}
		m, err := ice.MarshalCandidate(raw)
		if err != nil {
			t.Fatalf("parsed but does not marshal: %v", err)
		}
		c2, err := ice.ParseCandidate(m)
		if err != nil {
			t.Fatalf("own output %q does not parse: %v", m, err)
		}
		if c != c2 {
			t.Fatalf("round trip changed the candidate:\n%+v\n%+v\n%q -> %q", c, c2, raw, m)
		}
		_, _ = ice.DefaultCandidate([]string{raw, m})
	})
}

package ua

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// FuzzRouteSet feeds Record-Route values from the wire to the route-set
// code: it must never panic, and every entry it keeps must be a URI with a
// host.
func FuzzRouteSet(f *testing.F) {
	for _, s := range []string{
		"<sip:p1.example.com;lr>",
		"<sip:10.0.0.1:5060;transport=tcp;lr>, <sip:p2.example.com;lr;ftag=abc>",
		`"Proxy, One" <sip:p1.example;lr>,<sip:[2001:db8::1]:5070;lr>`,
		"sip:bare.example;lr",
		"<sip:a;lr>,,<sip:b;lr>",
		"<<<>>>,\",",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, part := range splitHeaderList(v) {
			if part == "" || part != strings.TrimSpace(part) {
				t.Fatalf("splitHeaderList(%q) gave %q", v, part)
			}
		}
		for _, u := range routeSetFrom([]sip.Header{sip.NewHeader("Record-Route", v)}, true) {
			if u.Host == "" {
				t.Fatalf("route entry without host from %q", v)
			}
		}
	})
}

// FuzzResolveTarget feeds call targets as a user types them: no panic, and
// an accepted target always names a user.
func FuzzResolveTarget(f *testing.F) {
	u := &UA{cfg: Config{Domain: "example.org"}}
	for _, s := range []string{"bob", "bob@example.org", "sip:bob@10.0.0.1:5070;transport=tcp", "sips:x@y", "@", "sip:", " bob ", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		uri, err := u.resolveTarget(target)
		if err == nil && uri.User == "" {
			t.Fatalf("target %q accepted without a user", target)
		}
	})
}

func TestReasonHeaderRoundTrip(t *testing.T) {
	for _, why := range []string{
		"ICE failed: no candidate pair answered within 10s",
		`quotes "inside" and a \ backslash`,
		"line\r\nbreak",
		strings.Repeat("x", 500),
	} {
		h := reasonHeader(why)
		if strings.ContainsAny(h, "\r\n") {
			t.Fatalf("header %q carries a line break", h)
		}
		got := reasonText(h)
		want := strings.ReplaceAll(why, "\r\n", "  ")
		if len(want) > maxReasonText {
			want = want[:maxReasonText]
		}
		if got != strings.TrimSpace(want) {
			t.Errorf("reasonText(reasonHeader(%q)) = %q", why, got)
		}
	}
	for v, want := range map[string]string{
		`SIP;cause=200;text="Call completed elsewhere"`: "Call completed elsewhere",
		`Q.850;cause=16;text=normal`:                    "normal",
		`SIP ;cause=503 ; TEXT="a\"b"`:                  `a"b`,
		`SIP;cause=487`:                                 "",
		`text="unterminated`:                            "unterminated",
	} {
		if got := reasonText(v); got != want {
			t.Errorf("reasonText(%q) = %q, want %q", v, got, want)
		}
	}
}

// FuzzReasonText feeds Reason header values from the wire: no panic, and
// the text is bounded, valid UTF-8 and free of control characters.
func FuzzReasonText(f *testing.F) {
	for _, s := range []string{
		`SIP;cause=503;text="ICE failed: no candidate pair answered within 10s"`,
		`Q.850;cause=16;text=normal, SIP;cause=200;text="elsewhere"`,
		`text="a\"b\\c`,
		`text=`,
		"text=\"\x00\x7f\xff\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := reasonText(v)
		if len(got) > maxReasonText || !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("reasonText(%q) = %q", v, got)
		}
		if h := reasonHeader(v); strings.ContainsAny(h, "\r\n") || !utf8.ValidString(h) {
			t.Fatalf("reasonHeader(%q) = %q", v, h)
		}
	})
}

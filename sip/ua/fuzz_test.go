package ua

import (
	"strings"
	"testing"

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

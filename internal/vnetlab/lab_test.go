package vnetlab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/punchline/punchline/ice"
)

// TestNATBehavioursAsNamed checks that pion's vnet NATs, configured by
// this package, behave as their names say: measured, not assumed.
func TestNATBehavioursAsNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sites := []Site{{Name: "pub", NAT: Public}}
		for _, n := range NATTypes {
			sites = append(sites, Site{Name: n.String(), NAT: n})
		}
		lab, err := New(Config{Sites: sites})
		if err != nil {
			t.Fatal(err)
		}
		defer lab.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, h := range lab.Hosts {
			got, err := lab.MeasureNAT(ctx, h)
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			t.Logf("%-16s measured: %s", h.NAT, got)
			if want := h.NAT.Behaviour(); got != want {
				t.Errorf("%s NAT measures as %s, want %s", h.NAT, got, want)
			}
		}
	})
}

// TestMatrixInProcess runs issue 5's matrix through the simulated NATs:
// each cell is its own lab, two ICE sessions from package ice exchange
// SDP, connect, and carry packets both ways; the route must be the one
// theory predicts, seen from both sides. Each cell runs in a synctest
// bubble, so timers and the WAN delay run on a virtual clock: the route
// decision (a direct pair answering before the relayed pair's acceptance
// wait) does not depend on how loaded the machine is, and the setup times
// in the table are protocol time, not CPU time.
func TestMatrixInProcess(t *testing.T) {
	var table strings.Builder
	fmt.Fprintf(&table, "%-34s %-8s %-8s %-12s %8s %8s\n", "cell", "want", "route", "pair", "gather", "ice")
	for _, c := range Matrix() {
		t.Run(c.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lab, err := New(Config{Sites: c.Sites})
				if err != nil {
					t.Fatal(err)
				}
				defer lab.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				call, err := lab.Dial(ctx, lab.Host(c.From), lab.Host(c.To), ice.PolicyAll)
				if err != nil {
					t.Fatal(err)
				}
				defer call.Close()
				r := call.Route
				fmt.Fprintf(&table, "%-34s %-8s %-8s %-12s %6dms %6dms\n", c.Name, c.Want, r.Route,
					r.LocalType+"/"+r.RemoteType, call.Gather.Milliseconds(), call.Setup.Milliseconds())
				if r.Route != c.Want || call.CalleeRoute.Route != c.Want {
					t.Errorf("route %s (callee sees %s), want %s: %+v", r.Route, call.CalleeRoute.Route, c.Want, r)
				}
				ab, ba, err := call.Exchange(5)
				if err != nil {
					t.Fatal(err)
				}
				if ab < 5 || ba < 5 {
					t.Errorf("packets carried %d/5 caller→callee, %d/5 back", ab, ba)
				}
			})
		})
	}
	t.Log("simulated time, WAN one-way delay 10 ms:\n" + table.String())
}

// TestMatrixRealTime runs two cells on the wall clock, as punchline demo
// does, to show the lab works outside a synctest bubble too: one that
// must go direct and one that must be relayed. The direct cell is one
// whose pair answers within a few check rounds (no symmetric NAT), far
// inside the 1 s relay wait even on a loaded runner; the full matrix's
// route assertions run on the virtual clock above.
func TestMatrixRealTime(t *testing.T) {
	for _, c := range Matrix() {
		if c.Name != "restricted ↔ port-restricted" && c.Name != "symmetric ↔ symmetric" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			lab, err := New(Config{Sites: c.Sites})
			if err != nil {
				t.Fatal(err)
			}
			defer lab.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call, err := lab.Dial(ctx, lab.Host(c.From), lab.Host(c.To), ice.PolicyAll)
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			t.Logf("%s: %s %s/%s, ICE %v", c.Name, call.Route.Route, call.Route.LocalType, call.Route.RemoteType, call.Setup)
			if call.Route.Route != c.Want {
				t.Errorf("route %s, want %s", call.Route.Route, c.Want)
			}
			if ab, ba, err := call.Exchange(3); err != nil || ab < 3 || ba < 3 {
				t.Errorf("carried %d/3 and %d/3 (%v)", ab, ba, err)
			}
		})
	}
}

func TestExpectedRouteMatchesTheory(t *testing.T) {
	relayed := 0
	for _, c := range Matrix() {
		if c.Want == ice.RouteRelayed {
			relayed++
			if !(c.CallerNAT == Symmetric || c.CalleeNAT == Symmetric) {
				t.Errorf("%s relayed without a symmetric NAT", c.Name)
			}
		}
	}
	if len(Matrix()) != 12 || relayed != 2 {
		t.Fatalf("%d cells with %d relayed, want 12 with 2 (port-restricted↔symmetric, symmetric↔symmetric)", len(Matrix()), relayed)
	}
}

// TestKeepalivesHoldNATMappings: NATs that forget idle UDP mappings after
// 5 s, a call that then carries no media for 30 s (on hold, say): ICE's
// keepalives (DefaultKeepaliveInterval, 1 s) must keep both NATs' mappings,
// so the call still works on the same direct pair afterwards. Two controls
// show the test can fail: these NATs really drop a mapping left idle for
// 6 s, and without keepalives the same call dies. (pion pings the selected
// pair at least every 2 s whatever the interval, so only switching
// keepalives off makes them too sparse.) Virtual clock: the 30 s silences
// cost no real time.
func TestKeepalivesHoldNATMappings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keepalive time.Duration // 0: the default; negative: none
		survives  bool
	}{
		{"default keepalives hold the call", 0, true},
		{"without keepalives it dies", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testSilence(t, tc.keepalive, tc.survives) })
		})
	}
}

func testSilence(t *testing.T, keepalive time.Duration, survives bool) {
	// Restricted cone against symmetric: direct, and both NATs must keep
	// their mapping, the symmetric one admitting only the exact peer.
	lab, err := New(Config{
		Sites: []Site{
			{Name: "alice", NAT: RestrictedCone, MappingLifetime: 5 * time.Second},
			{Name: "bob", NAT: Symmetric, MappingLifetime: 5 * time.Second},
		},
		ICE: func(_ *Host, c *ice.Config) {
			c.KeepaliveInterval = keepalive
			if keepalive < 0 {
				// Keep pion from declaring the pair dead on its own: only
				// the NATs should decide this outcome.
				c.DisconnectedTimeout, c.FailedTimeout = -1, -1
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, h := range lab.Hosts {
		alive, err := lab.MappingSurvives(ctx, h, 6*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if alive {
			t.Fatalf("%s's NAT kept a mapping idle for 6 s; the test would prove nothing", h.Name)
		}
		if alive, _ := lab.MappingSurvives(ctx, h, 2*time.Second); !alive {
			t.Fatalf("%s's NAT dropped a mapping idle for only 2 s", h.Name)
		}
	}

	call, err := lab.Dial(ctx, lab.Host("alice"), lab.Host("bob"), ice.PolicyAll)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	before := call.Route
	if before.Route != ice.RouteDirect {
		t.Fatalf("route %+v, want direct", before)
	}
	time.Sleep(30 * time.Second)
	ab, ba, err := call.Exchange(5)
	if err != nil {
		t.Fatal(err)
	}
	if !survives {
		if ab+ba > 0 {
			t.Fatalf("without keepalives the call still carried %d and %d packets", ab, ba)
		}
		return
	}
	if ab < 5 || ba < 5 {
		t.Fatalf("after 30 s of silence carried %d/5 and %d/5", ab, ba)
	}
	for _, s := range []*ice.Session{call.Caller, call.Callee} {
		if st := s.State(); st != ice.StateConnected {
			t.Fatalf("state after 30 s of silence: %v", st)
		}
	}
	if after, err := call.Caller.Route(); err != nil || after != before {
		t.Fatalf("route changed during silence: %+v -> %+v (%v)", before, after, err)
	}
}

func TestNewRejectsBadLayouts(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Sites: []Site{{Name: "big", NAT: FullCone, Hosts: 51}}},
	} {
		if l, err := New(cfg); !errors.Is(err, ErrLab) {
			if l != nil {
				l.Close()
			}
			t.Errorf("New(%+v) = %v, want ErrLab", cfg, err)
		}
	}
	l, err := New(Config{Sites: []Site{{Name: "a", NAT: Symmetric}}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Host("a") == nil || l.Host("nobody") != nil || l.Relay() == nil {
		t.Error("Host/Relay lookups wrong")
	}
	l.Close()
	l.Close() // idempotent
}

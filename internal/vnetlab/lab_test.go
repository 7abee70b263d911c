package vnetlab

import (
	"context"
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
// must go direct through a symmetric NAT and one that must be relayed.
func TestMatrixRealTime(t *testing.T) {
	for _, c := range Matrix() {
		if c.Name != "full-cone ↔ symmetric" && c.Name != "symmetric ↔ symmetric" {
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

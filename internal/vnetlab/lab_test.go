package vnetlab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/punchline/punchline/ice"
)

// TestNATBehavioursAsNamed checks that pion's vnet NATs, configured by
// this package, behave as their names say: measured, not assumed.
func TestNATBehavioursAsNamed(t *testing.T) {
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
}

// cell is one call of the matrix.
type cell struct {
	name     string
	sites    []Site
	from, to string
	want     string // ice.RouteDirect or ice.RouteRelayed
}

// Matrix is the issue 5 matrix: every pair of the four NAT types, both
// phones on one LAN, and one side public. Hole punching works everywhere
// except port-restricted↔symmetric and symmetric↔symmetric.
func Matrix() []cell {
	var cells []cell
	for i, a := range NATTypes {
		for _, b := range NATTypes[i:] {
			want := ice.RouteDirect
			if (a == PortRestrictedCone || a == Symmetric) && b == Symmetric {
				want = ice.RouteRelayed
			}
			cells = append(cells, cell{
				name:  a.String() + " ↔ " + b.String(),
				sites: []Site{{Name: "alice", NAT: a}, {Name: "bob", NAT: b}},
				from:  "alice", to: "bob", want: want,
			})
		}
	}
	cells = append(cells,
		cell{name: "same LAN (port-restricted)", sites: []Site{{Name: "alice", NAT: PortRestrictedCone, Hosts: 2}},
			from: "alice", to: "alice-2", want: ice.RouteDirect},
		cell{name: "public ↔ symmetric", sites: []Site{{Name: "alice", NAT: Public}, {Name: "bob", NAT: Symmetric}},
			from: "alice", to: "bob", want: ice.RouteDirect},
	)
	return cells
}

func TestMatrixInProcess(t *testing.T) {
	var table strings.Builder
	fmt.Fprintf(&table, "%-30s %-8s %-14s %8s %8s\n", "cell", "route", "pair", "gather", "setup")
	for _, c := range Matrix() {
		t.Run(c.name, func(t *testing.T) {
			lab, err := New(Config{Sites: c.sites})
			if err != nil {
				t.Fatal(err)
			}
			defer lab.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call, err := lab.Dial(ctx, lab.Host(c.from), lab.Host(c.to), ice.PolicyAll)
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			r := call.Route
			fmt.Fprintf(&table, "%-30s %-8s %-14s %6dms %6dms\n", c.name, r.Route,
				r.LocalType+"/"+r.RemoteType, call.Gather.Milliseconds(), call.Setup.Milliseconds())
			if r.Route != c.want || call.CalleeRoute.Route != c.want {
				t.Errorf("route %s (callee sees %s), want %s: %+v", r.Route, call.CalleeRoute.Route, c.want, r)
			}
			ab, ba, err := call.Exchange(5)
			if err != nil {
				t.Fatal(err)
			}
			if ab < 5 || ba < 5 {
				t.Errorf("packets carried %d/5 caller→callee, %d/5 back", ab, ba)
			}
		})
	}
	t.Log("\n" + table.String())
}

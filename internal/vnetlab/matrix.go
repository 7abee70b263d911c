package vnetlab

import "github.com/punchline/punchline/ice"

// Cell is one call of the NAT matrix: a lab layout, who calls whom, and
// the route the call must take.
type Cell struct {
	// Name reads as the pair ("port-restricted ↔ symmetric").
	Name string
	// CallerNAT and CalleeNAT are the behaviours in front of each phone.
	CallerNAT, CalleeNAT NAT
	// Sites is the lab to build; From and To name the hosts.
	Sites    []Site
	From, To string
	// Want is ice.RouteDirect or ice.RouteRelayed.
	Want string
	// Extra marks the cells beyond the ten NAT pairings (one LAN, public).
	Extra bool
}

// ExpectedRoute is what theory says for phones behind a and b (NOTES,
// RFC 4787): hole punching works unless one side is symmetric and the
// other filters by port (port-restricted or symmetric): the symmetric
// side's new mapping towards the peer has a port the peer never sent to,
// and the peer's NAT drops it; the other way, the symmetric NAT only
// admits the exact address its mapping was made for.
func ExpectedRoute(a, b NAT) string {
	portFiltering := func(n NAT) bool { return n == PortRestrictedCone || n == Symmetric }
	if (a == Symmetric && portFiltering(b)) || (b == Symmetric && portFiltering(a)) {
		return ice.RouteRelayed
	}
	return ice.RouteDirect
}

// Matrix returns issue 5's matrix: every pair of the four NAT types (10
// cells, each phone behind its own router), both phones on one LAN, and
// one side with a public address (facing the hardest NAT).
func Matrix() []Cell {
	var cells []Cell
	for i, a := range NATTypes {
		for _, b := range NATTypes[i:] {
			cells = append(cells, Cell{
				Name:      a.String() + " ↔ " + b.String(),
				CallerNAT: a, CalleeNAT: b,
				Sites: []Site{{Name: "alice", NAT: a}, {Name: "bob", NAT: b}},
				From:  "alice", To: "bob", Want: ExpectedRoute(a, b),
			})
		}
	}
	return append(cells,
		Cell{
			Name: "one LAN (behind port-restricted)", CallerNAT: PortRestrictedCone, CalleeNAT: PortRestrictedCone,
			Sites: []Site{{Name: "alice", NAT: PortRestrictedCone, Hosts: 2}},
			From:  "alice", To: "alice-2", Want: ice.RouteDirect, Extra: true,
		},
		Cell{
			Name: "public ↔ symmetric", CallerNAT: Public, CalleeNAT: Symmetric,
			Sites: []Site{{Name: "alice", NAT: Public}, {Name: "bob", NAT: Symmetric}},
			From:  "alice", To: "bob", Want: ExpectedRoute(Public, Symmetric), Extra: true,
		},
	)
}

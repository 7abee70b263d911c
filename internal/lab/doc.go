// Package lab builds a kernel NAT lab out of Linux network namespaces so the
// real punchline binaries can be run behind real NATs.
//
// A Lab is one topology, private to the test that built it:
//
//	          public namespace "pub" (bridge br0, 203.0.113.0/24, TEST-NET-3)
//	          server addresses 203.0.113.1-.3, public hosts 203.0.113.100+
//	         /                    |                       \
//	router r1 (wan0 .11)    router r2 (wan0 .12)    public host p1 (.100)
//	nftables NAT            nftables NAT
//	lan0 10.0.1.1           lan0 10.0.2.1
//	   |                       |
//	hosts 10.0.1.2, .3 ...  hosts 10.0.2.2 ...
//
// No namespace has a link to the root namespace: every interface is created
// directly inside its namespace, so nothing a test sends can leave the lab.
//
// The routers emulate the NAT behaviours of RFC 4787 with nftables:
//
//   - full cone: endpoint-independent mapping (EIM) and filtering (EIF):
//     masquerade plus a prerouting DNAT of every inbound UDP packet to the
//     LAN's first host;
//   - restricted cone: EIM with address-dependent filtering: masquerade,
//     each (destination address, source port) sent to is remembered in an nft
//     set, and inbound UDP is DNATed only when it comes from an address in it;
//   - port-restricted cone: EIM with address-and-port-dependent filtering:
//     plain masquerade (Linux keeps the source port and reuses the mapping;
//     conntrack filters by address and port);
//   - symmetric: address-and-port-dependent mapping: masquerade fully-random.
//
// Every router drops new unsolicited packets addressed to itself, as home
// routers do; without that, a hole-punching packet that arrives first leaves
// a conntrack entry that collides with the port-preserving mapping and the
// NAT picks another port (see ../../shared notes on NAT emulation).
//
// Emulations are checked, not trusted: Lab.MeasureNAT runs the RFC 5780 NAT
// behaviour discovery tests (mapping seen from two server addresses,
// filtering probed with CHANGE-REQUEST) from inside a LAN against a small
// STUN responder on two public addresses, and Lab.VerifyNAT fails when the
// measured behaviour is not the one the NAT type names.
//
// Namespace names carry the owning process id ("pl<pid>-<id>-<role>"), so
// Sweep can delete what an interrupted run left behind without touching the
// namespaces of a lab that is still running in another process.
package lab

package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// NATType names the NAT a router emulates, in the classic cone terms that
// RFC 4787 §4 and §5 map onto mapping and filtering behaviours.
type NATType int

const (
	// PortRestrictedCone is the zero value because it is what a plain Linux
	// masquerade gives: EIM with address-and-port-dependent filtering.
	PortRestrictedCone NATType = iota
	// FullCone is EIM with endpoint-independent filtering.
	FullCone
	// RestrictedCone is EIM with address-dependent filtering.
	RestrictedCone
	// Symmetric is address-and-port-dependent mapping (and filtering).
	Symmetric
)

// NATTypes lists every emulated type in the order tables print them.
var NATTypes = []NATType{FullCone, RestrictedCone, PortRestrictedCone, Symmetric}

func (n NATType) String() string {
	switch n {
	case FullCone:
		return "full-cone"
	case RestrictedCone:
		return "restricted-cone"
	case PortRestrictedCone:
		return "port-restricted"
	case Symmetric:
		return "symmetric"
	}
	return fmt.Sprintf("nat(%d)", int(n))
}

// Behavior is one RFC 4787 mapping or filtering behaviour.
type Behavior string

// The three behaviours RFC 4787 §4.1 (mapping) and §5 (filtering) define.
const (
	EndpointIndependent     Behavior = "endpoint-independent"
	AddressDependent        Behavior = "address-dependent"
	AddressAndPortDependent Behavior = "address-and-port-dependent"
)

// NATBehavior is what a NAT does, as RFC 5780 measures it.
type NATBehavior struct {
	Mapping   Behavior `json:"mapping"`
	Filtering Behavior `json:"filtering"`
}

func (b NATBehavior) String() string {
	return "mapping " + string(b.Mapping) + ", filtering " + string(b.Filtering)
}

// Expected is the behaviour the NAT type names.
func (n NATType) Expected() NATBehavior {
	switch n {
	case FullCone:
		return NATBehavior{EndpointIndependent, EndpointIndependent}
	case RestrictedCone:
		return NATBehavior{EndpointIndependent, AddressDependent}
	case Symmetric:
		return NATBehavior{AddressAndPortDependent, AddressAndPortDependent}
	default:
		return NATBehavior{EndpointIndependent, AddressAndPortDependent}
	}
}

// rulesetParams is what a router's nftables ruleset is made from.
type rulesetParams struct {
	nat NATType
	// inner is the LAN host that full and restricted cone forward inbound
	// UDP to: DNAT needs one target, so those two emulations serve one host.
	inner netip.Addr
	// udpTimeout bounds how long the restricted-cone peer set remembers a
	// destination; it follows the conntrack UDP timeout.
	udpTimeout time.Duration
	// tcpOnlyTo, when set, makes the router forward nothing out of the LAN
	// but TCP to these endpoints.
	tcpOnlyTo []netip.AddrPort
}

// ruleset renders the router's nftables ruleset. Everything lives in one
// table so the restricted cone's egress rule and its ingress lookup share
// the set.
func ruleset(p rulesetParams) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	timeout := p.udpTimeout
	if timeout <= 0 {
		// The kernel's default timeout for a UDP flow that saw replies.
		timeout = 120 * time.Second
	}
	line("table ip lab {")
	if p.nat == RestrictedCone {
		// Keyed by destination and inner source port: with port
		// preservation the inner port is the mapping's external port, so
		// the filter is per mapping as RFC 4787 §5 describes.
		line("  set peers {")
		line("    type ipv4_addr . inet_service")
		line("    flags dynamic,timeout")
		line("    timeout %ds", int(timeout.Round(time.Second)/time.Second))
		line("  }")
	}
	line("  chain prerouting {")
	line("    type nat hook prerouting priority dstnat; policy accept;")
	switch p.nat {
	case FullCone:
		line(`    iifname "wan0" meta l4proto udp dnat to %s`, p.inner)
	case RestrictedCone:
		line(`    iifname "wan0" meta l4proto udp ip saddr . udp dport @peers dnat to %s`, p.inner)
	}
	line("  }")
	line("  chain postrouting {")
	line("    type nat hook postrouting priority srcnat; policy accept;")
	if p.nat == Symmetric {
		line(`    oifname "wan0" masquerade fully-random`)
	} else {
		line(`    oifname "wan0" masquerade`)
	}
	line("  }")
	line("  chain forward {")
	line("    type filter hook forward priority filter; policy accept;")
	if len(p.tcpOnlyTo) > 0 {
		line(`    iifname "wan0" ct state established,related accept`)
		for _, ap := range p.tcpOnlyTo {
			line(`    iifname "lan0" ip daddr %s tcp dport %d accept`, ap.Addr(), ap.Port())
		}
		line(`    iifname "lan0" drop`)
		line(`    iifname "wan0" drop`)
	}
	if p.nat == RestrictedCone {
		line(`    iifname "lan0" oifname "wan0" meta l4proto udp update @peers { ip daddr . udp sport }`)
	}
	line("  }")
	// Home routers drop unsolicited packets to themselves; see the package
	// comment for why the lab cannot do without it.
	line("  chain input {")
	line("    type filter hook input priority filter; policy accept;")
	line(`    iifname "wan0" ct state new drop`)
	line("  }")
	line("}")
	return b.String()
}

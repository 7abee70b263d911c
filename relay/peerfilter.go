package relay

import (
	"net"
	"net/netip"
)

// defaultDenied are the peer ranges a relay must not reach unless the
// operator opens them: loopback, "this network", private and shared address
// space, link-local (cloud metadata at 169.254.169.254 included), multicast,
// reserved and broadcast, and their IPv6 counterparts. Reaching them would
// turn the relay into a way into the operator's own network (RFC 8656 §21.3;
// coturn refuses the same families by default).
var defaultDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network" (RFC 791); 0.0.0.0 reaches the host itself
	netip.MustParsePrefix("10.0.0.0/8"),     // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space, carrier NAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata services
	netip.MustParsePrefix("172.16.0.0/12"),  // private (RFC 1918)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.168.0.0/16"), // private (RFC 1918)
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking (RFC 2544), often lab networks
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, 255.255.255.255 broadcast included
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("::/96"),          // deprecated IPv4-compatible addresses
	netip.MustParsePrefix("100::/64"),       // discard-only (RFC 6666)
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("fc00::/7"),       // unique local (RFC 4193)
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
	netip.MustParsePrefix("2001:db8::/32"),  // documentation; never a real peer
}

// nat64 is the well-known NAT64 prefix (RFC 6052): a peer there is really
// the IPv4 address in its last 32 bits, so that address decides.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// PeerFilter decides which peer addresses clients may create permissions
// and channels for. Its zero value applies the default policy.
//
// Order: an address in Deny is refused; else one in Allow is admitted;
// else the built-in default list refuses the special ranges above; else it
// is admitted. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and NAT64
// addresses (64:ff9b::a.b.c.d) are judged as the IPv4 address they carry,
// so the IPv6 spelling of 127.0.0.1 is as refused as 127.0.0.1; a 6to4
// address (2002::/16) is refused when the IPv4 address it embeds is.
type PeerFilter struct {
	Allow []netip.Prefix
	Deny  []netip.Prefix
}

// AllowedIP reports whether a peer IP may be relayed to.
func (f PeerFilter) AllowedIP(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	return f.Allowed(a)
}

// Allowed reports whether a peer address may be relayed to.
func (f PeerFilter) Allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	if a.Is6() && a.As16()[0] == 0x20 && a.As16()[1] == 0x02 {
		// 6to4 (RFC 3056): 2002:AABB:CCDD::/48 carries IPv4 AA.BB.CC.DD.
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if !f.Allowed(v4) {
			return false
		}
	}
	if containsAny(f.Deny, a) {
		return false
	}
	if containsAny(f.Allow, a) {
		return true
	}
	return !containsAny(defaultDenied, a)
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		// Unmap the prefix too, so an operator may write ::ffff:10.0.0.0/104.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(a) {
			return true
		}
	}
	return false
}

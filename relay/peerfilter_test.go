package relay

import (
	"net"
	"net/netip"
	"testing"
)

func TestPeerFilterDefaults(t *testing.T) {
	cases := []struct {
		peer string
		ok   bool
	}{
		{"8.8.8.8", true},
		{"203.0.113.7", true},
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.128.0.1", true},
		{"169.254.169.254", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"::", false},
		{"::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::7f00:1", false}, // NAT64 spelling of 127.0.0.1
		{"64:ff9b::808:808", true}, // NAT64 spelling of 8.8.8.8
		{"2002:7f00:1::1", false},  // 6to4 carrying 127.0.0.1
		{"2002:a00:1::1", false},   // 6to4 carrying 10.0.0.1
		{"2002:808:808::1", true},  // 6to4 carrying 8.8.8.8
		{"::127.0.0.1", false},     // deprecated IPv4-compatible
		{"fe80::1%eth0", false},
	}
	var f PeerFilter
	for _, tc := range cases {
		a := netip.MustParseAddr(tc.peer)
		if got := f.Allowed(a); got != tc.ok {
			t.Errorf("Allowed(%s) = %v, want %v", tc.peer, got, tc.ok)
		}
	}
	if f.AllowedIP(nil) {
		t.Error("a nil IP was allowed")
	}
	if !f.AllowedIP(net.ParseIP("8.8.4.4")) || f.AllowedIP(net.ParseIP("127.0.0.1").To16()) {
		t.Error("AllowedIP disagrees with Allowed")
	}
}

func TestPeerFilterAllowAndDeny(t *testing.T) {
	p := netip.MustParsePrefix
	f := PeerFilter{
		Allow: []netip.Prefix{p("127.0.0.0/8"), p("10.0.0.0/8"), p("::1/128")},
		Deny:  []netip.Prefix{p("10.9.0.0/16"), p("198.51.100.0/24"), p("::ffff:127.0.0.2/128")},
	}
	cases := []struct {
		name, peer string
		ok         bool
	}{
		{"allowed loopback", "127.0.0.1", true},
		{"allowed loopback in its mapped spelling", "::ffff:127.0.0.1", true},
		{"allowed IPv6 loopback", "::1", true},
		{"allowed private range", "10.1.2.3", true},
		{"deny beats allow", "10.9.8.7", false},
		{"deny written as mapped prefix applies to IPv4", "127.0.0.2", false},
		{"deny closes a public range", "198.51.100.20", false},
		{"other defaults stay denied", "192.168.0.1", false},
		{"public stays allowed", "1.1.1.1", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.Allowed(netip.MustParseAddr(tc.peer)); got != tc.ok {
				t.Errorf("Allowed(%s) = %v, want %v", tc.peer, got, tc.ok)
			}
		})
	}
}

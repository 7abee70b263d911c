package lab

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestEmulatedNATsBehaveAsNamed builds one router of every type and checks
// each against RFC 5780 measurements: the lab's NAT names are only as good
// as this test.
func TestEmulatedNATsBehaveAsNamed(t *testing.T) {
	t.Parallel()
	var lans []LANConfig
	for _, n := range NATTypes {
		lans = append(lans, LANConfig{NAT: n})
	}
	l := newLab(t, Config{LANs: lans, PublicHosts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.VerifyAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Show what was measured, and check the four types really differ:
	// a lab where every router measured alike would prove nothing.
	seen := map[NATBehavior]NATType{}
	for _, lan := range l.LANs {
		rep, err := l.MeasureNAT(ctx, lan.Hosts[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-16s %s; mapped %v", lan.NAT, rep.Behavior, rep.Mapped)
		if other, dup := seen[rep.Behavior]; dup {
			t.Errorf("%s and %s measure the same: %s", lan.NAT, other, rep.Behavior)
		}
		seen[rep.Behavior] = lan.NAT
	}
}

// TestShortMappingsExpire checks the NAT used for the keepalive test: a
// mapping idle for less than its timeout survives, one idle longer is gone.
func TestShortMappingsExpire(t *testing.T) {
	t.Parallel()
	l := newLab(t, Config{LANs: []LANConfig{{NAT: PortRestrictedCone, UDPTimeout: 4 * time.Second}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// VerifyNAT includes the lifetime check because UDPTimeout is set.
	if err := l.VerifyNAT(ctx, l.LANs[0]); err != nil {
		t.Fatal(err)
	}
}

// TestUDPBlockedFirewall checks the LAN whose router passes only TCP to
// the server: UDP and other TCP destinations get nothing.
func TestUDPBlockedFirewall(t *testing.T) {
	t.Parallel()
	allowed := netip.AddrPortFrom(serverAddr, 3478)
	l := newLab(t, Config{LANs: []LANConfig{{NAT: PortRestrictedCone, TCPOnlyTo: []netip.AddrPort{allowed}}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.VerifyNAT(ctx, l.LANs[0]); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCatchesAMislabelledNAT gives a router the wrong name on purpose
// (the symmetric ruleset labelled port-restricted) and expects VerifyNAT to
// refuse it.
func TestVerifyCatchesAMislabelledNAT(t *testing.T) {
	t.Parallel()
	l := newLab(t, Config{LANs: []LANConfig{{NAT: Symmetric}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lan := *l.LANs[0]
	lan.NAT = PortRestrictedCone
	err := l.VerifyNAT(ctx, &lan)
	if !errors.Is(err, ErrNATMismatch) {
		t.Fatalf("VerifyNAT of a symmetric NAT called port-restricted: %v, want ErrNATMismatch", err)
	}
	t.Logf("caught: %v", err)
}

// TestLabLeavesNothingBehind checks teardown: every namespace is gone after
// Close, including when a process was still running in one.
func TestLabLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	l := newLab(t, Config{LANs: []LANConfig{{NAT: FullCone, Hosts: 2}}, PublicHosts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.Start(ctx, l.LANs[0].Hosts[1], "sleeper", "sleep", "60"); err != nil {
		t.Fatal(err)
	}
	// The LAN's second host reaches the public segment through the NAT.
	rep, err := l.MeasureNAT(ctx, l.LANs[0].Hosts[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Mapped[0], l.LANs[0].Router.Addr.String()+":") {
		t.Errorf("second LAN host mapped to %v, want the router's %s", rep.Mapped, l.LANs[0].Router.Addr)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, l.ID+"-") {
			t.Errorf("namespace %s survived Close", n)
		}
	}
}

// TestSweepKeepsLiveLabs: a sweep must not delete namespaces of a lab whose
// process is alive (this one).
func TestSweepKeepsLiveLabs(t *testing.T) {
	t.Parallel()
	l := newLab(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == l.Public.NS
	}
	if !found {
		t.Fatalf("sweep deleted the live namespace %s", l.Public.NS)
	}
}

// TestSweepDeletesWhatADeadRunLeft plants a namespace named as if a test
// process that no longer exists had built it, and expects Sweep to remove
// it: what a killed run leaves behind is gone at the next start.
func TestSweepDeletesWhatADeadRunLeft(t *testing.T) {
	// Not parallel: another test's sweep must not take the planted
	// namespace away first.
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Above the kernel's largest possible pid (2^22), so never alive.
	stale := namePrefix + "9999999-dead-pub"
	if _, err := run(ctx, "ip", "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run(context.Background(), "ip", "netns", "delete", stale) }) //nolint:errcheck // gone already if the test passed.
	gone, err := Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == stale {
			t.Fatalf("Sweep deleted %v but left the stale %s", gone, stale)
		}
	}
}

// TestRulesetsFollowTheRecipes checks the rendered nftables rules without
// root: the mechanism behind each NAT type, and the input-chain drop every
// router needs (see the package comment).
func TestRulesetsFollowTheRecipes(t *testing.T) {
	inner := netip.MustParseAddr("10.0.1.2")
	for _, tc := range []struct {
		nat     NATType
		want    []string
		notWant []string
	}{
		{FullCone, []string{"masquerade\n", `meta l4proto udp dnat to 10.0.1.2`}, []string{"fully-random", "@peers"}},
		{RestrictedCone, []string{"masquerade\n", "update @peers { ip daddr . udp sport }", "ip saddr . udp dport @peers dnat to 10.0.1.2"}, []string{"fully-random"}},
		{PortRestrictedCone, []string{"masquerade\n"}, []string{"dnat", "fully-random"}},
		{Symmetric, []string{"masquerade fully-random"}, []string{"dnat"}},
	} {
		rs := ruleset(rulesetParams{nat: tc.nat, inner: inner})
		for _, w := range append(tc.want, `iifname "wan0" ct state new drop`) {
			if !strings.Contains(rs, w) {
				t.Errorf("%s ruleset lacks %q:\n%s", tc.nat, w, rs)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(rs, w) {
				t.Errorf("%s ruleset has %q:\n%s", tc.nat, w, rs)
			}
		}
	}
	fw := ruleset(rulesetParams{tcpOnlyTo: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:3478")}})
	for _, w := range []string{`ip daddr 203.0.113.1 tcp dport 3478 accept`, `iifname "lan0" drop`} {
		if !strings.Contains(fw, w) {
			t.Errorf("firewall ruleset lacks %q:\n%s", w, fw)
		}
	}
}

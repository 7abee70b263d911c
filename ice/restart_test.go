package ice_test

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/vnetlab"
)

// TestRestartMovesDeadDirectCallToRelay sets up a direct call across two
// NATs, cuts the direct path on the simulated WAN (the relay stays
// reachable), waits until both sides notice, restarts ICE on both as a
// re-INVITE would, and checks the call continues on the same conns
// through the relay. It runs on synctest's virtual clock, so the timeouts
// cost no real time and machine load cannot change the outcome.
func TestRestartMovesDeadDirectCallToRelay(t *testing.T) {
	synctest.Test(t, testRestart)
}

func testRestart(t *testing.T) {
	lab, err := vnetlab.New(vnetlab.Config{
		Sites: []vnetlab.Site{{Name: "alice", NAT: vnetlab.FullCone}, {Name: "bob", NAT: vnetlab.PortRestrictedCone}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob := lab.Host("alice"), lab.Host("bob")
	call, err := lab.Dial(ctx, alice, bob, ice.PolicyAll)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	if call.Route.Route != ice.RouteDirect {
		t.Fatalf("first route %+v, want direct", call.Route)
	}

	states := make(chan ice.State, 16)
	call.Caller.OnStateChange(func(s ice.State) { states <- s })
	routes := make(chan ice.RouteInfo, 4)
	call.Caller.OnRouteChange(func(r ice.RouteInfo) { routes <- r })

	// Cut every packet between the two NATs' public addresses.
	cut := func(a net.Addr) string { h, _, _ := net.SplitHostPort(a.String()); return h }
	lab.AddWANFilter(func(src, dst net.Addr) bool {
		s, d := cut(src), cut(dst)
		return !((s == alice.PublicIP && d == bob.PublicIP) || (s == bob.PublicIP && d == alice.PublicIP))
	})
	// Keepalives go unanswered until the caller declares the path dead.
	for {
		select {
		case s := <-states:
			if s != ice.StateDisconnected && s != ice.StateFailed {
				continue
			}
		case <-ctx.Done():
			t.Fatal("caller never noticed the dead path")
		}
		break
	}

	// The re-INVITE: new credentials and candidates both ways.
	la, err := call.Caller.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := call.Callee.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Callee.SetRemote(la.Ufrag, la.Pwd, la.Candidates); err != nil {
		t.Fatal(err)
	}
	if err := call.Caller.SetRemote(lb.Ufrag, lb.Pwd, lb.Candidates); err != nil {
		t.Fatal(err)
	}
	var r ice.RouteInfo
	select {
	case r = <-routes:
	case <-ctx.Done():
		t.Fatal("no pair selected after the restart")
	}
	if r.Route != ice.RouteRelayed {
		t.Fatalf("route after restart %+v, want relayed", r)
	}
	if got, err := call.Caller.Route(); err != nil || got.Route != ice.RouteRelayed {
		t.Fatalf("Route() = %+v, %v", got, err)
	}
	// Same conns as before the restart.
	ab, ba, err := call.Exchange(5)
	if err != nil || ab < 4 || ba < 4 {
		t.Fatalf("after restart carried %d/5 and %d/5 (%v)", ab, ba, err)
	}
}

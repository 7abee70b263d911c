// Package setup benchmarks call setup time of punchline's phone engine:
// from the INVITE leaving the caller to the first RTP packet arriving at
// it, through the real registrar/proxy and relay on loopback, for direct
// and relayed calls. Each benchmark iteration is one whole call (dial,
// media, hang-up); the setup times are reported as their median and 90th
// percentile.
//
//	go test -run '^$' -bench CallSetup -benchtime 30x ./bench/setup/
//
// bench/setup.sh runs it and prints a table.
package setup

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/internal/phone/phonetest"
	"github.com/punchline/punchline/internal/vnetlab"
	"github.com/punchline/punchline/media"
)

func BenchmarkCallSetup(b *testing.B) {
	pionDefaults := func(c *ice.Config) {
		// pion/ice's own defaults: 200 ms check pace and nomination waits
		// of 500 ms (srflx), 1 s (prflx) and 2 s (relay).
		c.CheckInterval = 200 * time.Millisecond
		c.SrflxAcceptanceWait = 500 * time.Millisecond
		c.PrflxAcceptanceWait = time.Second
		c.RelayAcceptanceWait = 2 * time.Second
	}
	for _, bc := range []struct {
		name   string
		policy ice.Policy
		tweak  func(*ice.Config)
		route  string
		// nat puts both phones' media behind port-restricted cone NATs
		// in the in-process vnet lab (10 ms WAN delay), so the direct
		// pair is server- or peer-reflexive, not host to host.
		nat bool
	}{
		{"loopback/direct", ice.PolicyAll, nil, ice.RouteDirect, false},
		{"loopback/relayed", ice.PolicyRelay, nil, ice.RouteRelayed, false},
		{"loopback/direct-pion-defaults", ice.PolicyAll, pionDefaults, ice.RouteDirect, false},
		{"loopback/relayed-pion-defaults", ice.PolicyRelay, pionDefaults, ice.RouteRelayed, false},
		{"nat/direct", ice.PolicyAll, nil, ice.RouteDirect, true},
		{"nat/relayed", ice.PolicyRelay, nil, ice.RouteRelayed, true},
		{"nat/direct-pion-defaults", ice.PolicyAll, pionDefaults, ice.RouteDirect, true},
		{"nat/relayed-pion-defaults", ice.PolicyRelay, pionDefaults, ice.RouteRelayed, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := phonetest.Start(b, []string{"alice", "bob"}, nil)
			var lab *vnetlab.Lab
			if bc.nat {
				var err error
				lab, err = vnetlab.New(vnetlab.Config{Sites: []vnetlab.Site{
					{Name: "alice", NAT: vnetlab.PortRestrictedCone}, {Name: "bob", NAT: vnetlab.PortRestrictedCone}}})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(lab.Close)
			}
			osNet, err := stdnet.NewNet()
			if err != nil {
				b.Fatal(err)
			}
			cfg := func(user string) phone.Config {
				c := srv.PhoneConfig(user)
				c.ICEPolicy = bc.policy
				if bc.tweak != nil {
					bc.tweak(&c.ICE)
				}
				if lab != nil {
					// Media in the lab behind the NATs, SIP on loopback.
					relayAddr := fmt.Sprintf("%s:%d", vnetlab.ServerIP, vnetlab.RelayPort)
					c.Net, c.SIPNet = lab.Host(user).Net, osNet
					c.STUN = []string{"stun:" + relayAddr}
					c.TURN = []string{"turn:" + relayAddr + "?transport=udp"}
					c.TURNUser, c.TURNPassword = vnetlab.TURNUser, vnetlab.TURNPassword
				}
				return c
			}
			alice, bob := srv.NewPhone(b, cfg("alice")), srv.NewPhone(b, cfg("bob"))
			var setups, dials []float64
			offRoute := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				setup, dial, route := oneCall(b, alice, bob)
				setups, dials = append(setups, setup), append(dials, dial)
				if route != bc.route {
					// Our tuned settings must take the expected route;
					// pion's defaults are only the comparison, their
					// misses are counted.
					if bc.tweak == nil {
						b.Fatalf("call %d went %s, want %s", i, route, bc.route)
					}
					offRoute++
				}
			}
			b.StopTimer()
			slices.Sort(setups)
			slices.Sort(dials)
			b.ReportMetric(setups[len(setups)/2], "setup_ms_median")
			b.ReportMetric(setups[len(setups)*9/10], "setup_ms_p90")
			b.ReportMetric(dials[len(dials)/2], "dial_to_audio_ms_median")
			b.ReportMetric(float64(offRoute), "calls_off_route")
		})
	}
}

// oneCall dials, waits for the first RTP at the caller, notes the route
// and hangs up. It returns the caller's setup time (INVITE sent to first
// RTP) and the dial-to-audio time (Call invoked, so gathering the offer's
// candidates included, to first RTP), in milliseconds.
func oneCall(b *testing.B, alice, bob *phone.Phone) (setup, dial float64, route string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answered := make(chan *phone.Call, 1)
	go func() {
		c, err := bob.Answer(ctx, phone.MediaOptions{Source: media.NewToneSource(1000, 0)})
		if err != nil {
			b.Error(err)
		}
		answered <- c
	}()
	start := time.Now()
	ac, err := alice.Call(ctx, "bob", phone.MediaOptions{Source: media.NewToneSource(440, 0)})
	if err != nil {
		b.Fatal(err)
	}
	bc := <-answered
	if bc == nil {
		b.FailNow()
	}
	select {
	case <-ac.FirstRTP():
	case <-ctx.Done():
		b.Fatal("no RTP at the caller")
	}
	dial = float64(time.Since(start)) / float64(time.Millisecond)
	st := ac.Stats()
	if err := ac.Hangup(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case <-bc.Done():
	case <-ctx.Done():
		b.Fatal("callee did not see the hang-up")
	}
	return st.SetupMs, dial, st.Route
}

package vnetlab

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/punchline/punchline/ice"
)

func TestDbgNoTURN(t *testing.T) {
	for _, turn := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			lab, _ := New(Config{
				Sites: []Site{{Name: "alice", NAT: FullCone}, {Name: "bob", NAT: FullCone}},
				ICE: func(_ *Host, c *ice.Config) {
					if !turn {
						c.Servers = c.Servers[:1]
					}
				},
			})
			defer lab.Close()
			call, err := lab.Dial(context.Background(), lab.Host("alice"), lab.Host("bob"), ice.PolicyAll)
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			t.Logf("turn=%v gather %v ice %v %s/%s", turn, call.Gather, call.Setup, call.Route.LocalType, call.Route.RemoteType)
		})
	}
}

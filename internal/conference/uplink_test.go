package conference_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/conference/conftest"
	"github.com/punchline/punchline/sip/focus"
)

// The uplink rule: a participant whose budget cannot carry N-1 streams
// sends one stream, to a supernode with spare upload or, if none, to the
// server's forwarder; everyone still hears everyone.
func TestUplinkLimitedParticipant(t *testing.T) {
	cases := []struct {
		name    string
		budgets map[string]int
		wantVia string
	}{
		{
			name: "a peer with spare upload forwards (supernode)",
			// Full mesh for 4 is 3 × 80 = 240 kbit/s; ann can forward
			// (240 + 2 × 80 = 400 ≤ 1000), ben and cat could not
			// (400 > 300), dan cannot even send to all.
			budgets: map[string]int{"ann": 1000, "ben": 300, "cat": 300, "dan": 100},
			wantVia: "ann",
		},
		{
			name:    "nobody has spare upload: the server forwards",
			budgets: map[string]int{"ann": 240, "ben": 240, "cat": 240, "dan": 100},
			wantVia: focus.Server,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			users := []string{"ann", "ben", "cat", "dan"}
			tones := map[string]float64{"ann": 440, "ben": 620, "cat": 820, "dan": 1040}
			srv := conftest.Start(t, users, nil)
			ctx := context.Background()
			var phones []*conftest.Phone
			for _, u := range users {
				phones = append(phones, srv.Join(ctx, t, u, "uplink", tones[u], conftest.Options{UploadKbps: tc.budgets[u]}))
			}
			defer func() {
				for _, p := range phones {
					p.Leave()
				}
			}()
			conftest.WaitLegs(t, phones, 3, 20*time.Second)
			// Measure upload over a fresh window once the plan is settled.
			before := map[string]conference.Stats{}
			for _, p := range phones {
				before[p.User] = p.Engine.Stats()
			}
			time.Sleep(3500 * time.Millisecond)
			for _, p := range phones {
				var others []string
				for _, u := range users {
					if u != p.User {
						others = append(others, u)
					}
				}
				checkHears(t, p, tones, others)
				st := p.Engine.Stats()
				kbps := float64(st.UploadBytes-before[p.User].UploadBytes) * 8 / 1000 / (float64(st.DurationMS-before[p.User].DurationMS) / 1000)
				t.Logf("%s (budget %d kbit/s): upload %.0f kbit/s, forwards for %v", p.User, tc.budgets[p.User], kbps, st.ForwardedFor)
				if b := tc.budgets[p.User]; b > 0 && kbps > float64(b)*1.1 {
					t.Errorf("%s sent %.0f kbit/s over its %d kbit/s budget", p.User, kbps, b)
				}
				if p.User != "dan" {
					var dan conference.PeerStats
					for _, ps := range st.Peers {
						if ps.User == "dan" {
							dan = ps
						}
					}
					if p.User != tc.wantVia && (dan.Route != conference.RouteForwarded || dan.Via != tc.wantVia) {
						t.Errorf("%s gets dan's audio by %q via %q, want forwarded via %q", p.User, dan.Route, dan.Via, tc.wantVia)
					}
				}
				if p.User == tc.wantVia && !slices.Contains(st.ForwardedFor, "dan") {
					t.Errorf("%s is the supernode but forwards for %v", p.User, st.ForwardedFor)
				}
			}
			serverBytes := srv.Focus.Bytes("uplink")
			if tc.wantVia == focus.Server && serverBytes == 0 {
				t.Errorf("the server forwarded dan's stream but counted 0 bytes")
			}
			if tc.wantVia != focus.Server && serverBytes != 0 {
				t.Errorf("a supernode forwards, yet the server carried %d bytes", serverBytes)
			}
		})
	}
}

package conference_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/conference/conftest"
	"github.com/punchline/punchline/media"
)

// heard returns, for each of freqs, in how many of the last n one-second
// windows of the recording it was detected. One-second windows, because
// the jitter buffer's frame insertions and cuts break a tone's phase,
// which a longer Goertzel window averages away.
func heard(rec []int16, freqs []float64, n int) map[float64]int {
	out := map[float64]int{}
	for i := 1; i <= n; i++ {
		end := len(rec) - (i-1)*media.SampleRate
		if end-media.SampleRate < 0 {
			break
		}
		for _, f := range media.DetectTones(rec[end-media.SampleRate:end], freqs, 0) {
			out[f]++
		}
	}
	return out
}

// checkHears asserts that over the last three seconds p heard every user
// in present (in at least two of the three seconds: a loaded machine may
// stall a stream for a moment) and never anyone else.
func checkHears(t *testing.T, p *conftest.Phone, all map[string]float64, present []string) {
	t.Helper()
	freqs := make([]float64, 0, len(all))
	for _, f := range all {
		freqs = append(freqs, f)
	}
	slices.Sort(freqs)
	got := heard(p.Rec.Samples(), freqs, 3)
	for u, f := range all {
		switch {
		case slices.Contains(present, u) && got[f] < 2:
			t.Errorf("%s does not hear %s (%v Hz): detected in %d of the last 3 s (all: %v)", p.User, u, f, got[f], got)
		case !slices.Contains(present, u) && got[f] > 0:
			t.Errorf("%s hears %s (%v Hz), which it must not: detected in %d of the last 3 s", p.User, u, f, got[f])
		}
	}
}

func TestFiveParticipantsHearEachOtherDirectlyAndServerCarriesNoMedia(t *testing.T) {
	users := []string{"ann", "ben", "cat", "dan", "eve"}
	tones := map[string]float64{"ann": 440, "ben": 620, "cat": 820, "dan": 1040, "eve": 1280}
	srv := conftest.Start(t, users, nil)
	ctx := context.Background()
	var phones []*conftest.Phone
	for _, u := range users {
		phones = append(phones, srv.Join(ctx, t, u, "five", tones[u], conftest.Options{}))
	}
	defer func() {
		for _, p := range phones {
			p.Leave()
		}
	}()
	conftest.WaitLegs(t, phones, len(users)-1, 20*time.Second)
	time.Sleep(3500 * time.Millisecond)
	for _, p := range phones {
		st := p.Engine.Stats()
		if len(st.Peers) != 4 {
			t.Fatalf("%s sees %d peers: %+v", p.User, len(st.Peers), st.Peers)
		}
		for _, ps := range st.Peers {
			if ps.Route != conference.RouteDirect {
				t.Errorf("%s→%s route %q, want direct", p.User, ps.User, ps.Route)
			}
			if ps.RTPPacketsReceived < 50 || ps.MOS < 4 {
				t.Errorf("%s from %s: %d packets, MOS %.2f", p.User, ps.User, ps.RTPPacketsReceived, ps.MOS)
			}
		}
		var others []string
		for _, u := range users {
			if u != p.User {
				others = append(others, u)
			}
		}
		checkHears(t, p, tones, others)
	}
	if n := srv.MetricValue(t, "punchline_conference_media_bytes_all_total"); n != 0 {
		t.Fatalf("server carried %v media bytes in an all-direct room", n)
	}
	if n := srv.Focus.Bytes("five"); n != 0 {
		t.Fatalf("focus carried %d bytes for the room", n)
	}
}

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

// tail returns the last d of a recording.
func tail(s []int16, d time.Duration) []int16 {
	n := int(d.Seconds() * media.SampleRate)
	if len(s) < n {
		return s
	}
	return s[len(s)-n:]
}

func checkHears(t *testing.T, p *conftest.Phone, all map[string]float64, present []string, window time.Duration) {
	t.Helper()
	freqs := make([]float64, 0, len(all))
	for _, f := range all {
		freqs = append(freqs, f)
	}
	slices.Sort(freqs)
	got := media.DetectTones(tail(p.Rec.Samples(), window), freqs, 0)
	for _, u := range present {
		if !slices.Contains(got, all[u]) {
			t.Errorf("%s does not hear %s (%v Hz); tones heard: %v", p.User, u, all[u], got)
		}
	}
	for u, f := range all {
		if slices.Contains(got, f) && !slices.Contains(present, u) {
			t.Errorf("%s hears %s (%v Hz), which it must not; tones heard: %v", p.User, u, f, got)
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
	time.Sleep(2500 * time.Millisecond)
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
		checkHears(t, p, tones, others, time.Second)
		if t.Failed() {
			debugLevels(t, p.User, p.Rec.Samples())
		}
	}
	if n := srv.MetricValue(t, "punchline_conference_media_bytes_all_total"); n != 0 {
		t.Fatalf("server carried %v media bytes in an all-direct room", n)
	}
	if n := srv.Focus.Bytes("five"); n != 0 {
		t.Fatalf("focus carried %d bytes for the room", n)
	}
}

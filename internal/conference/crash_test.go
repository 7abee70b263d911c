package conference_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/conference/conftest"
)

// A participant that crashes (no BYE, no unsubscribe) leaves every other
// roster within 10 s, and the others keep hearing each other.
func TestCrashedParticipantLeavesRostersWithinTenSeconds(t *testing.T) {
	users := []string{"ann", "ben", "cat", "dan"}
	tones := map[string]float64{"ann": 440, "ben": 620, "cat": 820, "dan": 1040}
	srv := conftest.Start(t, users, nil)
	ctx := context.Background()
	var phones []*conftest.Phone
	for _, u := range users {
		phones = append(phones, srv.Join(ctx, t, u, "crash", tones[u], conftest.Options{}))
	}
	conftest.WaitLegs(t, phones, 3, 20*time.Second)
	victim, rest := phones[3], phones[:3]
	defer func() {
		for _, p := range rest {
			p.Leave()
		}
	}()

	crashed := time.Now()
	victim.Engine.Abandon()
	victim.UA.Close()
	for _, p := range rest {
		for slices.Contains(p.Engine.Members(), "dan") {
			select {
			case <-p.Engine.RosterChanged():
			case <-time.After(time.Until(crashed.Add(10 * time.Second))):
				t.Fatalf("%s still lists dan %v after the crash", p.User, time.Since(crashed).Round(100*time.Millisecond))
			}
		}
		t.Logf("%s dropped dan %v after the crash", p.User, time.Since(crashed).Round(100*time.Millisecond))
	}
	// The rest continue: three and a half seconds later, each hears the
	// other two and no trace of dan.
	time.Sleep(3500 * time.Millisecond)
	for _, p := range rest {
		var others []string
		for _, q := range rest {
			if q != p {
				others = append(others, q.User)
			}
		}
		checkHears(t, p, tones, others)
		present := 0
		for _, ps := range p.Engine.Stats().Peers {
			switch {
			case ps.User == "dan" && !ps.Left:
				t.Errorf("%s's stats do not mark dan as left", p.User)
			case !ps.Left:
				present++
			}
		}
		if present != 2 {
			t.Errorf("%s reports %d present peers after dan left, want 2", p.User, present)
		}
	}
}

package conference_test

import (
	"context"
	"testing"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/conference/conftest"
)

// Rooms need an authenticated user: the real proxy challenges the
// SUBSCRIBE, and a wrong password never reaches the focus.
func TestJoiningARoomNeedsTheRightPassword(t *testing.T) {
	srv := conftest.Start(t, []string{"ann"}, nil)
	ctx := context.Background()
	if _, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: srv.Addr, User: "ann", Password: "wrong", Domain: conftest.Realm, Room: "r"}); err == nil {
		t.Fatal("a wrong password joined the room")
	}
	if _, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: srv.Addr, User: "mallory", Password: "x", Domain: conftest.Realm, Room: "r"}); err == nil {
		t.Fatal("an unknown user joined the room")
	}
	if n := len(srv.Focus.Roster().Members("r")); n != 0 {
		t.Fatalf("room has %d members after refused joins", n)
	}
	s, err := conference.Subscribe(ctx, conference.SubscriberConfig{Server: srv.Addr, User: "ann", Password: conftest.Password, Domain: conftest.Realm, Room: "r"})
	if err != nil {
		t.Fatalf("the right password: %v", err)
	}
	s.Close()
}

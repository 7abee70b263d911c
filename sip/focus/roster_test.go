package focus

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestRosterJoinRefreshLeave(t *testing.T) {
	r := NewRoster(RosterConfig{Realm: "example.org"})
	m, changed, err := r.Join("a", JoinRequest{User: "alice", TTL: 6 * time.Second}, t0)
	if err != nil || !changed || m.Seq != 1 || m.Kind != KindMesh {
		t.Fatalf("first join: %+v %v %v", m, changed, err)
	}
	m2, changed, err := r.Join("a", JoinRequest{User: "bob", TTL: 6 * time.Second}, t0)
	if err != nil || !changed || m2.Seq <= m.Seq {
		t.Fatalf("second join must be a newcomer with a larger seq: %+v %v %v", m2, changed, err)
	}
	// A refresh with the same parameters is not a roster change.
	_, changed, err = r.Join("a", JoinRequest{User: "alice", TTL: 6 * time.Second}, t0.Add(3*time.Second))
	if err != nil || changed {
		t.Fatalf("refresh: changed=%v err=%v", changed, err)
	}
	// A new upload budget is.
	_, changed, _ = r.Join("a", JoinRequest{User: "alice", TTL: 6 * time.Second, UploadKbps: 100}, t0.Add(3*time.Second))
	if !changed {
		t.Fatal("upload budget change must notify")
	}
	ms := r.Members("a")
	if len(ms) != 2 || ms[0].User != "alice" || ms[1].User != "bob" {
		t.Fatalf("members: %+v", ms)
	}
	if !r.Leave("a", "alice") || r.Leave("a", "alice") {
		t.Fatal("leave must report presence once")
	}
	if !r.Leave("a", "bob") {
		t.Fatal("bob was there")
	}
	if len(r.Rooms()) != 0 {
		t.Fatalf("empty rooms must vanish: %v", r.Rooms())
	}
}

func TestRosterExpiresSilentParticipants(t *testing.T) {
	r := NewRoster(RosterConfig{})
	r.Join("a", JoinRequest{User: "alice", TTL: 6 * time.Second}, t0)
	r.Join("a", JoinRequest{User: "bob", TTL: 6 * time.Second}, t0)
	r.Join("b", JoinRequest{User: "carol", TTL: 6 * time.Second}, t0)
	// alice refreshes, bob and carol go silent.
	r.Join("a", JoinRequest{User: "alice", TTL: 6 * time.Second}, t0.Add(4*time.Second))
	if gone := r.Expire(t0.Add(5 * time.Second)); len(gone) != 0 {
		t.Fatalf("nobody expired yet: %v", gone)
	}
	gone := r.Expire(t0.Add(6 * time.Second))
	want := []Departure{{"a", "bob"}, {"b", "carol"}}
	if len(gone) != 2 || gone[0] != want[0] || gone[1] != want[1] {
		t.Fatalf("expired %v, want %v", gone, want)
	}
	if ms := r.Members("a"); len(ms) != 1 || ms[0].User != "alice" {
		t.Fatalf("alice must remain: %+v", ms)
	}
}

func TestRosterPIN(t *testing.T) {
	r := NewRoster(RosterConfig{PINs: map[string]string{"board": "1234"}})
	if _, _, err := r.Join("board", JoinRequest{User: "alice", TTL: time.Second}, t0); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("configured PIN must be required: %v", err)
	}
	if _, _, err := r.Join("board", JoinRequest{User: "alice", PIN: "1234", TTL: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	// The creator of an unconfigured room sets its PIN.
	if _, _, err := r.Join("x", JoinRequest{User: "alice", PIN: "99", TTL: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Join("x", JoinRequest{User: "bob", PIN: "98", TTL: time.Second}, t0); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	if _, _, err := r.Join("x", JoinRequest{User: "bob", PIN: "99", TTL: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	// Once the room empties, its PIN goes with it.
	r.Expire(t0.Add(time.Hour))
	if _, _, err := r.Join("x", JoinRequest{User: "bob", TTL: time.Second}, t0); err != nil {
		t.Fatalf("a new room x has no PIN: %v", err)
	}
}

func TestRosterLimitsAndNames(t *testing.T) {
	r := NewRoster(RosterConfig{MaxParticipants: 2})
	r.Join("a", JoinRequest{User: "u1", TTL: time.Second}, t0)
	r.Join("a", JoinRequest{User: "u2", TTL: time.Second}, t0)
	if _, _, err := r.Join("a", JoinRequest{User: "u3", TTL: time.Second}, t0); !errors.Is(err, ErrRoomFull) {
		t.Fatalf("want ErrRoomFull, got %v", err)
	}
	for _, bad := range []string{"", "a b", "x;y", "é", string(make([]byte, 65))} {
		if _, _, err := r.Join(bad, JoinRequest{User: "u", TTL: time.Second}, t0); !errors.Is(err, ErrNotARoom) {
			t.Errorf("room name %q: want ErrNotARoom, got %v", bad, err)
		}
	}
	if n, err := RoomName("room-standup"); err != nil || n != "standup" {
		t.Fatalf("RoomName: %q %v", n, err)
	}
	if _, err := RoomName("alice"); !errors.Is(err, ErrNotARoom) {
		t.Fatalf("alice is no room: %v", err)
	}
}

func TestRosterInfoListsMembersInJoinOrder(t *testing.T) {
	r := NewRoster(RosterConfig{Realm: "example.org"})
	r.Join("a", JoinRequest{User: "zed", TTL: time.Second}, t0)
	r.Join("a", JoinRequest{User: "amy", TTL: time.Second, Kind: KindBridge}, t0)
	ci := r.Info("a", 4)
	if ci.Entity != "sip:room-a@example.org" || ci.Version != 4 || len(ci.Users) != 2 {
		t.Fatalf("info: %+v", ci)
	}
	if ci.Users[0].Entity != "sip:zed@example.org" || ci.Users[1].Kind != KindBridge || ci.Users[1].JoiningMethod != "dialed-in" {
		t.Fatalf("users: %+v", ci.Users)
	}
}

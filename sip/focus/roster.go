package focus

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Roster holds every room's participants. It is the focus's state machine,
// free of SIP: the SIP side calls Join on SUBSCRIBE (and on INVITE from a
// plain phone), Leave on unsubscribe or BYE, and Expire on a timer; each
// call says whether the room changed so the caller knows to NOTIFY.
//
// A participant is in a room from its first Join until its Leave or until
// its registration in the room (the subscription) expires. Rooms exist
// while they have participants; the PIN set by the room's creator (or by
// configuration) lives as long as the room.
type Roster struct {
	// mu guards every field below.
	mu    sync.Mutex
	realm string
	rooms map[string]*room
	// seq numbers joins across all rooms; it only grows, so a newcomer
	// always has a larger Seq than everyone already in its room.
	seq uint64
	// pins are configured PINs per room name; a room in this map always
	// needs its PIN, even before anyone created it.
	pins            map[string]string
	maxParticipants int
}

type room struct {
	name    string
	pin     string
	members map[string]*Member
}

// Member is one participant of a room as the focus sees it.
type Member struct {
	// User is the authenticated user name (the user part of the AOR).
	User string
	// Kind is KindMesh or KindBridge.
	Kind string
	// Seq is the join sequence number (see User.Seq).
	Seq uint64
	// UploadKbps is the declared upload budget; 0 means unlimited.
	UploadKbps int
	// Forwarder is the server forwarder address assigned to the member, if
	// any.
	Forwarder string
	// Expires is when the member is dropped unless it refreshes.
	Expires time.Time
	// Joined is when the member joined.
	Joined time.Time
	// Token is a random secret the focus gives the member alone (in its
	// SUBSCRIBE's 200 OK). The member proves with it that packets to its
	// server media port are its own (see MediaKeepalive).
	Token string
}

// JoinRequest is what a joining (or refreshing) participant asks for.
type JoinRequest struct {
	// User is the authenticated user name. Required.
	User string
	// Kind is KindMesh (the default) or KindBridge.
	Kind string
	// UploadKbps is the participant's declared upload budget, 0 = unlimited.
	UploadKbps int
	// PIN is the room PIN the participant gave; the first joiner of a room
	// without a configured PIN sets it.
	PIN string
	// TTL is how long the membership lasts without refresh. Required (> 0).
	TTL time.Duration
}

// RosterConfig configures a Roster.
type RosterConfig struct {
	// Realm is the SIP domain: AORs are sip:USER@Realm and room URIs
	// sip:room-NAME@Realm. Default "punchline".
	Realm string
	// PINs fixes a PIN for the named rooms (name without the "room-"
	// prefix). Rooms not listed take the PIN of their first joiner, if any.
	PINs map[string]string
	// MaxParticipants bounds each room. Zero means 32: a full mesh beyond
	// that needs more uplink than a home connection has.
	MaxParticipants int
}

// NewRoster returns an empty roster.
func NewRoster(cfg RosterConfig) *Roster {
	if cfg.Realm == "" {
		cfg.Realm = "punchline"
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = 32
	}
	pins := make(map[string]string, len(cfg.PINs))
	for k, v := range cfg.PINs {
		pins[k] = v
	}
	return &Roster{realm: cfg.Realm, rooms: map[string]*room{}, pins: pins, maxParticipants: cfg.MaxParticipants}
}

// Realm returns the roster's SIP domain.
func (r *Roster) Realm() string { return r.realm }

// Join adds req.User to the room, or refreshes its membership. It returns
// the member as stored and whether the roster others see changed (a new
// participant, or a changed upload budget), which calls for a NOTIFY.
func (r *Roster) Join(roomName string, req JoinRequest, now time.Time) (Member, bool, error) {
	if err := ValidRoomName(roomName); err != nil {
		return Member{}, false, err
	}
	if req.User == "" {
		return Member{}, false, fmt.Errorf("join %s: no user", roomName)
	}
	if req.TTL <= 0 {
		return Member{}, false, fmt.Errorf("join %s: ttl must be positive", roomName)
	}
	if req.Kind == "" {
		req.Kind = KindMesh
	}
	if req.Kind != KindMesh && req.Kind != KindBridge {
		return Member{}, false, fmt.Errorf("join %s: kind %q", roomName, req.Kind)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[roomName]
	pin, configured := r.pins[roomName]
	if rm != nil {
		pin = rm.pin
	}
	if (configured || rm != nil) && pin != "" && subtle.ConstantTimeCompare([]byte(pin), []byte(req.PIN)) != 1 {
		return Member{}, false, fmt.Errorf("join room-%s: %w", roomName, ErrWrongPIN)
	}
	if rm == nil {
		if !configured {
			pin = req.PIN
		}
		rm = &room{name: roomName, pin: pin, members: map[string]*Member{}}
		r.rooms[roomName] = rm
	}
	if m, ok := rm.members[req.User]; ok {
		changed := m.UploadKbps != req.UploadKbps || m.Kind != req.Kind
		m.UploadKbps = req.UploadKbps
		m.Kind = req.Kind
		m.Expires = now.Add(req.TTL)
		return *m, changed, nil
	}
	if len(rm.members) >= r.maxParticipants {
		if len(rm.members) == 0 {
			delete(r.rooms, roomName)
		}
		return Member{}, false, fmt.Errorf("join room-%s: %w (%d)", roomName, ErrRoomFull, r.maxParticipants)
	}
	r.seq++
	var tok [12]byte
	rand.Read(tok[:]) //nolint:errcheck // crypto/rand does not fail on Linux.
	m := &Member{
		Token:      hex.EncodeToString(tok[:]),
		User:       req.User,
		Kind:       req.Kind,
		Seq:        r.seq,
		UploadKbps: req.UploadKbps,
		Expires:    now.Add(req.TTL),
		Joined:     now,
	}
	rm.members[req.User] = m
	return *m, true, nil
}

// SetForwarder records the server forwarder address assigned to a member.
func (r *Roster) SetForwarder(roomName, user, addr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[roomName]
	if rm == nil || rm.members[user] == nil {
		return fmt.Errorf("room-%s %s: %w", roomName, user, ErrNotInRoom)
	}
	rm.members[user].Forwarder = addr
	return nil
}

// Leave removes user from the room. It reports whether the user was there.
func (r *Roster) Leave(roomName, user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaveLocked(roomName, user)
}

func (r *Roster) leaveLocked(roomName, user string) bool {
	rm := r.rooms[roomName]
	if rm == nil {
		return false
	}
	if _, ok := rm.members[user]; !ok {
		return false
	}
	delete(rm.members, user)
	if len(rm.members) == 0 {
		delete(r.rooms, roomName)
	}
	return true
}

// Departure names a participant that left a room.
type Departure struct {
	Room, User string
}

// Expire drops every member whose membership ran out by now and returns
// them, ordered by room then user.
func (r *Roster) Expire(now time.Time) []Departure {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Departure
	for name, rm := range r.rooms {
		for user, m := range rm.members {
			if !now.Before(m.Expires) {
				out = append(out, Departure{Room: name, User: user})
			}
		}
	}
	for _, d := range out {
		r.leaveLocked(d.Room, d.User)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Room != out[j].Room {
			return out[i].Room < out[j].Room
		}
		return out[i].User < out[j].User
	})
	return out
}

// Members returns the room's participants ordered by join sequence.
func (r *Roster) Members(roomName string) []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[roomName]
	if rm == nil {
		return nil
	}
	out := make([]Member, 0, len(rm.members))
	for _, m := range rm.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Member returns one participant.
func (r *Roster) Member(roomName, user string) (Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[roomName]
	if rm == nil || rm.members[user] == nil {
		return Member{}, false
	}
	return *rm.members[user], true
}

// Rooms returns the names of rooms with participants, sorted.
func (r *Roster) Rooms() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.rooms))
	for n := range r.rooms {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info builds the full-state conference-info document of a room with the
// given version.
func (r *Roster) Info(roomName string, version uint32) *ConferenceInfo {
	ci := &ConferenceInfo{
		Entity:  RoomURI(roomName, r.realm),
		State:   StateFull,
		Version: version,
		Subject: roomName,
	}
	for _, m := range r.Members(roomName) {
		u := User{
			Entity:      "sip:" + m.User + "@" + r.realm,
			State:       StateFull,
			DisplayText: m.User,
			Status:      "connected",
			Seq:         m.Seq,
			Kind:        m.Kind,
			UploadKbps:  m.UploadKbps,
			Forwarder:   m.Forwarder,
		}
		if m.Kind == KindBridge {
			u.JoiningMethod = "dialed-in"
		}
		ci.Users = append(ci.Users, u)
	}
	return ci
}

// RoomPrefix starts the user part of every room URI.
const RoomPrefix = "room-"

// RoomURI returns sip:room-NAME@realm.
func RoomURI(name, realm string) string {
	return "sip:" + RoomPrefix + name + "@" + realm
}

// RoomName returns NAME for a request-URI user part "room-NAME", or
// ErrNotARoom.
func RoomName(userPart string) (string, error) {
	if !strings.HasPrefix(strings.ToLower(userPart), RoomPrefix) {
		return "", ErrNotARoom
	}
	name := userPart[len(RoomPrefix):]
	if err := ValidRoomName(name); err != nil {
		return "", err
	}
	return name, nil
}

// ValidRoomName accepts 1..64 characters of letters, digits, '-', '_' and
// '.': safe in a SIP user part, a metric label and a file name.
func ValidRoomName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: room name must be 1..64 characters", ErrNotARoom)
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("%w: %q has %q", ErrNotARoom, name, c)
		}
	}
	return nil
}

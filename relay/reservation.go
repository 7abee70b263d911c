package relay

import (
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// Reservations across read loops.
//
// pion keeps RESERVATION-TOKENs (RFC 8656 §14.9: an Allocate with EVEN-PORT
// and the R bit reserves the next port for a second Allocate) inside the
// allocation manager of the socket that answered. With several SO_REUSEPORT
// sockets, the kernel spreads a client's RTP and RTCP sockets by 4-tuple
// hash, so the second Allocate often reaches another socket whose manager
// has never seen the token, and pion answers 508.
//
// The relay therefore keeps the tokens itself: it notes each token pion
// hands out (in the Allocate success response), and when an Allocate
// carries a known token it removes the attribute (re-signing the request)
// and has the relay address generator bind the reserved port instead. Like
// pion, it reserves a port number, not a socket: the port is bound only by
// the second Allocate.

// reservationLifetime is how long a token stays valid (RFC 8656 §7.2:
// "about 30 seconds").
const reservationLifetime = 30 * time.Second

// pendingLifetime bounds how long a reserved port waits for the relay
// address generator; the hand-over happens within one request.
const pendingLifetime = time.Second

type reservation struct {
	port    int
	expires time.Time
}

type pendingPort struct {
	port int
	at   time.Time
}

type reservations struct {
	now func() time.Time

	mu      sync.Mutex // guards tokens and pending
	tokens  map[string]reservation
	pending map[string]pendingPort // user ID → port for their next allocation
}

func newReservations(now func() time.Time) *reservations {
	return &reservations{now: now, tokens: map[string]reservation{}, pending: map[string]pendingPort{}}
}

// noteResponse records the token of an Allocate success response that
// pion is sending. b is any datagram going to a client; only Allocate
// success responses (type 0x0103) are parsed.
func (r *reservations) noteResponse(b []byte) {
	if len(b) < stunHeaderSize || b[0] != 0x01 || b[1] != 0x03 {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return
	}
	token, err := m.Get(stun.AttrReservationToken)
	if err != nil || len(token) != 8 {
		return
	}
	var relayed stun.XORMappedAddress
	if relayed.GetFromAs(m, stun.AttrXORRelayedAddress) != nil {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.tokens {
		if now.After(v.expires) {
			delete(r.tokens, k)
		}
	}
	r.tokens[string(token)] = reservation{port: relayed.Port + 1, expires: now.Add(reservationLifetime)}
}

// take consumes a token and returns its reserved port.
func (r *reservations) take(token []byte) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.tokens[string(token)]
	if !ok || r.now().After(v.expires) {
		return 0, false
	}
	delete(r.tokens, string(token))
	return v.port, true
}

func (r *reservations) setPending(user string, port int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[user] = pendingPort{port: port, at: r.now()}
}

// popPending returns the port reserved for the user's allocation being
// made now, if any.
func (r *reservations) popPending(user string) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[user]
	if !ok {
		return 0, false
	}
	delete(r.pending, user)
	if r.now().Sub(p.at) > pendingLifetime {
		return 0, false
	}
	return p.port, true
}

func reservationTokenOf(m *stun.Message) ([]byte, bool) {
	v, err := m.Get(stun.AttrReservationToken)
	if err != nil || len(v) != 8 {
		return nil, false
	}
	return v, true
}

package relay

import (
	"sync"
	"sync/atomic"
)

// tally is one allocation's relayed-byte count: a UDP relayConn's or a TCP
// allocation's (tcpalloc.go), whose data connections all add to it.
type tally struct {
	user string
	// relayed counts payload bytes relayed both ways.
	relayed atomic.Uint64
}

// usage tallies relayed bytes per authenticated user. The packet path only
// adds to its allocation's own atomic counter (tally.relayed); the
// per-user sums are built on demand from the live allocations plus what
// closed allocations left behind, so relaying costs no lock and no map
// lookup.
type usage struct {
	mu     sync.Mutex // guards live and closed
	live   map[*tally]struct{}
	closed map[string]uint64 // user → bytes of its allocations already closed
}

func newUsage() *usage {
	return &usage{live: map[*tally]struct{}{}, closed: map[string]uint64{}}
}

func (u *usage) add(c *tally) {
	if c.user == "" {
		return
	}
	u.mu.Lock()
	u.live[c] = struct{}{}
	u.mu.Unlock()
}

// retire moves a closing allocation's count into the closed totals. It is
// done under the same lock the snapshot takes, so a snapshot sees the
// bytes either in the live conn or in closed, never twice or not at all,
// and a user's total never goes down.
func (u *usage) retire(c *tally) {
	if c.user == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.live[c]; !ok {
		return
	}
	delete(u.live, c)
	u.closed[c.user] += c.relayed.Load()
}

func (u *usage) snapshot() map[string]uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]uint64, len(u.closed)+len(u.live))
	for user, n := range u.closed {
		out[user] = n
	}
	for c := range u.live {
		out[c.user] += c.relayed.Load()
	}
	return out
}

// RelayedBytesByUser returns the payload bytes relayed so far (both
// directions, UDP and TCP allocations) per authenticated user: the account name,
// or for TURN REST credentials "expiry:user" the user part, as the
// per-user quota counts them. Totals only grow; a user is listed once it
// has had an allocation, also after the allocation is gone. It is meant
// for polling (sip/focus attributes each room member's growth to the
// room), not for the packet path.
func (s *Server) RelayedBytesByUser() map[string]uint64 { return s.usage.snapshot() }

package relay

import (
	"testing"

	"github.com/pion/stun/v4"
)

// TestReservationTokenWorksAcrossReadLoops allocates an even port with a
// reservation (EVEN-PORT R bit) and redeems the token from another client
// socket, as RTP/RTCP clients such as turnutils_uclient do. With two
// SO_REUSEPORT read loops, the second socket lands on either loop; each
// round uses fresh sockets so both cases occur.
func TestReservationTokenWorksAcrossReadLoops(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.ReadLoops = 2 })
	evenPortR := setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrEvenPort, []byte{0x80})
		return nil
	})
	for round := range 8 {
		rtp := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		relayed, res, err := rtp.allocate(evenPortR)
		if err != nil {
			t.Fatalf("round %d: even-port allocate: %v", round, err)
		}
		if relayed.Port%2 != 0 {
			t.Fatalf("round %d: EVEN-PORT gave odd port %d", round, relayed.Port)
		}
		token, ok := reservationTokenOf(res)
		if !ok {
			t.Fatalf("round %d: no RESERVATION-TOKEN in response", round)
		}
		rtcp := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		relayed2, _, err := rtcp.allocate(setterFunc(func(m *stun.Message) error {
			m.Add(stun.AttrReservationToken, token)
			return nil
		}))
		if err != nil {
			t.Fatalf("round %d: allocate with reservation token: %v", round, err)
		}
		if relayed2.Port != relayed.Port+1 {
			t.Errorf("round %d: reserved allocation got port %d, want %d", round, relayed2.Port, relayed.Port+1)
		}
		// A token is good once.
		again := newRawClient(t, r.udp, "alice", testRealm, "alice-pw")
		if _, _, err := again.allocate(setterFunc(func(m *stun.Message) error {
			m.Add(stun.AttrReservationToken, token)
			return nil
		})); codeOf(err) != stun.CodeInsufficientCapacity {
			t.Errorf("round %d: reusing a token: %v, want 508", round, err)
		}
	}
}

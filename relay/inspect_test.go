package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

var inspectKey = LongTermKey("alice", testRealm, "alice-pw")

func testInspector(hasAlloc bool) *inspector {
	return &inspector{
		minL: 30 * time.Second,
		maxL: 10 * time.Minute,
		keyFor: func(u, r string) (string, []byte, bool) {
			return u, inspectKey, u == "alice" && r == testRealm
		},
		peerAllowed:   PeerFilter{}.AllowedIP,
		refused:       func(net.IP) {},
		hasAllocation: func(_, _ net.Addr) bool { return hasAlloc },
	}
}

func signed(t testing.TB, method stun.Method, key []byte, attrs ...stun.Setter) []byte {
	t.Helper()
	s := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	s = append(s, attrs...)
	s = append(s, stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n0nce"), stun.MessageIntegrity(key), stun.Fingerprint)
	m, err := stun.Build(s...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

var (
	aClient = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000}
	aLocal  = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
)

func TestInspectClampsSignedLifetime(t *testing.T) {
	in := testInspector(true)
	cases := []struct {
		name   string
		method stun.Method
		ask    time.Duration
		key    []byte
		want   time.Duration
	}{
		{"too long is capped", stun.MethodAllocate, time.Hour, inspectKey, 10 * time.Minute},
		{"too short is raised", stun.MethodRefresh, 2 * time.Second, inspectKey, 30 * time.Second},
		{"within bounds untouched", stun.MethodRefresh, time.Minute, inspectKey, time.Minute},
		{"refresh zero (delete) untouched", stun.MethodRefresh, 0, inspectKey, 0},
		{"allocate zero raised", stun.MethodAllocate, 0, inspectKey, 30 * time.Second},
		{"bad signature left for pion", stun.MethodAllocate, time.Hour, []byte("wrong key"), time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := signed(t, tc.method, tc.key, udpTransport(), lifetimeAttr(tc.ask))
			buf := append([]byte(nil), raw...)
			n, reply := in.inspect(buf, len(buf), aClient, aLocal)
			if reply != nil || n != len(raw) {
				t.Fatalf("n=%d reply=%v", n, reply)
			}
			m := &stun.Message{Raw: buf[:n]}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			if got := lifetimeOf(t, m); got != tc.want {
				t.Errorf("lifetime %v, want %v", got, tc.want)
			}
			if bytes.Equal(tc.key, inspectKey) {
				if err := stun.MessageIntegrity(inspectKey).Check(m); err != nil {
					t.Errorf("rewritten message fails integrity: %v", err)
				}
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("rewritten message fails fingerprint: %v", err)
				}
			}
		})
	}
}

func TestInspectAnswersForbiddenAndMismatch(t *testing.T) {
	chAttr := setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrChannelNumber, []byte{0x40, 0, 0, 0})
		return nil
	})
	denied := peerAttr(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5})
	allowed := peerAttr(&net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 5})
	for _, tc := range []struct {
		name  string
		alloc bool
		raw   []byte
		want  stun.ErrorCode // 0: passed on to pion
	}{
		{"channel bind to private peer", true, signed(t, stun.MethodChannelBind, inspectKey, chAttr, denied), stun.CodeForbidden},
		{"channel bind to public peer", true, signed(t, stun.MethodChannelBind, inspectKey, chAttr, allowed), 0},
		{"unsigned channel bind", true, mustBuild(t, stun.MethodChannelBind, chAttr, denied), 0},
		{"refresh without allocation", false, signed(t, stun.MethodRefresh, inspectKey), stun.CodeAllocMismatch},
		{"permission without allocation", false, signed(t, stun.MethodCreatePermission, inspectKey, allowed), stun.CodeAllocMismatch},
		{"forged refresh without allocation", false, signed(t, stun.MethodRefresh, []byte("forged")), 0},
		{"allocate", false, signed(t, stun.MethodAllocate, inspectKey, udpTransport()), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, reply := testInspector(tc.alloc).inspect(append([]byte(nil), tc.raw...), len(tc.raw), aClient, aLocal)
			if tc.want == 0 {
				if reply != nil {
					t.Fatalf("answered %x; want it passed on", reply)
				}
				return
			}
			m := &stun.Message{Raw: reply}
			if err := m.Decode(); err != nil {
				t.Fatalf("reply: %v", err)
			}
			var code stun.ErrorCodeAttribute
			if err := code.GetFrom(m); err != nil || code.Code != tc.want {
				t.Fatalf("reply code %v (%v), want %v", code.Code, err, tc.want)
			}
			if err := stun.MessageIntegrity(inspectKey).Check(m); err != nil {
				t.Errorf("reply not signed: %v", err)
			}
		})
	}
}

func mustBuild(t testing.TB, method stun.Method, attrs ...stun.Setter) []byte {
	s := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	m, err := stun.Build(s...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// FuzzInspect feeds arbitrary datagrams to the inspector. It must never
// panic, never grow a message, and whatever it rewrites must be a valid
// message signed with the user's key whose LIFETIME lies within bounds.
func FuzzInspect(f *testing.F) {
	f.Add(signed(f, stun.MethodAllocate, inspectKey, udpTransport(), lifetimeAttr(time.Hour)), true)
	f.Add(signed(f, stun.MethodRefresh, inspectKey, lifetimeAttr(time.Second)), true)
	f.Add(signed(f, stun.MethodRefresh, inspectKey), false)
	f.Add(signed(f, stun.MethodChannelBind, inspectKey, peerAttr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})), true)
	f.Add(mustBuild(f, stun.MethodBinding), false)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, true)
	f.Add([]byte{0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42}, true)
	f.Add(signed(f, stun.MethodAllocate, inspectKey, udpTransport(), setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrReservationToken, []byte("tokentok"))
		return nil
	})), false)
	f.Fuzz(func(t *testing.T, data []byte, alloc bool) {
		in := testInspector(alloc)
		// A reservations table that knows one token, as after an EVEN-PORT
		// allocation; outgoing-response parsing gets the input too.
		resv := newReservations(time.Now)
		resv.tokens["tokentok"] = reservation{port: 50001, expires: time.Now().Add(time.Minute)}
		resv.noteResponse(data)
		buf := append([]byte(nil), data...)
		n, reply := in.inspectWith(buf, len(buf), aClient, aLocal, resv)
		if n > len(data) || n < 0 {
			t.Fatalf("n = %d for %d bytes", n, len(data))
		}
		if reply != nil {
			m := &stun.Message{Raw: reply}
			if err := m.Decode(); err != nil || m.Type.Class != stun.ClassErrorResponse {
				t.Fatalf("bad reply %x: %v", reply, err)
			}
			return
		}
		if bytes.Equal(buf[:n], data[:n]) {
			return
		}
		m := &stun.Message{Raw: buf[:n]}
		if err := m.Decode(); err != nil {
			t.Fatalf("rewrote into undecodable bytes: %v", err)
		}
		if err := stun.MessageIntegrity(inspectKey).Check(m); err != nil {
			t.Fatalf("rewrote without a valid signature: %v", err)
		}
		if m.Contains(stun.AttrReservationToken) {
			if _, ok := resv.tokens["tokentok"]; !ok {
				t.Fatal("took over a reservation token but left it in the message")
			}
		}
		if v, err := m.Get(stun.AttrLifetime); err == nil {
			if l := time.Duration(binary.BigEndian.Uint32(v)) * time.Second; len(v) == 4 && (l < in.minL || l > in.maxL) &&
				!(m.Type.Method == stun.MethodRefresh && l == 0) {
				t.Fatalf("lifetime %v outside bounds", l)
			}
		}
	})
}

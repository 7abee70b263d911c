package relay

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// STUN framing constants (RFC 8489 §5).
const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
	// Message types of the requests the inspector looks at (RFC 8656 §17).
	typeAllocateRequest    = 0x0003
	typeRefreshRequest     = 0x0004
	typeChannelBindRequest = 0x0009
	typeCreatePermRequest  = 0x0008
)

// inspector looks at each inbound datagram or TCP frame before pion
// handles it. Everything but three request types passes untouched, so the
// media path (ChannelData) costs one byte compare.
//
//   - Allocate and Refresh: a LIFETIME outside [minL, maxL] is rewritten to
//     the nearest bound and the message re-signed with the same long-term
//     key, so that pion grants the clamped lifetime and answers with it
//     (RFC 8656 §7.2 lets the server choose).
//   - ChannelBind to a peer the policy refuses is answered here with 403
//     Forbidden (RFC 8656 §11.2): pion would answer 401, which tells a
//     client to retry its credentials rather than give up on that peer.
//   - Refresh, CreatePermission and ChannelBind on a 5-tuple without an
//     allocation are answered with 437 Allocation Mismatch (RFC 8656 §7.3,
//     §9.2, §11.2); pion drops them silently and the client would only
//     learn by timing out.
//
// Messages it cannot verify (bad integrity, unknown user) are left for pion
// to refuse with the proper 400/401/438.
type inspector struct {
	minL, maxL  time.Duration
	keyFor      func(username, realm string) (userID string, key []byte, ok bool)
	peerAllowed func(net.IP) bool
	refused     func(peer net.IP) // called when a ChannelBind is refused here
	// hasAllocation reports whether the 5-tuple (client, local) has one.
	hasAllocation func(client, local net.Addr) bool
}

// inspect returns the length of the message now in b[:n] (a rewrite keeps
// the length), or a reply to send to the client instead of passing the
// message on.
func (in *inspector) inspect(b []byte, n int, client, local net.Addr) (int, []byte) {
	return in.inspectWith(b, n, client, local, nil)
}

// inspectWith is inspect with a reservations table (UDP listeners only).
func (in *inspector) inspectWith(b []byte, n int, client, local net.Addr, resv *reservations) (int, []byte) {
	if n < stunHeaderSize || n > len(b) || b[0]&0xC0 != 0 {
		return n, nil
	}
	t := binary.BigEndian.Uint16(b[0:2])
	if (t != typeAllocateRequest && t != typeRefreshRequest && t != typeChannelBindRequest && t != typeCreatePermRequest) ||
		binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return n, nil
	}
	m := &stun.Message{Raw: append([]byte(nil), b[:n]...)}
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return n, nil
	}
	if t != typeAllocateRequest && !in.hasAllocation(client, local) {
		return n, in.mismatch(m)
	}
	switch t {
	case typeChannelBindRequest:
		return n, in.channelBind(m)
	case typeCreatePermRequest:
		return n, nil
	}
	return in.rewrite(b, n, m, resv), nil
}

// mismatch answers 437 to an authenticated request without an allocation.
func (in *inspector) mismatch(m *stun.Message) []byte {
	key, ok := in.verified(m)
	if !ok {
		return nil
	}
	return errorReply(m, stun.CodeAllocMismatch, key)
}

func errorReply(m *stun.Message, code stun.ErrorCode, key []byte) []byte {
	reply, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		code,
		stun.MessageIntegrity(key),
		stun.Fingerprint,
	)
	if err != nil {
		return nil
	}
	return reply.Raw
}

// verified returns the key m is signed with, if it checks.
func (in *inspector) verified(m *stun.Message) ([]byte, bool) {
	_, key, ok := in.verifiedUser(m)
	return key, ok
}

func (in *inspector) verifiedUser(m *stun.Message) (string, []byte, bool) {
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return "", nil, false
	}
	id, key, ok := in.keyFor(user.String(), realm.String())
	if !ok || stun.MessageIntegrity(key).Check(m) != nil {
		return "", nil, false
	}
	return id, key, true
}

func (in *inspector) channelBind(m *stun.Message) []byte {
	var peer stun.XORMappedAddress
	if peer.GetFromAs(m, stun.AttrXORPeerAddress) != nil || in.peerAllowed(peer.IP) {
		return nil
	}
	key, ok := in.verified(m)
	if !ok {
		return nil
	}
	in.refused(peer.IP)
	return errorReply(m, stun.CodeForbidden, key)
}

// rewrite clamps LIFETIME and, with resv, takes over a RESERVATION-TOKEN;
// it re-signs the message if it changed anything.
func (in *inspector) rewrite(b []byte, n int, m *stun.Message, resv *reservations) int {
	var newLifetime []byte
	if raw, err := m.Get(stun.AttrLifetime); err == nil && len(raw) == 4 {
		asked := time.Duration(binary.BigEndian.Uint32(raw)) * time.Second
		// A Refresh with lifetime 0 deletes the allocation: leave it.
		if m.Type.Method != stun.MethodRefresh || asked != 0 {
			granted := min(max(asked, in.minL), in.maxL).Truncate(time.Second)
			if granted != asked {
				newLifetime = binary.BigEndian.AppendUint32(nil, uint32(granted/time.Second))
			}
		}
	}
	var token []byte
	if resv != nil && m.Type.Method == stun.MethodAllocate &&
		!m.Contains(stun.AttrEvenPort) && !m.Contains(stun.AttrRequestedAddressFamily) {
		// (pion rejects those combinations with 400 itself.)
		token, _ = reservationTokenOf(m)
	}
	if newLifetime == nil && token == nil {
		return n
	}
	user, key, ok := in.verifiedUser(m)
	if !ok {
		return n
	}
	if token != nil {
		port, found := resv.take(token)
		if !found {
			token = nil // unknown or expired: pion answers 508
		} else {
			resv.setPending(user, port)
		}
	}
	if newLifetime == nil && token == nil {
		return n
	}
	out := &stun.Message{Type: m.Type, TransactionID: m.TransactionID}
	out.WriteHeader()
	for _, a := range m.Attributes {
		switch {
		case a.Type == stun.AttrMessageIntegrity:
			// Attributes after MESSAGE-INTEGRITY other than FINGERPRINT
			// are ignored by receivers (RFC 8489 §14.5); drop them.
			goto sign
		case a.Type == stun.AttrLifetime && newLifetime != nil:
			out.Add(a.Type, newLifetime)
		case a.Type == stun.AttrReservationToken && token != nil:
			// handed to the relay address generator instead
		default:
			out.Add(a.Type, a.Value)
		}
	}
sign:
	if stun.MessageIntegrity(key).AddTo(out) != nil {
		return n
	}
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.AddTo(out) != nil {
		return n
	}
	if len(out.Raw) > len(b) {
		return n
	}
	return copy(b, out.Raw)
}

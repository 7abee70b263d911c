// Package relay is punchline's STUN and TURN server: the relay that carries
// media when ICE hole punching cannot connect two phones.
//
// It is built on github.com/pion/turn/v5 and implements STUN Binding
// (RFC 5389/8489) and TURN (RFC 5766/8656) over UDP, TCP and TLS client
// transports, with TCP relaying (RFC 6062) and IPv6 allocations (RFC 6156)
// as pion provides them. What this package adds around pion:
//
//   - Authentication with long-term credentials (RFC 8489 §9.2) from the same
//     account store as SIP: the key MD5(user:realm:password) is the stored SIP
//     digest HA1, so one username and password serve both. Plus TURN REST
//     ephemeral credentials (draft-uberti-behave-turn-rest): username
//     "expiry:user", password base64(HMAC-SHA1(secret, username)).
//   - A peer filter that refuses loopback, private, shared, link-local,
//     multicast and other special ranges by default (RFC 8656 §21.3: a relay
//     must not become a way into the operator's network).
//   - Quotas: allocations per user and in total (486 and 508), a per
//     allocation bandwidth cap (token bucket per direction; UDP datagrams
//     over it are dropped, RFC 6062 TCP data connections are slowed by
//     backpressure instead, sharing their allocation's budget) and bounds
//     on the allocation lifetime a client may request.
//   - Several read loops per UDP listening address (SO_REUSEPORT sockets)
//     so that every core relays.
//   - A ChannelData fast path on Linux (fastpath.go): UDP clients' channel
//     traffic is relayed by the listener and relay sockets themselves,
//     read with recvmmsg and written with sendmmsg, runs of equal-size
//     datagrams for one destination as one UDP GSO message (UDP_SEGMENT),
//     from tables pion's events keep current; pion handles everything else.
//   - Relayed-byte accounting, UDP and TCP alike: Prometheus metrics and
//     per-user totals (Server.RelayedBytesByUser). For TCP allocations
//     (tcpalloc.go) pion copies the bytes between the client's and the
//     peer's data connections itself; the peer-side conn, which this
//     package dials or accepts for pion, is wrapped to count and cap both
//     directions.
//
// Wire format notes: a datagram (or TCP frame) whose first byte is 0x40–0x7F
// is ChannelData (RFC 8656 §12.4: 2-byte channel number, 2-byte length,
// data); one whose first two bits are zero is a STUN message (20-byte header
// with magic cookie 0x2112A442, then TLV attributes). The server inspects
// Allocate and Refresh requests before pion does, to clamp the LIFETIME the
// client asked for to the configured bounds and re-sign the message.
package relay

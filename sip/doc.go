// Package sip is punchline's SIP server side: a registrar (RFC 3261 §10)
// with digest authentication (RFC 2617 style, MD5 and SHA-256 per RFC 8760)
// and a NAT-aware stateful proxy (RFC 3261 §16), built on sipgo's transport
// and transaction layers.
//
// NAT handling follows RFC 3581 (rport, and received whenever the Via
// sent-by differs from the packet source) and the flow ideas of RFC 5626:
// every binding remembers the flow it registered over (transport, source
// address and port, and through sipgo's connection pool the TCP/TLS/WS
// connection itself), and requests for that contact are sent over that
// flow rather than to the possibly private address in its Contact header.
// Keepalives are answered: CRLF on stream transports (by sipgo) and STUN
// binding requests arriving on the SIP UDP socket (RFC 5626 §4.4.2, handled
// by the front door in frontdoor.go before the SIP parser sees a packet).
//
// Record-Route URIs carry a signed flow token naming both parties' flows
// and the caller's From tag, so that in-dialog requests (ACK, BYE,
// re-INVITE, UPDATE, INFO) are routed to the NAT'd party's flow even
// though its Contact (the Request-URI) holds a private address, and even
// after a restart. The proxy never touches message bodies: ICE (RFC 8839)
// breaks when c=/m= lines no longer match a candidate.
//
// Over UDP, the front door also serves the hot paths without sipgo's
// transaction layer (fastpath.go, stateless.go): REGISTERs are answered
// statelessly in the reader that read them, as Kamailio's registrar does
// with sl replies; an INVITE without credentials gets a stateless 407
// (retransmissions get the same answer, its ACK is absorbed); and in-dialog
// requests that carry a valid flow token, with their responses, are
// forwarded statelessly (RFC 3261 §16.11) with a branch MAC'd with the
// server secret. Everything else, and every stream transport, goes through
// sipgo's transactions.
//
// Registrations are served from memory and written to the store in batches
// (every Config.FlushInterval and at Close), so a crash loses at most that
// interval of refreshes.
package sip

// Package ice gives punchline's phones their media path: an ICE session
// (RFC 8445) that gathers host, server-reflexive and relayed candidates,
// runs connectivity checks against the peer's candidates and hands back a
// net.Conn over the selected candidate pair, and the SDP encoding of all of
// it for SIP offer/answer (RFC 8839, RFC 3264, RFC 4566).
//
// # Sessions
//
// A [Session] wraps one pion/ice v4 agent with exactly one component: RTP
// and RTCP share the port (rtcp-mux, RFC 5761), so the SDP always carries
// a=rtcp-mux and only component-1 candidates. A call uses it like this:
//
//	s, _ := ice.NewSession(cfg, controlling) // caller controls (RFC 8445 §6.1.1)
//	local, _ := s.Gather(ctx)                // ufrag, pwd, candidates for our SDP
//	s.SetRemote(ufrag, pwd, candidates)       // from the peer's SDP
//	conn, _ := s.Connect(ctx)                 // RTP and RTCP go over conn
//	s.Route()                                 // direct or relayed, and the pair's types
//
// The callee does the same with controlling=false, calling SetRemote with
// the offer's values and Connect as soon as it has sent its answer (its
// checks then open its NAT for the caller's). Connect returns one net.Conn
// per session; it stays valid across route changes and restarts.
//
// When the path dies mid-call, OnStateChange reports StateDisconnected
// (nothing heard for 3 s) and later StateFailed. The phone then restarts
// ICE: Restart returns fresh credentials and candidates for a re-INVITE,
// the answer's values go to SetRemote, and checks resume on the same
// conn; if the direct path is gone, the relayed pair wins. A re-offer with
// unchanged credentials is not a restart ([Description.Restarts]).
//
// A peer that does ICE but refuses rtcp-mux (no a=rtcp-mux in its SDP)
// still gets RTP over component 1; its component-2 candidates are ignored
// and its RTCP, sent to our port+1, is lost (we do not open a second
// component).
//
// A peer whose SDP has no ICE ([Description.HasICE] false) cannot be
// reached through a Session: pion's agent needs the peer's checks. Use a
// plain UDP socket with symmetric RTP for it (package media latches), and
// answer with [Description.ClearICE] applied (NewAnswer does it).
//
// Defaults are tuned for calls rather than for pion's data-channel use: a
// 20 ms check pace, no acceptance wait for host, server-reflexive and
// peer-reflexive pairs, 1 s for relayed pairs (so a relay is only chosen
// when no direct pair has answered by then; see DefaultRelayAcceptanceWait),
// no wait at all under PolicyRelay, and disconnected/failed
// timeouts of 3 s and 10 s. On a LAN the first pair succeeds within a few
// check rounds, so setup costs tens of milliseconds.
//
// Relayed candidates on UDP TURN servers are allocated by this package
// rather than by pion's agent, behind a socket whose writes never wait for
// a TURN permission (relay.go explains why): with pion's own, every new
// peer address stalls all connectivity checks for a round trip to the
// TURN server, which doubled direct setup in the in-process lab. That
// socket also never asks a relay to send to a peer its relayed address
// cannot reach (a public relay to a private host candidate): coturn closes
// the whole allocation when such a send fails.
//
// # ICE in SDP
//
// [Description] is the audio part of an SDP body as a phone needs it:
// connection address and port (the default candidate), offered codecs with
// their rtpmap, the telephone-event payload type (RFC 4733), direction
// (hold), and the ICE attributes a=ice-ufrag, a=ice-pwd, a=ice-lite,
// a=ice-options, a=candidate, a=end-of-candidates and a=rtcp-mux. [Parse]
// reads a remote body; [Description.Marshal] writes one through pion/sdp,
// never by string templates. Candidate attribute values are parsed and
// written by pion/ice (UnmarshalCandidate and Candidate.Marshal), so the
// strings handed between SDP and [Session] are the a=candidate values
// exactly as they appear on the wire, without the "candidate:" prefix.
//
// The default candidate placed in c= and m= follows RFC 8445 §5.1.4: a
// relayed candidate if there is one, else a server-reflexive one, else a
// host candidate. That choice is the one most likely to work with a peer
// that ignores ICE, and RFC 8839 requires that c=/m= match one of the
// candidates (pjsip-based peers otherwise answer with ice-mismatch).
// See [DefaultCandidate].
package ice

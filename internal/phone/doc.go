// Package phone is punchline's softphone engine: it glues the SIP user
// agent (sip/ua), ICE (ice, on pion/ice) and RTP media (media) into calls.
//
// A [Phone] is one registered account. [Phone.Call] places a call and
// [Phone.Answer] takes one; both return a [Call] whose media runs over a
// [Leg]: one ICE session plus one RTP [media.Stream] with its statistics,
// towards one peer. Conferences reuse Leg to run one such pairwise session
// per participant.
//
// Offer/answer follows RFC 3264 with ICE in SDP (RFC 8839): the caller is
// the controlling agent and offers all its candidates with c=/m= on the
// default candidate; the callee answers with its own. Peers without ICE
// (plain SIP phones, sipp) get RTP sent to their c=/m= address and we
// latch onto where their RTP really comes from (symmetric RTP, RFC 4961
// practice). When the selected pair dies mid-call, the caller restarts ICE
// (RFC 8445 §9) with a re-INVITE and the call moves to whatever path works,
// the relay included, without hanging up.
//
// Media is encrypted with SRTP (RFC 3711) keyed by SDES (RFC 4568
// a=crypto) unless Config.SRTP says otherwise: SRTPOptional (the default)
// offers best-effort SRTP on RTP/AVP and falls back to plain RTP for a
// peer without it, SRTPMandatory offers RTP/SAVP and refuses plain peers
// with 488, SRTPOff speaks plain RTP only. Keys are fresh per offer and
// answer, kept across hold re-INVITEs and replaced on ICE restarts
// (RFC 4568 §7.1.4); see srtp.go and docs/phone.md.
//
// Setup time is measured from the first INVITE sent (for the callee: from
// the INVITE received) to the first RTP packet received.
//
// By default the STUN and TURN server is the SIP server's own relay (the
// host of Config.Server, port 3478), with the SIP username and password as
// TURN long-term credentials: punchline's relay checks them against the
// same account store.
package phone

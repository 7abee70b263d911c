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
// Setup time is measured from the first INVITE sent (for the callee: from
// the INVITE received) to the first RTP packet received.
//
// By default the STUN and TURN server is the SIP server's own relay (the
// host of Config.Server, port 3478), with the SIP username and password as
// TURN long-term credentials: punchline's relay checks them against the
// same account store.
package phone

// Package conference is the phone side of punchline's multi-party calls: a
// participant that joins a room (sip:room-NAME@REALM) and talks to every
// other participant over its own pairwise ICE call, so that the server
// carries signaling only whenever the peers can reach each other.
//
// How a participant works (docs/conference.md has the whole design):
//
//   - Join: a Subscriber sends SUBSCRIBE (Event: conference, RFC 6665) to
//     the room and refreshes it every few seconds; each NOTIFY brings the
//     full roster as RFC 4575 conference-info with punchline's mesh
//     extension (join sequence number, kind, upload budget, server media
//     port).
//   - Legs: for each other mesh participant, one INVITE through the proxy
//     with full ICE (RFC 8839) and one RTP stream (media.Stream). Of each
//     pair, the later joiner (larger sequence number) sends the INVITE, so
//     two participants never offer to each other at once (no glare). The
//     earlier joiner accepts an INVITE only from someone in its roster.
//   - Audio out: each 20 ms frame is encoded once (G.711 µ-law) and the
//     same payload is sent on every leg the uplink plan (focus.MakePlan)
//     says to; every participant computes the same plan from the same
//     roster.
//   - Audio in: every leg has its own jitter buffers (one per SSRC, so
//     streams a supernode forwards on a leg are buffered apart); the
//     engine mixes what all legs play out each 20 ms into the recording.
//   - Forwarding: a participant the plan names as supernode re-sends the
//     RTP of the participants it forwards for on all its other legs, as
//     received (their SSRC identifies the speaker). A participant whose
//     own roster entry names a server media port opens a plain UDP stream
//     to it, for a bridged SIP phone in the room or for streams the server
//     forwards.
package conference

// StreamKbpsWire is one outgoing G.711 stream with its RTP, UDP and IPv4
// headers (focus.StreamKbps), for tools that compare topologies.
const StreamKbpsWire = 80

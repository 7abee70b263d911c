package ice

import "errors"

// Sentinel errors. Wrapped errors carry detail; test with errors.Is.
var (
	// ErrClosed is returned by calls on a closed Session.
	ErrClosed = errors.New("ice: session closed")
	// ErrNoRemote is returned by Connect before SetRemote.
	ErrNoRemote = errors.New("ice: remote credentials not set")
	// ErrNotConnected is returned by Route before a pair is selected.
	ErrNotConnected = errors.New("ice: not connected")
	// ErrConnected is returned by a second Connect.
	ErrConnected = errors.New("ice: connect already called")
	// ErrFailed is returned by Connect when every candidate pair failed.
	ErrFailed = errors.New("ice: connectivity checks failed: no candidate pair works (is a TURN relay configured and reachable?)")
	// ErrGatherTimeout is returned by Gather when the bound passed before any
	// candidate was found.
	ErrGatherTimeout = errors.New("ice: no candidates gathered before the deadline")
	// ErrNoCandidates is returned by SetRemote when none of the remote
	// candidates can be used.
	ErrNoCandidates = errors.New("ice: no usable remote candidate")
	// ErrBadCandidate is returned for an a=candidate value that does not parse.
	ErrBadCandidate = errors.New("ice: malformed candidate")
	// ErrBadServer is returned by NewSession for a STUN/TURN URL that does not parse.
	ErrBadServer = errors.New("ice: bad STUN/TURN server URL")
	// ErrBadSDP is returned by Parse for a body that is not usable SDP.
	ErrBadSDP = errors.New("sdp: malformed session description")
	// ErrNoAudio is returned by Parse when the body has no audio m-line.
	ErrNoAudio = errors.New("sdp: no audio media description")
	// ErrNoCommonCodec is returned by Negotiate when the offer has neither
	// PCMU nor PCMA (488 Not Acceptable Here).
	ErrNoCommonCodec = errors.New("sdp: no common codec (we speak PCMU and PCMA)")
	// ErrUnsupportedTransport is returned by NewAnswer for an offer whose
	// m= profile we cannot run: DTLS-SRTP (UDP/TLS/RTP/SAVPF, WebRTC
	// peers), or RTP/SAVP when we have no SDES keys or no usable a=crypto
	// line (respond 488).
	ErrUnsupportedTransport = errors.New("sdp: offer needs a media protection we cannot run (we speak RTP/AVP and SDES-SRTP)")
	// ErrIncomplete is returned by Marshal for a Description missing an
	// address, port or codec.
	ErrIncomplete = errors.New("sdp: description incomplete")
)

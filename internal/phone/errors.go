package phone

import "errors"

// Sentinel errors; see also the ua and ice packages' errors, which calls
// wrap.
var (
	// ErrICEFailed means no candidate pair connected within the time allowed.
	ErrICEFailed = errors.New("ICE failed: no network path to the other phone (is the TURN relay reachable?)")
	// ErrNoMedia means the call connected but no RTP arrived in time.
	ErrNoMedia = errors.New("no audio received from the other phone")
	// ErrClosed is returned by calls on a closed Phone or Leg.
	ErrClosed = errors.New("phone closed")
	// ErrBadOffer means the peer's SDP could not be used (answered 488).
	ErrBadOffer = errors.New("unusable SDP from the other phone")
)

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
	// ErrSRTPRequired means the peer offered or answered plain RTP while
	// this phone requires SRTP (SRTPMandatory).
	ErrSRTPRequired = errors.New("the other phone does not encrypt its media (no usable a=crypto) and this phone requires SRTP (--srtp mandatory)")
	// ErrSRTPDowngrade means a re-offer or its answer would turn an
	// encrypted call into a plain one; we refuse (488) and keep SRTP.
	ErrSRTPDowngrade = errors.New("refusing to drop SRTP from an encrypted call")
)

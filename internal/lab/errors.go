package lab

import "errors"

var (
	// ErrUnavailable means the lab cannot run here: not root, or ip or nft
	// is missing. The wrapped message says which.
	ErrUnavailable = errors.New("kernel nat lab unavailable")
	// ErrNATMismatch means a router's measured behaviour is not the one its
	// NAT type names.
	ErrNATMismatch = errors.New("emulated nat does not behave as named")
	// ErrClosed is returned by a Lab used after Close.
	ErrClosed = errors.New("lab closed")
	// ErrNoProbe means a measurement was asked for but Config.Probe is empty.
	ErrNoProbe = errors.New("no probe command configured")
)

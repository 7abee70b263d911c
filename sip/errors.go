package sip

import "errors"

// Sentinel errors.
var (
	// ErrNoListeners is returned by New when Config.Listeners is empty.
	ErrNoListeners = errors.New("sip: no listeners configured")
	// ErrBadListener is returned for a listener with an unknown transport
	// or an unusable address.
	ErrBadListener = errors.New("sip: bad listener")
	// ErrNoStore is returned by New when Config.Store is nil.
	ErrNoStore = errors.New("sip: no store")
	// ErrTLSConfig is returned when a tls listener is configured without
	// certificates.
	ErrTLSConfig = errors.New("sip: tls listener needs a certificate (tls_cert and tls_key)")
	// ErrClosed is returned by Start after Close.
	ErrClosed = errors.New("sip: server closed")
	// ErrMalformedDigest is returned by the digest parser.
	ErrMalformedDigest = errors.New("malformed digest credentials")
	// ErrNotFound is returned by Lookup for an AOR without bindings.
	ErrNotFound = errors.New("no bindings")
)

package relay

import "errors"

// Sentinel errors.
var (
	// ErrNoListeners means the Config names no listener at all.
	ErrNoListeners = errors.New("no listeners configured")
	// ErrBadListener means a Listener entry is malformed.
	ErrBadListener = errors.New("bad listener")
	// ErrNoAuth means neither Users nor Secret is set, so nobody could
	// allocate.
	ErrNoAuth = errors.New("neither a user store nor a TURN REST secret is configured")
	// ErrBadConfig marks any other invalid Config value.
	ErrBadConfig = errors.New("bad config")
	// ErrTLSConfig means a tls listener was asked for without certificates.
	ErrTLSConfig = errors.New("tls listener needs a certificate (TLSConfig)")
	// ErrNoSuchUser is returned by UserKeys for an unknown account.
	ErrNoSuchUser = errors.New("no such user")
	// ErrExpired means TURN REST credentials whose expiry time has passed.
	ErrExpired = errors.New("credentials expired")
	// ErrBadCredentials means a username that is neither a stored account
	// nor valid TURN REST credentials.
	ErrBadCredentials = errors.New("bad credentials")
)

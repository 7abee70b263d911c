package ua

import (
	"errors"
	"fmt"
)

// Sentinel errors. A failed request returns a *StatusError that unwraps to
// one of these, so callers can test with errors.Is.
var (
	// ErrClosed is returned by calls on a closed UA.
	ErrClosed = errors.New("user agent closed")
	// ErrAuth means the server refused our credentials (401/407 after we
	// answered the challenge, or 403).
	ErrAuth = errors.New("wrong password or account not allowed")
	// ErrNoSuchUser is a 404: the called or registering user does not exist.
	ErrNoSuchUser = errors.New("no such user")
	// ErrOffline is a 480: the called user exists but is not registered.
	ErrOffline = errors.New("user offline")
	// ErrBusy is a 486 or 600.
	ErrBusy = errors.New("busy")
	// ErrDeclined is a 603.
	ErrDeclined = errors.New("declined")
	// ErrTimeout is a 408 or a transaction that got no final response.
	ErrTimeout = errors.New("no answer (timeout)")
	// ErrCanceled is a 487: the INVITE was canceled.
	ErrCanceled = errors.New("canceled")
	// ErrUnavailable is a 500, 502 or 503: the server or the other phone
	// could not handle the request just now.
	ErrUnavailable = errors.New("could not be handled now (server or phone error)")
	// ErrRejected covers every other failure response.
	ErrRejected = errors.New("rejected")
	// ErrNoDialog means an in-dialog request matched no dialog (481).
	ErrNoDialog = errors.New("call does not exist")
	// ErrCallEnded is returned by operations on a call that has ended.
	ErrCallEnded = errors.New("call ended")
	// ErrRemoteHangup is the reason a call ended when the peer sent BYE.
	ErrRemoteHangup = errors.New("remote party hung up")
	// ErrBadChallenge means a 401/407 carried no digest challenge we can answer.
	ErrBadChallenge = errors.New("unusable digest challenge")
)

// StatusError is a final SIP failure response to one of our requests.
type StatusError struct {
	Code   int
	Reason string
	// Kind is one of the sentinel errors above.
	Kind error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %v", e.Code, e.Reason, e.Kind)
}

func (e *StatusError) Unwrap() error { return e.Kind }

// statusError classifies a final failure response. A 401/407 only reaches
// it after our credentials were refused, so it means a wrong password.
func statusError(code int, reason string) *StatusError {
	var kind error
	switch code {
	case 401, 403, 407:
		kind = ErrAuth
	case 404, 604:
		kind = ErrNoSuchUser
	case 480:
		kind = ErrOffline
	case 486, 600:
		kind = ErrBusy
	case 603:
		kind = ErrDeclined
	case 408, 504:
		kind = ErrTimeout
	case 487:
		kind = ErrCanceled
	case 481:
		kind = ErrNoDialog
	case 500, 502, 503:
		kind = ErrUnavailable
	default:
		kind = ErrRejected
	}
	return &StatusError{Code: code, Reason: reason, Kind: kind}
}

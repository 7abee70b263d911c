package focus

import "errors"

// Sentinel errors.
var (
	// ErrBadConferenceInfo is returned for a conference-info document that
	// cannot be parsed or breaks RFC 4575's required structure.
	ErrBadConferenceInfo = errors.New("bad conference-info document")
	// ErrNotARoom is returned for a request URI that is not sip:room-NAME@REALM.
	ErrNotARoom = errors.New("not a room uri")
	// ErrWrongPIN is returned when a room has a PIN and the joiner gave
	// another one (or none).
	ErrWrongPIN = errors.New("wrong room pin")
	// ErrRoomFull is returned when a room holds MaxParticipants already.
	ErrRoomFull = errors.New("room is full")
	// ErrNotInRoom is returned for an operation on a user that is not a
	// participant of the room.
	ErrNotInRoom = errors.New("not in room")
	// ErrClosed is returned by a Focus after Close.
	ErrClosed = errors.New("focus closed")
)

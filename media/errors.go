package media

import "errors"

// Sentinel errors. Callers test them with errors.Is; the returned errors wrap
// them with the detail that explains what was wrong.
var (
	// ErrNotWAV means the input is not a RIFF/WAVE file.
	ErrNotWAV = errors.New("not a RIFF/WAVE file")
	// ErrWAVFormat means the file is WAVE but not 16-bit integer PCM with one
	// or two channels, the only encoding the reader accepts.
	ErrWAVFormat = errors.New("unsupported WAV format (want 16-bit PCM, mono or stereo)")
	// ErrWAVTruncated means a required chunk (fmt or data) is missing or cut short.
	ErrWAVTruncated = errors.New("truncated WAV file")
	// ErrUnknownCodec means an RTP payload type other than G.711 µ-law (0) or A-law (8).
	ErrUnknownCodec = errors.New("unsupported codec")
	// ErrNoConn means a Stream Config has neither Conn nor PacketConn, or both.
	ErrNoConn = errors.New("stream needs exactly one of Conn or PacketConn")
	// ErrNoRemote means a PacketConn stream has no remote address to send to yet.
	ErrNoRemote = errors.New("no remote address to send to")
	// ErrClosed means the Stream, Fanout or Player was closed.
	ErrClosed = errors.New("closed")
	// ErrBadEvent means a malformed RFC 4733 telephone-event payload or an
	// unknown DTMF digit.
	ErrBadEvent = errors.New("bad telephone-event")
	// ErrFrameSize means a frame that is not FrameSamples long.
	ErrFrameSize = errors.New("frame must be 160 samples (20 ms at 8 kHz)")
)

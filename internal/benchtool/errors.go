package benchtool

import "errors"

// Sentinel errors.
var (
	// ErrNoStats means a sipp statistics file held no complete data row.
	ErrNoStats = errors.New("benchtool: no sipp statistics row")
	// ErrNoUclientResult means turnutils_uclient printed no final counts.
	ErrNoUclientResult = errors.New("benchtool: no turnutils_uclient result")
	// ErrBadProcStat means a /proc/PID/stat line could not be parsed.
	ErrBadProcStat = errors.New("benchtool: malformed /proc stat line")
	// ErrNotReady means a server did not answer within its start timeout.
	ErrNotReady = errors.New("benchtool: server not ready")
	// ErrMissingTool means an external program the harness needs is absent.
	ErrMissingTool = errors.New("benchtool: missing tool")
)

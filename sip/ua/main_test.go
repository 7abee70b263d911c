package ua

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the UA starts must be gone after Close.
//
// The one exception is sipgo's reader of a UDP socket that sipgo's own
// client opened (readUDPConnection). Only the minimal test server in
// server_test.go sends through such sockets — the UA serves its own socket
// — and sipgo's reference count on them can go negative under load ("UDP
// ref went negative"), after which sipgo never closes them. That is a
// sipgo bug in the test server's plumbing, not a UA leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportUDP).readUDPConnection"))
}

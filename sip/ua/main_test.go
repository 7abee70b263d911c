package ua

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the UA starts must be gone after Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

package vnetlab

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a lab, relay or ICE session leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

package phone

import (
	"testing"

	"go.uber.org/goleak"
)

// Calls, legs and phones must not leave goroutines behind once closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

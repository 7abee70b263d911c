package ice

import (
	"errors"
	"testing"
)

func TestIsStaleNonce(t *testing.T) {
	for _, tc := range []struct {
		err  string
		want bool
	}{
		{"TURN allocation on 127.0.0.1:3478: Allocate error response (error 438: Wrong nonce )", true},
		{"TURN allocation on 127.0.0.1:3478: Allocate error response (error 401: Unauthorized)", false},
		{"TURN allocation on 127.0.0.1:3478: all retransmissions failed", false},
	} {
		if got := isStaleNonce(errors.New(tc.err)); got != tc.want {
			t.Errorf("isStaleNonce(%q) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

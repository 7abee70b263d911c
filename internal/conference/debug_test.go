package conference_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/punchline/punchline/media"
)

func debugLevels(t *testing.T, name string, s []int16) {
	for _, w := range []time.Duration{500 * time.Millisecond, 1 * time.Second, 2 * time.Second} {
		x := tail(s, w)
		line := fmt.Sprintf("%s last %v (%d samples):", name, w, len(x))
		for _, f := range []float64{440, 620, 820, 1040, 1280} {
			line += fmt.Sprintf(" %v=%.3f", f, media.ToneLevel(x, f))
		}
		t.Log(line)
	}
}

package lab

import (
	"math"
	"testing"
	"time"

	"github.com/punchline/punchline/media"
)

func sine(freq float64, d time.Duration, phase float64) []int16 {
	n := int(d.Seconds() * media.SampleRate)
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(8000 * math.Sin(phase+2*math.Pi*freq*float64(i)/media.SampleRate))
	}
	return out
}

// TestToneSecondsJudgesRecordings checks the audio judge the call matrix
// relies on, including the cases that must fail a cell.
func TestToneSecondsJudgesRecordings(t *testing.T) {
	silence := make([]int16, 2*media.SampleRate)
	var choppy []int16
	for i := range 40 { // 4 s of 100 ms pieces with random-ish phase jumps
		choppy = append(choppy, sine(440, 100*time.Millisecond, float64(i)*1.7)...)
	}
	withGap := append(append(sine(440, 3*time.Second, 0), silence...), sine(440, 3*time.Second, 0)...)
	for _, tc := range []struct {
		name     string
		rec      []int16
		wantSecs float64
		wantGap  time.Duration
	}{
		{"a steady tone counts fully", sine(440, 4*time.Second, 0), 4, 0},
		{"the other side's tone does not count", sine(660, 4*time.Second, 0), 0, 0},
		{"silence does not count", silence, 0, 0},
		{"phase jumps of concealed losses still count", choppy, 4, 0},
		{"a two-second dropout is measured", withGap, 6, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secs, gap := toneSeconds(tc.rec, 440)
			if math.Abs(secs-tc.wantSecs) > 0.15 || gap != tc.wantGap {
				t.Errorf("toneSeconds = %.2f s, gap %v; want %.1f s, gap %v", secs, gap, tc.wantSecs, tc.wantGap)
			}
		})
	}
}

package media

import (
	"context"
	"time"
)

// maxCatchUp bounds how many frames a pacer emits at once after the
// goroutine was starved (GC pause, overloaded machine): 200 ms, the most a
// far-end jitter buffer holds (JitterConfig.MaxDelay). Frames older than
// that would only be discarded as late there, so they are skipped.
const maxCatchUp = 10

// pace calls tick once per FrameDuration until ctx ends. It keeps time from
// a fixed start, not by sleeping between calls, so the rate does not drift:
// if ticks come late it calls tick for each frame that fell due (at most
// maxCatchUp), and skip with the number of frames abandoned beyond that.
func pace(ctx context.Context, tick func(), skip func(n int)) {
	t := time.NewTicker(FrameDuration)
	defer t.Stop()
	start := time.Now()
	done := 0
	tick()
	done++
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int(now.Sub(start)/FrameDuration) + 1
			n := due - done
			if n > maxCatchUp {
				if skip != nil {
					skip(n - maxCatchUp)
				}
				done += n - maxCatchUp
				n = maxCatchUp
			}
			for i := 0; i < n; i++ {
				if ctx.Err() != nil {
					return
				}
				tick()
				done++
			}
		}
	}
}

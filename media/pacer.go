package media

import (
	"context"
	"time"
)

// maxCatchUp bounds how many frames a pacer emits at once after the
// goroutine was starved (GC pause, overloaded machine). Past that the
// missed frames are skipped rather than sent as a burst the far end's
// jitter buffer would have to discard anyway.
const maxCatchUp = 3

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

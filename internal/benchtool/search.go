package benchtool

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Probe is the outcome of offering one rate to a server.
type Probe struct {
	// Rate is the offered rate (per second).
	Rate float64
	// Achieved is what the load tool actually delivered.
	Achieved float64
	// Clean means the bar was met: every call completed, none failed,
	// nothing was retransmitted, and the load tool kept up with Rate.
	Clean bool
	// Detail is a one-line account for the log.
	Detail string
	// Completed is how many calls (or registrations) completed.
	Completed int
	// ServerCPU and LoadCPU are the CPU time the server and the load
	// generator used over the probe.
	ServerCPU, LoadCPU time.Duration
}

// ProbeFunc offers one rate and reports what happened. An error means the
// probe could not be run at all (not that the server failed it).
type ProbeFunc func(ctx context.Context, rate float64) (Probe, error)

// SearchConfig bounds a rate search. The zero value is usable.
type SearchConfig struct {
	// Start is the first rate tried. Zero: 1000.
	Start float64
	// Min is the lowest rate tried when Start already fails. Zero: 100.
	Min float64
	// Max is the highest rate tried. Zero: 32000.
	Max float64
	// Bisections is how many probes refine the bracket between the last
	// clean and the first failing rate. Zero: 3, which brackets the
	// answer within an eighth of the first bracket.
	Bisections int
	// Step rounds probe rates to a multiple of it. Zero: 50.
	Step float64
	// Confirm re-runs a failing probe once and takes the rate as clean if
	// the second run is: on a machine shared with other work, a passing
	// hiccup must not end the search far below the server's real limit.
	Confirm bool
}

func (c SearchConfig) withDefaults() SearchConfig {
	if c.Start <= 0 {
		c.Start = 1000
	}
	if c.Min <= 0 {
		c.Min = 100
	}
	if c.Max <= 0 {
		c.Max = 32000
	}
	if c.Bisections <= 0 {
		c.Bisections = 3
	}
	if c.Step <= 0 {
		c.Step = 50
	}
	c.Start = min(max(c.Start, c.Min), c.Max)
	return c
}

// SearchRate finds the highest clean rate: it doubles from Start until a
// probe fails (or halves until one is clean), then bisects the bracket.
// The number of probes is bounded by log2(Max/Min)+Bisections+1 (twice
// that with Confirm). It
// returns the best clean probe (zero Rate if none was clean) and every
// probe made, in order.
func SearchRate(ctx context.Context, cfg SearchConfig, probe ProbeFunc) (Probe, []Probe, error) {
	cfg = cfg.withDefaults()
	var (
		best  Probe
		tried []Probe
	)
	try := func(rate float64) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		attempts := 1
		if cfg.Confirm {
			attempts = 2
		}
		for a := 0; a < attempts; a++ {
			p, err := probe(ctx, rate)
			if err != nil {
				return false, fmt.Errorf("probe at %.0f/s: %w", rate, err)
			}
			p.Rate = rate
			tried = append(tried, p)
			if p.Clean {
				if p.Rate > best.Rate {
					best = p
				}
				return true, nil
			}
		}
		return false, nil
	}
	round := func(r float64) float64 { return math.Max(cfg.Step, math.Round(r/cfg.Step)*cfg.Step) }

	lo, hi := 0.0, 0.0 // highest clean and lowest failing rate seen
	r := round(cfg.Start)
	ok, err := try(r)
	if err != nil {
		return best, tried, err
	}
	if ok {
		lo = r
		for hi == 0 {
			next := round(math.Min(lo*2, cfg.Max))
			if next <= lo {
				return best, tried, nil // clean at Max: the ceiling is the tool's
			}
			ok, err := try(next)
			if err != nil {
				return best, tried, err
			}
			if ok {
				lo = next
			} else {
				hi = next
			}
		}
	} else {
		hi = r
		for lo == 0 {
			next := round(hi / 2)
			if next < cfg.Min || next >= hi {
				return best, tried, nil // not even Min is clean
			}
			ok, err := try(next)
			if err != nil {
				return best, tried, err
			}
			if ok {
				lo = next
			} else {
				hi = next
			}
		}
	}
	for i := 0; i < cfg.Bisections; i++ {
		mid := round((lo + hi) / 2)
		if mid <= lo || mid >= hi {
			break
		}
		ok, err := try(mid)
		if err != nil {
			return best, tried, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return best, tried, nil
}

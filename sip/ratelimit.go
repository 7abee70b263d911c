package sip

import (
	"net/netip"
	"sync"
	"time"
)

// verdict is what the limiter decides for one request.
type verdict int

const (
	allow  verdict = iota
	reject         // answer 503 with Retry-After
	drop           // over even the rejection budget: stay silent
)

// limiter is a per-source-IP token bucket, in the spirit of Kamailio's pike
// module. A source over its rate is answered 503; a source that keeps
// flooding after that is dropped silently once it has also used up a
// second bucket of the same size, so that our 503s cannot be turned into
// a reflection flood.
type limiter struct {
	rate, burst float64
	now         func() time.Time

	mu sync.Mutex
	// buckets maps a source IP to its state; guarded by mu.
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens, rejects float64
	last            time.Time
}

func newLimiter(rate, burst float64) *limiter {
	if rate < 0 {
		return nil
	}
	return &limiter{rate: rate, burst: burst, now: time.Now, buckets: make(map[netip.Addr]*bucket)}
}

func (l *limiter) check(ip netip.Addr) verdict {
	if l == nil {
		return allow
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{tokens: l.burst, rejects: l.burst, last: now}
		l.buckets[ip] = b
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(l.burst, b.tokens+d*l.rate)
		b.rejects = min(l.burst, b.rejects+d*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return allow
	}
	if b.rejects >= 1 {
		b.rejects--
		return reject
	}
	return drop
}

// sweep forgets sources whose buckets have refilled: they would start
// full anyway.
func (l *limiter) sweep() {
	if l == nil {
		return
	}
	now := l.now()
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	l.mu.Lock()
	for ip, b := range l.buckets {
		if now.Sub(b.last) > full {
			delete(l.buckets, ip)
		}
	}
	l.mu.Unlock()
}

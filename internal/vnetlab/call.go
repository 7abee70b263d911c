package vnetlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/punchline/punchline/ice"
)

// Call is an ICE-connected media path between two lab hosts, set up the
// way two phones do it: each side gathers, the offer and answer carry the
// ICE attributes as SDP (ice.Description, marshalled and parsed), then the
// caller (controlling) and callee (controlled) run their checks.
type Call struct {
	From, To *Host
	// Caller and Callee are the two ICE sessions; ConnA and ConnB their
	// media conns.
	Caller, Callee *ice.Session
	ConnA, ConnB   net.Conn
	// Route is the selected pair as the caller sees it; CalleeRoute as the
	// callee sees it.
	Route, CalleeRoute ice.RouteInfo
	// Gather is how long gathering took (both sides in parallel); Setup is
	// from the moment the answer reached the caller until both sides had
	// a selected pair: the ICE part of call setup.
	Gather, Setup time.Duration
}

// Dial connects from → to. policy applies to both sides. The returned
// Call owns two sessions; Close it.
func (l *Lab) Dial(ctx context.Context, from, to *Host, policy ice.Policy) (*Call, error) {
	cfgA, cfgB := l.ICEConfig(from), l.ICEConfig(to)
	cfgA.Policy, cfgB.Policy = policy, policy
	a, err := ice.NewSession(cfgA, true)
	if err != nil {
		return nil, err
	}
	b, err := ice.NewSession(cfgB, false)
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	c := &Call{From: from, To: to, Caller: a, Callee: b}
	if err := c.setup(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s (%s) → %s (%s): %w", from.Name, from.NAT, to.Name, to.NAT, err)
	}
	return c, nil
}

// sdpFor builds and marshals the SDP a phone would send, and parses it
// back as the peer would read it.
func sdpFor(l ice.Local, offer *ice.Description) (*ice.Description, error) {
	d := ice.NewAudio()
	if err := d.SetICE(l); err != nil {
		return nil, err
	}
	if offer != nil {
		var err error
		if d, err = ice.NewAnswer(offer, d); err != nil {
			return nil, err
		}
	}
	body, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	return ice.Parse(body)
}

func (c *Call) setup(ctx context.Context) error {
	start := time.Now()
	var la, lb ice.Local
	var errA, errB error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lb, errB = c.Callee.Gather(ctx)
	}()
	la, errA = c.Caller.Gather(ctx)
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	c.Gather = time.Since(start)

	offer, err := sdpFor(la, nil)
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	answer, err := sdpFor(lb, offer)
	if err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	// The callee starts checking as soon as it has the offer; the caller
	// once the answer arrives.
	if err := c.Callee.SetRemote(offer.Ufrag, offer.Pwd, offer.Candidates); err != nil {
		return err
	}
	var connB net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		connB, errB = c.Callee.Connect(ctx)
	}()
	t0 := time.Now()
	if err := c.Caller.SetRemote(answer.Ufrag, answer.Pwd, answer.Candidates); err != nil {
		wg.Wait()
		return err
	}
	connA, errA := c.Caller.Connect(ctx)
	wg.Wait()
	if err := errors.Join(errA, errB); err != nil {
		return err
	}
	c.Setup = time.Since(t0)
	c.ConnA, c.ConnB = connA, connB
	if c.Route, err = c.Caller.Route(); err != nil {
		return err
	}
	if c.CalleeRoute, err = c.Callee.Route(); err != nil {
		return err
	}
	return nil
}

// Exchange sends n small packets each way over the call and returns how
// many arrived in each direction. Each packet gets up to 300 ms.
func (c *Call) Exchange(n int) (ab, ba int, err error) {
	ab, err = carry(c.ConnA, c.ConnB, n, 'a')
	if err != nil {
		return ab, 0, err
	}
	ba, err = carry(c.ConnB, c.ConnA, n, 'b')
	return ab, ba, err
}

func carry(from, to net.Conn, n int, tag byte) (int, error) {
	got := 0
	buf := make([]byte, 1500)
	defer func() { _ = to.SetReadDeadline(time.Time{}) }()
	for i := 0; i < n; i++ {
		msg := bytes.Repeat([]byte{tag, byte(i)}, 86) // a G.711 frame's size
		if _, err := from.Write(msg); err != nil {
			return got, fmt.Errorf("send: %w", err)
		}
		_ = to.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			k, err := to.Read(buf)
			if err != nil {
				break // lost; the next packet gets its own chance
			}
			if k == len(msg) && bytes.Equal(buf[:k], msg) {
				got++
				break
			}
		}
	}
	return got, nil
}

// Close ends both sessions.
func (c *Call) Close() {
	_ = c.Caller.Close()
	_ = c.Callee.Close()
}

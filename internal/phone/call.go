package phone

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/sip/ua"
)

// Call is a connected call: SIP dialog plus media leg.
type Call struct {
	p     *Phone
	sip   *ua.Call
	leg   *Leg
	start time.Time

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	firstRTP chan struct{}
	done     chan struct{}
	restartC chan struct{}

	// mu guards the fields below.
	mu     sync.Mutex
	setup  time.Duration
	ended  bool
	endErr error
}

// connect runs ICE and starts media; on failure it hangs up.
func (c *Call) connect(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.p.cfg.ConnectTimeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.leg.Connect(cctx) }()
	var err error
	select {
	case err = <-errc:
	case <-c.sip.Done():
		// The peer hung up (or canceled) while ICE was still checking.
		cancel()
		<-errc
		err = fmt.Errorf("call ended during setup: %w", c.sip.Err())
	}
	if err != nil {
		if errors.Is(err, ErrICEFailed) && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w: no candidate pair answered within %v", ErrICEFailed, c.p.cfg.ConnectTimeout)
		}
		return c.fail(err)
	}
	c.wg.Add(1)
	go c.supervise()
	return nil
}

// fail hangs up and cleans up after a setup failure, returning err. A
// failed ICE goes into the BYE's Reason header: both phones time out their
// checks at about the same moment, and the one whose BYE arrives first
// would otherwise leave the other saying only "remote party hung up".
func (c *Call) fail(err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	why := ""
	if errors.Is(err, ErrICEFailed) {
		why = err.Error()
	}
	c.sip.HangupBecause(ctx, why)
	c.finish(err)
	return err
}

// supervise owns the call's life after connect: it notes the first RTP,
// restarts ICE when the path dies, and ends the call when the dialog ends.
func (c *Call) supervise() {
	defer c.wg.Done()
	first := c.leg.FirstRTP()
	for {
		select {
		case <-first:
			first = nil
			c.mu.Lock()
			c.setup = time.Since(c.start)
			c.mu.Unlock()
			close(c.firstRTP)
			ri := routeOf(c.leg)
			c.p.log.Info("media flowing", "setup", c.setup.Round(time.Millisecond), "route", ri.Route,
				"local", ri.LocalType, "remote", ri.RemoteType)
		case <-c.restartC:
			c.restartICE()
		case <-c.sip.Done():
			c.finish(c.sip.Err())
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// restartICE moves the call onto a working path after the selected pair
// died: the caller (controlling side) sends a re-INVITE with fresh ICE
// credentials (RFC 8445 §9); the callee waits a little for the caller to
// do so and restarts itself only if the path is still down.
func (c *Call) restartICE() {
	if !c.sip.Outgoing() {
		select {
		case <-time.After(3 * time.Second):
		case <-c.ctx.Done():
			return
		case <-c.sip.Done():
			return
		}
		if c.leg.sessState() == ice.StateConnected {
			return // the path came back, or the caller restarted it
		}
	}
	c.p.log.Warn("media path lost; restarting ICE")
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	offer, err := c.leg.Restart(ctx)
	if err != nil {
		c.p.log.Warn("ICE restart", "err", err)
		return
	}
	ans, err := c.sip.ReInvite(ctx, offer)
	if err != nil {
		c.p.log.Warn("ICE restart re-INVITE", "err", err)
		return
	}
	if err := c.leg.SetAnswer(ans); err != nil {
		c.p.log.Warn("ICE restart answer", "err", err)
		return
	}
}

// finish ends the call locally once.
func (c *Call) finish(err error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended, c.endErr = true, err
	c.mu.Unlock()
	c.cancel()
	c.leg.Close()
	c.p.forget(c)
	close(c.done)
}

// Hangup sends BYE and ends the call. It is safe to call more than once.
func (c *Call) Hangup(ctx context.Context) error {
	err := c.sip.Hangup(ctx)
	c.finish(nil)
	c.wg.Wait()
	return err
}

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// Err says why the call ended: nil after our Hangup, ua.ErrRemoteHangup
// when the peer hung up.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// RemoteHungUp reports whether the call ended by the peer's BYE.
func (c *Call) RemoteHungUp() bool { return errors.Is(c.Err(), ua.ErrRemoteHangup) }

// FirstRTP is closed when the first RTP packet arrived.
func (c *Call) FirstRTP() <-chan struct{} { return c.firstRTP }

// Peer returns the other party, "user@host".
func (c *Call) Peer() string { return c.sip.Remote() }

// Leg returns the call's media leg.
func (c *Call) Leg() *Leg { return c.leg }

// SendDTMF sends digits as RFC 4733 telephone-events.
func (c *Call) SendDTMF(ctx context.Context, digits string) error {
	st := c.leg.Stream()
	if st == nil {
		return errors.New("no media yet")
	}
	return st.SendDTMF(ctx, digits, 0)
}

// Stats returns the call's statistics.
func (c *Call) Stats() Stats {
	st := c.leg.Stats()
	c.mu.Lock()
	if c.setup > 0 {
		st.SetupMs = float64(c.setup) / float64(time.Millisecond)
	}
	c.mu.Unlock()
	st.Peer = c.Peer()
	st.CallID = c.sip.ID()
	if c.sip.Outgoing() {
		st.Direction = "outgoing"
	} else {
		st.Direction = "incoming"
	}
	st.DurationS = time.Since(c.start).Seconds()
	return st
}

// Hold puts the peer on hold (true) or resumes (false) with a re-INVITE.
// The SDP says so; our audio keeps flowing (the media package has no pause
// yet), which a held peer simply does not play.
func (c *Call) Hold(ctx context.Context, hold bool) error {
	offer, err := c.leg.HoldOffer(hold)
	if err != nil {
		return err
	}
	ans, err := c.sip.ReInvite(ctx, offer)
	if err != nil {
		return err
	}
	return c.leg.SetAnswer(ans)
}

// RemoteHolds reports whether the peer has put us on hold.
func (c *Call) RemoteHolds() bool { return c.leg.RemoteHolds() }

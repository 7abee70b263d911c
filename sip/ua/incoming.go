package ua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// IncomingCall is an INVITE that is ringing. Answer or Reject it; if the
// caller cancels first, Canceled is closed.
type IncomingCall struct {
	call     *Call
	req      *sip.Request
	tx       sip.ServerTransaction
	decided  chan struct{}
	decide   sync.Once
	canceled chan struct{}
}

// From returns the caller's address, "user@host".
func (ic *IncomingCall) From() string { return ic.call.Remote() }

// Offer returns the caller's SDP offer (nil for a late-offer INVITE).
func (ic *IncomingCall) Offer() []byte { return ic.req.Body() }

// Canceled is closed when the caller gave up (CANCEL) before an answer.
func (ic *IncomingCall) Canceled() <-chan struct{} { return ic.canceled }

// Accept waits for the next incoming call.
func (u *UA) Accept(ctx context.Context) (*IncomingCall, error) {
	select {
	case ic := <-u.incoming:
		return ic, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-u.ctx.Done():
		return nil, ErrClosed
	}
}

// response builds a response carrying our dialog tag and Contact.
func (c *Call) response(req *sip.Request, code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	if to := res.To(); to != nil && code > 100 {
		to.Params.Add("tag", c.localTag)
	}
	if code > 100 && code < 300 {
		c.u.mu.Lock()
		contact := c.u.contact
		c.u.mu.Unlock()
		res.AppendHeader(contact.Clone())
	}
	if body != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
	}
	res.AppendHeader(sip.NewHeader("User-Agent", c.u.cfg.UserAgent))
	return res
}

// Answer accepts the call with our SDP answer (or offer, if the INVITE had
// none; the caller's answer then arrives in the ACK). The 2xx is
// retransmitted until the ACK comes (§13.3.1.4).
func (ic *IncomingCall) Answer(ctx context.Context, sdp []byte) (*Call, error) {
	c := ic.call
	select {
	case <-ic.canceled:
		return nil, fmt.Errorf("answer call from %s: %w", ic.From(), ErrCanceled)
	default:
	}
	err := errors.New("call already answered or rejected")
	ic.decide.Do(func() {
		defer close(ic.decided)
		c.mu.Lock()
		c.localSDP = sdp
		c.mu.Unlock()
		res := c.response(ic.req, 200, "OK", sdp)
		if err = ic.tx.Respond(res); err != nil {
			err = fmt.Errorf("answer call from %s: %w", ic.From(), err)
			c.end(err)
			return
		}
		if !sip.IsReliable(ic.req.Transport()) {
			c.u.goOwned(func() { c.u.retransmit2xx(c, ic.tx, res) })
		}
	})
	if err != nil {
		return nil, err
	}
	c.u.log.Info("call answered", "from", ic.From(), "call_id", c.callID)
	return c, nil
}

// Reject refuses the call, e.g. Reject(486, "Busy Here") or (603, "Decline").
func (ic *IncomingCall) Reject(code int, reason string) error {
	err := errors.New("call already answered or rejected")
	ic.decide.Do(func() {
		defer close(ic.decided)
		// Forget the call before the final response leaves: a caller may
		// retry at once (a 488 retried with another offer), and its new
		// INVITE must not find this call still counted against MaxCalls.
		ic.call.end(statusError(code, reason))
		err = ic.tx.Respond(ic.call.response(ic.req, code, reason, nil))
	})
	return err
}

// retransmit2xx resends our 2xx over UDP with T1 doubling to T2 until the
// ACK arrives; without an ACK after 64·T1 the call is over (§13.3.1.4).
func (u *UA) retransmit2xx(c *Call, tx sip.ServerTransaction, res *sip.Response) {
	interval := sip.T1
	giveUp := time.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	for {
		t := time.NewTimer(interval)
		select {
		case <-c.acked:
			t.Stop()
			return
		case <-c.done:
			t.Stop()
			return
		case <-u.ctx.Done():
			t.Stop()
			return
		case <-giveUp.C:
			t.Stop()
			u.log.Warn("no ACK for our 2xx; ending the call", "call_id", c.callID)
			ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
			c.markAcked() // let Hangup's wait for the ACK pass
			_ = c.Hangup(ctx)
			cancel()
			return
		case <-t.C:
		}
		if err := tx.Respond(res); err != nil {
			u.log.Debug("2xx retransmission", "err", err)
		}
		interval = min(interval*2, sip.T2)
	}
}

// onInvite handles a new INVITE or a re-INVITE inside a call.
func (u *UA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	to, from, callIDh := req.To(), req.From(), req.CallID()
	if to == nil || from == nil || callIDh == nil || req.CSeq() == nil {
		u.respond(tx, req, 400, "Bad Request", nil)
		return
	}
	callID := string(*callIDh)
	if _, hasTag := to.Params.Get("tag"); hasTag {
		u.mu.Lock()
		c := u.calls[callID]
		u.mu.Unlock()
		if c == nil {
			u.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
			return
		}
		c.handleReInvite(req, tx)
		return
	}

	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.respond(tx, req, 480, "Temporarily Unavailable", nil)
		return
	}
	if _, dup := u.calls[callID]; dup {
		// A retransmission that raced the transaction layer, or a loop.
		u.mu.Unlock()
		return
	}
	busy := len(u.calls) >= u.cfg.MaxCalls
	c := &Call{u: u, callID: callID, done: make(chan struct{}), acked: make(chan struct{})}
	if !busy {
		u.calls[callID] = c
	}
	u.mu.Unlock()
	if busy {
		u.respond(tx, req, 486, "Busy Here", nil)
		return
	}

	c.local = to.Address
	c.localTag = sip.GenerateTagN(16)
	c.remote = from.Address
	c.remoteTag, _ = from.Params.Get("tag")
	if ct := req.Contact(); ct != nil {
		c.remoteTarget = *ct.Address.Clone()
	} else {
		c.remoteTarget = from.Address
	}
	c.routeSet = routeSetFrom(req.GetHeaders("Record-Route"), false)
	c.remoteCSeq = req.CSeq().SeqNo
	c.localCSeq = uint32(1 + time.Now().UnixNano()%1000)
	c.remoteSDP = req.Body()

	ic := &IncomingCall{call: c, req: req, tx: tx, decided: make(chan struct{}), canceled: make(chan struct{})}
	var cancelOnce sync.Once
	markCanceled := func() { cancelOnce.Do(func() { close(ic.canceled) }) }
	tx.OnCancel(func(*sip.Request) { markCanceled() })

	if err := tx.Respond(c.response(req, 180, "Ringing", nil)); err != nil {
		c.end(err)
		return
	}
	// Hand the call over; if MaxCalls calls already wait to be taken, give
	// Accept a moment (several INVITEs may arrive together, as when every
	// newcomer to a conference calls every earlier participant) before
	// answering busy.
	handoff := time.NewTimer(2 * time.Second)
	select {
	case u.incoming <- ic:
		handoff.Stop()
	case <-handoff.C:
		_ = ic.Reject(486, "Busy Here")
		return
	case <-tx.Done():
		handoff.Stop()
		markCanceled()
		ic.decide.Do(func() { close(ic.decided) })
		c.end(ErrCanceled)
		return
	case <-u.ctx.Done():
		handoff.Stop()
		_ = ic.Reject(480, "Temporarily Unavailable")
		return
	}
	// sipgo ends the transaction when this handler returns, so stay until
	// the application decided or the caller gave up.
	select {
	case <-ic.decided:
	case <-tx.Done():
		markCanceled()
		ic.decide.Do(func() { close(ic.decided) })
		c.end(ErrCanceled)
	case <-u.ctx.Done():
		_ = ic.Reject(480, "Temporarily Unavailable")
	}
}

// handleReInvite answers a re-INVITE through the call's handler.
func (c *Call) handleReInvite(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		c.u.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	if c.reinviting {
		c.mu.Unlock()
		c.u.respond(tx, req, 491, "Request Pending", nil)
		return
	}
	if s := req.CSeq().SeqNo; s <= c.remoteCSeq {
		c.mu.Unlock()
		c.u.respond(tx, req, 500, "Server Internal Error", nil, sip.NewHeader("Retry-After", "1"))
		return
	}
	c.remoteCSeq = req.CSeq().SeqNo
	handler, current := c.onReInvite, c.localSDP
	c.mu.Unlock()

	answer := current
	if handler != nil {
		ctx, cancel := context.WithTimeout(c.u.ctx, 10*time.Second)
		a, err := handler(ctx, req.Body())
		cancel()
		if err != nil {
			c.u.log.Warn("re-INVITE refused", "err", err, "call_id", c.callID)
			_ = tx.Respond(c.response(req, 488, "Not Acceptable Here", nil))
			return
		}
		answer = a
	}
	c.mu.Lock()
	if ct := req.Contact(); ct != nil {
		c.remoteTarget = *ct.Address.Clone()
	}
	c.localSDP, c.remoteSDP = answer, req.Body()
	c.mu.Unlock()
	res := c.response(req, 200, "OK", answer)
	if err := tx.Respond(res); err != nil {
		c.u.log.Debug("re-INVITE 2xx", "err", err)
	}
	if !sip.IsReliable(req.Transport()) {
		// Wait here for the ACK, retransmitting: the handler must not
		// return before, or sipgo drops the transaction.
		c.u.retransmitReinvite2xx(c, tx, res, req.CSeq().SeqNo)
	}
}

// retransmitReinvite2xx resends a re-INVITE's 2xx until its ACK arrives.
func (u *UA) retransmitReinvite2xx(c *Call, tx sip.ServerTransaction, res *sip.Response, cseq uint32) {
	ackC := make(chan struct{})
	c.mu.Lock()
	c.pendingAck = &pendingAck{cseq: cseq, ch: ackC}
	c.mu.Unlock()
	interval := sip.T1
	deadline := time.After(64 * sip.T1)
	for {
		select {
		case <-ackC:
			return
		case <-c.done:
			return
		case <-u.ctx.Done():
			return
		case <-deadline:
			return
		case <-time.After(interval):
		}
		_ = tx.Respond(res)
		interval = min(interval*2, sip.T2)
	}
}

// pendingAck waits for the ACK of a re-INVITE's 2xx.
type pendingAck struct {
	cseq uint32
	ch   chan struct{}
}

func (u *UA) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if req.CallID() == nil || req.CSeq() == nil {
		return
	}
	u.mu.Lock()
	c := u.calls[string(*req.CallID())]
	u.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(req.Body()) > 0 && len(c.remoteSDP) == 0 {
		// Late offer: the ACK carries the caller's answer (§13.2.1).
		c.remoteSDP = req.Body()
	}
	if p := c.pendingAck; p != nil && p.cseq == req.CSeq().SeqNo {
		close(p.ch)
		c.pendingAck = nil
	}
	c.mu.Unlock()
	c.markAcked()
}

func (u *UA) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if req.CallID() == nil {
		u.respond(tx, req, 400, "Bad Request", nil)
		return
	}
	u.mu.Lock()
	c := u.calls[string(*req.CallID())]
	u.mu.Unlock()
	if c == nil {
		u.respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	u.respond(tx, req, 200, "OK", nil)
	err := ErrRemoteHangup
	if h := req.GetHeader("Reason"); h != nil {
		if why := reasonText(h.Value()); why != "" {
			err = fmt.Errorf("%w: %s", ErrRemoteHangup, why)
		}
	}
	u.log.Info("remote hung up", "call_id", c.callID, "reason", err)
	c.end(err)
}

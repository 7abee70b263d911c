package ua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ReInviteHandler answers a re-INVITE's SDP offer from the peer (an ICE
// restart, hold, a new default candidate). Returning an error refuses the
// offer with 488 and keeps the session as it was.
type ReInviteHandler func(ctx context.Context, offer []byte) (answer []byte, err error)

// Call is one INVITE dialog (RFC 3261 §12). Outgoing calls come from
// Invite, incoming ones from IncomingCall.Answer.
type Call struct {
	u        *UA
	outgoing bool
	callID   string
	done     chan struct{}
	acked    chan struct{} // closed when the ACK for our 2xx arrived (incoming calls)

	// mu guards every field below.
	mu           sync.Mutex
	local        sip.Uri // our party (From on our requests)
	remote       sip.Uri // the peer (To on our requests)
	localTag     string
	remoteTag    string
	remoteTarget sip.Uri   // the peer's Contact
	routeSet     []sip.Uri // Route headers for our in-dialog requests, in order
	localCSeq    uint32
	remoteCSeq   uint32
	localSDP     []byte
	remoteSDP    []byte
	lastAck      *sip.Request // our ACK to the latest 2xx, resent on 2xx retransmissions
	lastAckCSeq  uint32
	pendingAck   *pendingAck
	reinviting   bool // we have a re-INVITE outstanding (glare → 491, §14.2)
	onReInvite   ReInviteHandler
	ackedOnce    sync.Once
	ended        bool
	endErr       error
}

// ID returns the dialog's Call-ID.
func (c *Call) ID() string { return c.callID }

// Outgoing reports whether we placed the call.
func (c *Call) Outgoing() bool { return c.outgoing }

// Remote returns the peer's address, "user@host".
func (c *Call) Remote() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote.User + "@" + c.remote.Host
}

// LocalSDP and RemoteSDP return the session descriptions currently in force.
func (c *Call) LocalSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.localSDP
}

// RemoteSDP returns the peer's current session description.
func (c *Call) RemoteSDP() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteSDP
}

// Done is closed when the call has ended, by either side.
func (c *Call) Done() <-chan struct{} { return c.done }

// Acked is closed once the dialog is confirmed by an ACK (for outgoing
// calls: once we sent it).
func (c *Call) Acked() <-chan struct{} { return c.acked }

// Err says why the call ended: nil after our own Hangup, ErrRemoteHangup
// after the peer's BYE (followed by the text of its Reason header, if it
// had one), or another error. It is nil while the call is up.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

// OnReInvite installs the handler for re-INVITEs from the peer. Without
// one, a re-INVITE is answered with our current SDP.
func (c *Call) OnReInvite(h ReInviteHandler) {
	c.mu.Lock()
	c.onReInvite = h
	c.mu.Unlock()
}

func (c *Call) markAcked() { c.ackedOnce.Do(func() { close(c.acked) }) }

// end marks the call ended with err and forgets it.
func (c *Call) end(err error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended, c.endErr = true, err
	c.mu.Unlock()
	c.markAcked()
	close(c.done)
	c.u.mu.Lock()
	if c.u.calls[c.callID] == c {
		delete(c.u.calls, c.callID)
	}
	c.u.mu.Unlock()
}

func (c *Call) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// newRequestLocked builds an in-dialog request (§12.2.1.1): Request-URI is
// the remote target, Route is the route set, and CSeq grows by one except
// for ACK, which reuses the INVITE's number.
func (c *Call) newRequestLocked(method sip.RequestMethod, body []byte, ackCSeq uint32) *sip.Request {
	req := sip.NewRequest(method, *c.remoteTarget.Clone())
	from := &sip.FromHeader{Address: c.local, Params: sip.NewParams()}
	from.Params.Add("tag", c.localTag)
	to := &sip.ToHeader{Address: c.remote, Params: sip.NewParams()}
	if c.remoteTag != "" {
		to.Params.Add("tag", c.remoteTag)
	}
	req.AppendHeader(from)
	req.AppendHeader(to)
	callID := sip.CallIDHeader(c.callID)
	req.AppendHeader(&callID)
	seq := ackCSeq
	if method != sip.ACK {
		c.localCSeq++
		seq = c.localCSeq
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, r := range c.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	c.u.mu.Lock()
	contact := c.u.contact
	c.u.mu.Unlock()
	req.AppendHeader(contact.Clone())
	req.AppendHeader(sip.NewHeader("User-Agent", c.u.cfg.UserAgent))
	if body != nil {
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req
}

// sendAck sends the ACK for a 2xx to our INVITE with the given CSeq
// number. ACK for a 2xx is its own transaction-less request (§13.2.2.4).
func (c *Call) sendAck(cseq uint32) error {
	c.mu.Lock()
	ack := c.newRequestLocked(sip.ACK, nil, cseq)
	c.lastAck, c.lastAckCSeq = ack, cseq
	c.mu.Unlock()
	return c.u.writeAck(ack)
}

func (u *UA) writeAck(ack *sip.Request) error {
	u.prepare(ack)
	return u.cli.WriteRequest(ack, asIs)
}

// onStray2xx resends our ACK when a 2xx to an INVITE is retransmitted
// after its client transaction has ended: the peer did not get the ACK.
func (u *UA) onStray2xx(res *sip.Response) {
	if !res.IsSuccess() || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE || res.CallID() == nil {
		return
	}
	u.mu.Lock()
	c := u.calls[string(*res.CallID())]
	u.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	ack := c.lastAck
	ok := ack != nil && c.lastAckCSeq == res.CSeq().SeqNo
	if ok {
		ack = ack.Clone()
	}
	c.mu.Unlock()
	if ok {
		_ = u.writeAck(ack)
	}
}

// resolveTarget turns "bob", "bob@host" or "sip:bob@host" into a SIP URI;
// a bare name lives in our own domain.
func (u *UA) resolveTarget(target string) (sip.Uri, error) {
	var uri sip.Uri
	t := strings.TrimSpace(target)
	if t == "" {
		return uri, errors.New("empty call target")
	}
	if !strings.HasPrefix(t, "sip:") && !strings.HasPrefix(t, "sips:") {
		if !strings.Contains(t, "@") {
			t += "@" + u.cfg.Domain
		}
		t = "sip:" + t
	}
	if err := sip.ParseUri(t, &uri); err != nil {
		return uri, fmt.Errorf("call target %q: %w", target, err)
	}
	if uri.User == "" {
		return uri, fmt.Errorf("call target %q: no user part", target)
	}
	return uri, nil
}

// InviteOptions tune Invite.
type InviteOptions struct {
	// OnProgress sees provisional responses (180 Ringing, 183).
	OnProgress func(code int, reason string)
	// OnSent is called each time the INVITE leaves (again after a digest
	// challenge), for measuring setup time from the INVITE that worked.
	OnSent func()
}

// Invite calls target with the SDP offer and waits for the answer. It
// answers a 407/401 challenge, reports provisional responses, sends the ACK
// and returns the established call. Cancelling ctx before the answer
// sends CANCEL (§9.1). Failures read like "call bob@example.org: 480
// Temporarily Unavailable: user offline".
func (u *UA) Invite(ctx context.Context, target string, offer []byte, opts InviteOptions) (*Call, error) {
	to, err := u.resolveTarget(target)
	if err != nil {
		return nil, err
	}
	who := to.User + "@" + to.Host
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, ErrClosed
	}
	if len(u.calls) >= u.cfg.MaxCalls {
		u.mu.Unlock()
		return nil, fmt.Errorf("call %s: already in %d call(s)", who, u.cfg.MaxCalls)
	}
	u.mu.Unlock()

	req := u.newRequest(sip.INVITE, to, to, offer)
	c := &Call{u: u, outgoing: true, callID: string(*req.CallID()), done: make(chan struct{}), acked: make(chan struct{})}
	tag, _ := req.From().Params.Get("tag")
	c.local, c.localTag, c.remote, c.localSDP = u.aor, tag, to, offer
	u.mu.Lock()
	u.calls[c.callID] = c
	u.mu.Unlock()

	res, err := u.sendAuthenticated(func(r *sip.Request) (*sip.Response, error) {
		if opts.OnSent != nil {
			opts.OnSent()
		}
		return u.inviteTransaction(ctx, r, opts.OnProgress)
	}, req)
	if err != nil {
		c.end(err)
		return nil, fmt.Errorf("call %s: %w", who, err)
	}
	if !res.IsSuccess() {
		serr := statusError(res.StatusCode, res.Reason)
		c.end(serr)
		return nil, fmt.Errorf("call %s: %w", who, serr)
	}
	c.mu.Lock()
	c.remoteTag, _ = res.To().Params.Get("tag")
	if ct := res.Contact(); ct != nil {
		c.remoteTarget = *ct.Address.Clone()
	} else {
		c.remoteTarget = to
	}
	c.routeSet = routeSetFrom(res.GetHeaders("Record-Route"), true)
	c.localCSeq = req.CSeq().SeqNo
	c.remoteSDP = res.Body()
	c.mu.Unlock()
	if err := c.sendAck(req.CSeq().SeqNo); err != nil {
		c.end(err)
		return nil, fmt.Errorf("call %s: send ACK: %w", who, err)
	}
	c.markAcked()
	u.log.Info("call established", "to", who, "call_id", c.callID)
	return c, nil
}

// inviteTransaction runs one INVITE client transaction. If ctx ends before
// a final response it sends CANCEL once a provisional response has come
// (§9.1), and if the answer races the CANCEL it takes the call and hangs
// it up at once.
func (u *UA) inviteTransaction(ctx context.Context, req *sip.Request, onProgress func(int, string)) (*sip.Response, error) {
	if u.isClosed() {
		return nil, ErrClosed
	}
	u.prepare(req)
	if err := u.tcpFlow(ctx, req); err != nil {
		return nil, err
	}
	tx, err := u.cli.TransactionRequest(u.ctx, req, asIs)
	if err != nil {
		return nil, fmt.Errorf("send INVITE: %w", err)
	}
	defer tx.Terminate()
	provisional := false
	ctxDone := ctx.Done()
	var cancelDeadline <-chan time.Time
	canceled := false
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				provisional = true
				if onProgress != nil && res.StatusCode > 100 {
					onProgress(res.StatusCode, res.Reason)
				}
				if canceled && cancelDeadline == nil {
					u.sendCancel(req)
					cancelDeadline = time.After(4 * time.Second)
				}
				continue
			}
			if canceled {
				if res.IsSuccess() {
					u.ackAndBye(req, res)
				}
				return nil, gaveUp(ctx)
			}
			return res, nil
		case <-tx.Done():
			if canceled {
				return nil, gaveUp(ctx)
			}
			if err := tx.Err(); err != nil && !errors.Is(err, sip.ErrTransactionTimeout) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: no answer from %s", ErrTimeout, u.dest)
		case <-ctxDone:
			ctxDone = nil
			canceled = true
			if provisional {
				u.sendCancel(req)
				cancelDeadline = time.After(4 * time.Second)
			} else {
				// No provisional yet: a CANCEL could overtake the INVITE.
				// Give the far end a moment to say 100/180.
				cancelDeadline = time.After(2 * time.Second)
			}
		case <-cancelDeadline:
			return nil, gaveUp(ctx)
		}
	}
}

// gaveUp is the error of an INVITE we canceled because ctx ended: a
// deadline reads as no answer, anything else as canceled.
func gaveUp(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: nobody answered in time (canceled)", ErrTimeout)
	}
	return fmt.Errorf("%w: %v", ErrCanceled, ctx.Err())
}

// sendCancel sends CANCEL for req in its own transaction (§9.1): same
// Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE.
func (u *UA) sendCancel(inv *sip.Request) {
	cancel := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	cancel.AppendHeader(sip.HeaderClone(inv.Via()))
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	for _, r := range inv.GetHeaders("Route") {
		cancel.AppendHeader(sip.HeaderClone(r))
	}
	cancel.SetBody(nil)
	cancel.SetTransport(inv.Transport())
	cancel.SetDestination(u.dest)
	if u.pc != nil {
		u.laddr.Copy(&cancel.Laddr)
	}
	u.goOwned(func() {
		ctx, done := context.WithTimeout(u.ctx, 8*time.Second)
		defer done()
		tx, err := u.cli.TransactionRequest(ctx, cancel, asIs)
		if err != nil {
			u.log.Debug("send CANCEL", "err", err)
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-ctx.Done():
		}
	})
}

// ackAndBye confirms and immediately ends a dialog we no longer want (a 2xx
// that crossed our CANCEL).
func (u *UA) ackAndBye(inv *sip.Request, res *sip.Response) {
	tag, _ := inv.From().Params.Get("tag")
	rtag, _ := res.To().Params.Get("tag")
	c := &Call{u: u, outgoing: true, callID: string(*inv.CallID()), done: make(chan struct{}), acked: make(chan struct{}),
		local: u.aor, localTag: tag, remote: inv.To().Address, remoteTag: rtag,
		remoteTarget: inv.Recipient, routeSet: routeSetFrom(res.GetHeaders("Record-Route"), true), localCSeq: inv.CSeq().SeqNo}
	if ct := res.Contact(); ct != nil {
		c.remoteTarget = ct.Address
	}
	_ = c.sendAck(inv.CSeq().SeqNo)
	ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
	defer cancel()
	_ = c.Hangup(ctx)
}

// routeSetFrom turns Record-Route headers into a route set: reversed for
// the caller (UAC, §12.1.2), as is for the callee (UAS, §12.1.1).
func routeSetFrom(hdrs []sip.Header, reverse bool) []sip.Uri {
	var out []sip.Uri
	for _, h := range hdrs {
		// One header line may hold several comma-separated entries.
		for _, v := range splitHeaderList(h.Value()) {
			var uri sip.Uri
			params := sip.NewParams()
			if _, err := sip.ParseAddressValue(v, &uri, &params); err != nil || uri.Host == "" {
				continue // a route we could not send to
			}
			out = append(out, uri)
		}
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// splitHeaderList splits a header value on commas outside <> and quotes.
func splitHeaderList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				if s := strings.TrimSpace(v[start:i]); s != "" {
					out = append(out, s)
				}
				start = i + 1
			}
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// Hangup ends the call with BYE (§15.1). A callee waits for the ACK first,
// as §15 asks, but not beyond ctx. Hangup on an ended call does nothing.
func (c *Call) Hangup(ctx context.Context) error { return c.HangupBecause(ctx, "") }

// HangupBecause is Hangup with a Reason header (RFC 3326) carrying why
// (empty: none), which the peer's Err reports.
func (c *Call) HangupBecause(ctx context.Context, why string) error {
	if c.isEnded() {
		return nil
	}
	if !c.outgoing {
		select {
		case <-c.acked:
		case <-ctx.Done():
		case <-c.done:
			return nil
		}
	}
	c.mu.Lock()
	bye := c.newRequestLocked(sip.BYE, nil, 0)
	c.mu.Unlock()
	if why != "" {
		bye.AppendHeader(sip.NewHeader("Reason", reasonHeader(why)))
	}
	res, err := c.u.sendAuthenticated(func(r *sip.Request) (*sip.Response, error) {
		res, _, err := c.u.transact(ctx, r, nil)
		return res, err
	}, bye)
	c.end(nil)
	if err != nil {
		return fmt.Errorf("hang up: %w", err)
	}
	if !res.IsSuccess() && res.StatusCode != 481 {
		return fmt.Errorf("hang up: %w", statusError(res.StatusCode, res.Reason))
	}
	return nil
}

// ReInvite sends a new offer inside the call (ICE restart, hold) and
// returns the peer's answer. On glare (491, §14.1) it waits the random
// interval the RFC gives and tries again, twice at most.
func (c *Call) ReInvite(ctx context.Context, offer []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		answer, err := c.reInviteOnce(ctx, offer)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || se.Code != 491 || attempt >= 2 {
			return answer, err
		}
		// §14.1: the Call-ID owner waits 2.1–4 s, the other side 0–2 s.
		wait := time.Duration(rand.IntN(2000)) * time.Millisecond
		if c.outgoing {
			wait = 2100*time.Millisecond + time.Duration(rand.IntN(1900))*time.Millisecond
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrCallEnded
		}
	}
}

func (c *Call) reInviteOnce(ctx context.Context, offer []byte) ([]byte, error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return nil, ErrCallEnded
	}
	if c.reinviting {
		c.mu.Unlock()
		return nil, errors.New("re-INVITE already in progress")
	}
	c.reinviting = true
	req := c.newRequestLocked(sip.INVITE, offer, 0)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviting = false
		c.mu.Unlock()
	}()
	res, err := c.u.sendAuthenticated(func(r *sip.Request) (*sip.Response, error) {
		return c.u.inviteTransaction(ctx, r, nil)
	}, req)
	if err != nil {
		return nil, fmt.Errorf("re-INVITE: %w", err)
	}
	c.mu.Lock()
	if s := req.CSeq().SeqNo; s > c.localCSeq {
		c.localCSeq = s
	}
	c.mu.Unlock()
	if !res.IsSuccess() {
		if res.StatusCode == 481 || res.StatusCode == 408 {
			// §14.1: the dialog is gone.
			c.end(statusError(res.StatusCode, res.Reason))
		}
		return nil, fmt.Errorf("re-INVITE: %w", statusError(res.StatusCode, res.Reason))
	}
	c.mu.Lock()
	if ct := res.Contact(); ct != nil {
		c.remoteTarget = *ct.Address.Clone()
	}
	c.localSDP, c.remoteSDP = offer, res.Body()
	c.mu.Unlock()
	if err := c.sendAck(req.CSeq().SeqNo); err != nil {
		return nil, fmt.Errorf("re-INVITE ACK: %w", err)
	}
	return res.Body(), nil
}

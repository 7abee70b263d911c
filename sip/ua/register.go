package ua

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// registration is the state of our binding at the registrar. The Call-ID
// and From tag stay the same across refreshes and CSeq grows (RFC 3261
// §10.2.4), so the registrar sees one binding being refreshed.
type registration struct {
	callID  sip.CallIDHeader
	fromTag string
	cseq    uint32
	granted time.Duration
	at      time.Time
	loop    bool // the refresh loop runs
}

// Register registers our contact with the server and starts keeping it
// registered: refreshes before expiry, re-registers with backoff after a
// failure or a lost flow, and sends NAT keepalives. It returns the first
// registration's outcome, e.g.
// "register alice@example.org: 403 Forbidden: wrong password or account not allowed".
func (u *UA) Register(ctx context.Context) error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return ErrClosed
	}
	if u.reg == nil {
		u.reg = &registration{callID: sip.CallIDHeader(sip.GenerateTagN(24) + "@punchline"), fromTag: sip.GenerateTagN(16)}
	}
	startLoop := !u.reg.loop
	u.reg.loop = true
	u.mu.Unlock()

	if err := u.registerOnce(ctx, u.cfg.Expires); err != nil {
		u.mu.Lock()
		u.reg.loop = false
		u.mu.Unlock()
		return err
	}
	if startLoop {
		u.goOwned(u.refreshLoop)
		if u.cfg.KeepAlive > 0 {
			u.goOwned(u.keepaliveLoop)
		}
	}
	return nil
}

// Registered reports whether the last registration attempt succeeded and
// has not expired.
func (u *UA) Registered() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reg != nil && u.reg.granted > 0 && time.Since(u.reg.at) < u.reg.granted
}

// Unregister removes our binding (Expires: 0) and stops refreshing.
func (u *UA) Unregister(ctx context.Context) error {
	u.mu.Lock()
	if u.reg == nil {
		u.mu.Unlock()
		return nil
	}
	u.mu.Unlock()
	err := u.registerOnce(ctx, 0)
	u.mu.Lock()
	u.reg.granted = 0
	u.mu.Unlock()
	return err
}

// registerOnce sends one REGISTER (answering a digest challenge) asking
// for the given lifetime.
func (u *UA) registerOnce(ctx context.Context, expires time.Duration) error {
	u.mu.Lock()
	reg := u.reg
	reg.cseq++
	cseq := reg.cseq
	u.mu.Unlock()

	secs := int(expires / time.Second)
	req := u.newRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: u.cfg.Domain}, u.aor, nil)
	callID := reg.callID
	req.ReplaceHeader(&callID)
	req.From().Params.Add("tag", reg.fromTag)
	req.CSeq().SeqNo = cseq
	exp := sip.ExpiresHeader(secs)
	req.AppendHeader(&exp)

	res, err := u.sendAuthenticated(func(r *sip.Request) (*sip.Response, error) {
		// transact refreshes the Contact's port if the TCP connection was
		// re-dialled with a new one; the parameters stay.
		r.Contact().Params = sip.NewParams()
		r.Contact().Params.Add("expires", strconv.Itoa(secs))
		res, _, err := u.transact(ctx, r, nil)
		return res, err
	}, req)
	u.mu.Lock()
	if c := req.CSeq(); c != nil && c.SeqNo > reg.cseq {
		reg.cseq = c.SeqNo
	}
	u.mu.Unlock()
	if err != nil {
		return fmt.Errorf("register %s: %w", u.AOR(), err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("register %s: %w", u.AOR(), statusError(res.StatusCode, res.Reason))
	}
	granted := grantedExpiry(res, req.Contact(), expires)
	u.mu.Lock()
	reg.granted, reg.at = granted, time.Now()
	u.mu.Unlock()
	u.log.Info("registered", "aor", u.AOR(), "expires", granted, "server", u.dest, "transport", u.cfg.Transport)
	return nil
}

// grantedExpiry reads the lifetime the registrar granted our contact: the
// expires parameter of our Contact in the 200 OK, else its Expires
// header, else what we asked for (RFC 3261 §10.2.4).
func grantedExpiry(res *sip.Response, ours *sip.ContactHeader, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok || ours == nil {
			continue
		}
		if c.Address.User == ours.Address.User && c.Address.Host == ours.Address.Host && c.Address.Port == ours.Address.Port {
			if v, ok := c.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// refreshDelay is when to refresh a binding granted for d: well before it
// expires, leaving room for a retransmitted REGISTER (RFC 3261 Timer F is
// 32 s on UDP), but never busier than every few seconds.
func refreshDelay(d time.Duration) time.Duration {
	r := d * 8 / 10
	if d-r > 40*time.Second {
		r = d - 40*time.Second
	}
	if r < 2*time.Second {
		r = 2 * time.Second
	}
	return r
}

// refreshLoop keeps the binding alive until Close.
func (u *UA) refreshLoop() {
	backoff := time.Duration(0)
	for {
		u.mu.Lock()
		wait := refreshDelay(u.reg.granted)
		if u.reg.granted <= 0 {
			wait = 0
		}
		u.mu.Unlock()
		if backoff > 0 {
			wait = backoff
		}
		t := time.NewTimer(wait)
		// While backing off after a failure, a broken flow is no news:
		// the retry is already scheduled.
		lost := u.keepaliveC
		if backoff > 0 {
			lost = nil
		}
		select {
		case <-u.ctx.Done():
			t.Stop()
			return
		case <-lost:
			// The flow to the server broke or our public address changed:
			// the registrar's binding points nowhere, register again now.
			t.Stop()
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(u.ctx, 35*time.Second)
		err := u.registerOnce(ctx, u.cfg.Expires)
		cancel()
		if u.ctx.Err() != nil {
			return
		}
		if err != nil {
			if backoff == 0 {
				backoff = u.cfg.RetryMin
			} else {
				backoff = min(backoff*2, u.cfg.RetryMax)
			}
			u.log.Warn("re-register failed", "err", err, "retry_in", backoff)
			continue
		}
		backoff = 0
	}
}

package ua

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// algorithmRank orders the digest algorithms we can answer, best first
// (RFC 8760 §2.4: a UAC uses the strongest algorithm it supports when the
// server offers several challenges).
var algorithmRank = map[string]int{"SHA-256": 2, "MD5": 1, "": 1}

// authorize answers the 401/407 challenge in res by adding an
// Authorization or Proxy-Authorization header to req. It picks the
// strongest of the offered challenges.
func (u *UA) authorize(req *sip.Request, res *sip.Response) error {
	challengeHdr, credHdr := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		challengeHdr, credHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var best *digest.Challenge
	bestRank := 0
	for _, h := range res.GetHeaders(challengeHdr) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		chal.Algorithm = strings.ToUpper(chal.Algorithm)
		if r := algorithmRank[chal.Algorithm]; r > bestRank {
			best, bestRank = chal, r
		}
	}
	if best == nil {
		return fmt.Errorf("%w in %d %s", ErrBadChallenge, res.StatusCode, res.Reason)
	}
	cred, err := digest.Digest(best, digest.Options{
		Method:   req.Method.String(),
		URI:      req.Recipient.Addr(),
		Username: u.cfg.User,
		Password: u.cfg.Password,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadChallenge, err)
	}
	req.RemoveHeader(credHdr)
	req.AppendHeader(sip.NewHeader(credHdr, cred.String()))
	return nil
}

// isStale reports whether a challenge says our nonce merely expired
// (RFC 2617 §3.2.1 stale=true): then a retry with the new nonce is right
// even though we already answered once.
func isStale(res *sip.Response) bool {
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, h := range res.GetHeaders(name) {
			if chal, err := digest.ParseChallenge(h.Value()); err == nil && chal.Stale {
				return true
			}
		}
	}
	return false
}

// sendAuthenticated runs a transaction, answering up to two digest
// challenges (one fresh, one stale nonce) with a new CSeq each time
// (RFC 3261 §22.2: the retry is a new request in the same call).
func (u *UA) sendAuthenticated(send func(req *sip.Request) (*sip.Response, error), req *sip.Request) (*sip.Response, error) {
	answered := 0
	for {
		res, err := send(req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode != 401 && res.StatusCode != 407 {
			return res, nil
		}
		if answered >= 2 || (answered == 1 && !isStale(res)) || u.cfg.Password == "" {
			return res, nil
		}
		if err := u.authorize(req, res); err != nil {
			return nil, err
		}
		answered++
		req.CSeq().SeqNo++
	}
}

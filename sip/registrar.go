package sip

import (
	"crypto/subtle"
	"errors"
	"strconv"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"

	"github.com/punchline/punchline/internal/store"
)

// authenticate checks the digest credentials in header hdr
// ("Authorization" for the registrar, "Proxy-Authorization" for the proxy)
// against the store. On failure it has answered the request (401/407
// challenge, 403, or 400) and returns ok=false.
func (s *Server) authenticate(req *siplib.Request, tx siplib.ServerTransaction, hdr string) (user string, ok bool) {
	code, phrase, chName := 401, "Unauthorized", "WWW-Authenticate"
	if hdr == "Proxy-Authorization" {
		code, phrase, chName = 407, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	challengeWith := func(stale bool, why string) {
		var nb [nonceLen]byte
		nonce := s.nonces.appendNonce(nb[:0])
		if st, ok := tx.(*statelessTx); ok {
			// The common case, written straight into the answer.
			a := startRawAnswer(req, code, phrase)
			for _, alg := range s.cfg.Algorithms {
				a.b = append(append(a.b, chName...), ": "...)
				a.b = appendChallenge(a.b, s.cfg.Realm, nonce, alg, stale)
				a.b = append(a.b, "\r\n"...)
			}
			if err := st.sendRaw(a.finish(why, s.cfg.UserAgent), true); err != nil {
				s.log.Debug("respond failed", "status", code, "err", err)
			}
			a.release()
			return
		}
		hs := make([]hdrLine, 0, 2)
		for _, alg := range s.cfg.Algorithms {
			hs = append(hs, hdrLine{chName, challenge(s.cfg.Realm, string(nonce), alg, stale)})
		}
		s.answer(req, tx, code, phrase, why, hs...)
	}
	var creds Credentials
	var found bool
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), hdr) {
			continue
		}
		c, err := ParseCredentials(h.Value())
		if err != nil {
			s.metrics.authFailures.Inc()
			s.answer(req, tx, 400, "Bad Request", hdr+": "+err.Error())
			return "", false
		}
		// A request may carry credentials for several realms (one per
		// proxy on the path); ours are the ones naming our realm.
		if c.Realm == s.cfg.Realm {
			creds, found = c, true
			break
		}
	}
	if !found {
		challengeWith(false, "")
		return "", false
	}
	if !s.offers(creds.Algorithm) {
		challengeWith(false, "algorithm "+creds.Algorithm+" not offered")
		return "", false
	}
	var txh uint32
	via := req.Via()
	if via != nil {
		br, _ := via.Params.Get("branch")
		txh = txHash(br, via.Host, via.Port)
	}
	switch res, use := s.nonces.checkTx(creds.Nonce, &creds, txh, via != nil); res {
	case nonceStale:
		challengeWith(true, "")
		return "", false
	case nonceBad:
		s.metrics.authFailures.Inc()
		challengeWith(false, "unknown nonce")
		return "", false
	case nonceReplay:
		s.metrics.authFailures.Inc()
		challengeWith(false, "nonce count replayed")
		return "", false
	default:
		// Only the proxy's lookups are cached: see userCache.lookup.
		u, err := s.users.lookup(creds.Username, hdr == "Proxy-Authorization")
		if err != nil {
			s.metrics.authFailures.Inc()
			if !errors.Is(err, store.ErrNoSuchUser) {
				s.log.Warn("user lookup failed", "user", creds.Username, "err", err)
				s.answer(req, tx, 500, "Server Internal Error", "account store unavailable")
				return "", false
			}
			// Same answer as a wrong password: which names exist is
			// nobody's business.
			s.answer(req, tx, 403, "Forbidden", "wrong user name or password")
			return "", false
		}
		var hexBuf [64]byte
		ha1 := u.ha1Hex(&hexBuf, creds.Algorithm)
		if u.realm != s.cfg.Realm || ha1 == nil {
			s.metrics.authFailures.Inc()
			s.answer(req, tx, 403, "Forbidden", "account belongs to realm "+u.realm)
			return "", false
		}
		var wantBuf [64]byte
		want := appendDigestResponse(wantBuf[:0], creds.Algorithm, ha1, string(req.Method), &creds)
		if subtle.ConstantTimeCompare(want, []byte(creds.Response)) != 1 {
			s.metrics.authFailures.Inc()
			s.answer(req, tx, 403, "Forbidden", "wrong user name or password")
			return "", false
		}
		use.commit()
		return u.name, true
	}
}

// hdrLine is one header line of an answer.
type hdrLine struct{ name, value string }

// answer replies like Server.reply. On the stateless UDP path it writes
// the response straight into a pooled buffer (see rawAnswer); otherwise
// it builds a sipgo Response for the transaction.
func (s *Server) answer(req *siplib.Request, tx siplib.ServerTransaction, code int, phrase, why string, extra ...hdrLine) {
	st, ok := tx.(*statelessTx)
	if !ok {
		hs := make([]siplib.Header, len(extra))
		for i, h := range extra {
			hs[i] = siplib.NewHeader(h.name, h.value)
		}
		s.reply(req, tx, code, phrase, why, hs...)
		return
	}
	a := startRawAnswer(req, code, phrase)
	for _, h := range extra {
		a.header(h.name, h.value)
	}
	if err := st.sendRaw(a.finish(why, s.cfg.UserAgent), code >= 200); err != nil {
		s.log.Debug("respond failed", "status", code, "err", err)
	}
	a.release()
}

func (s *Server) offers(alg string) bool {
	for _, a := range s.cfg.Algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// handleRegister is the registrar (RFC 3261 §10.3).
func (s *Server) handleRegister(req *siplib.Request, tx siplib.ServerTransaction) {
	aor := req.To().Address.User
	if aor == "" {
		s.answer(req, tx, 404, "Not Found", "To has no user part")
		return
	}
	user, ok := s.authenticate(req, tx, "Authorization")
	if !ok {
		return
	}
	if user != aor {
		s.metrics.authFailures.Inc()
		s.answer(req, tx, 403, "Forbidden", user+" may not register "+aor)
		return
	}

	now := time.Now()
	defExpires := s.cfg.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || n < 0 {
			s.answer(req, tx, 400, "Bad Request", "bad Expires header")
			return
		}
		defExpires = n
	}
	type change struct {
		key     string
		b       Binding
		expires int
	}
	var changes []change
	wildcard := false
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), "Contact") {
			continue
		}
		c, ok := h.(*siplib.ContactHeader)
		if !ok {
			s.answer(req, tx, 400, "Bad Request", "unreadable Contact")
			return
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		exp := defExpires
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				s.answer(req, tx, 400, "Bad Request", "bad expires parameter in Contact")
				return
			}
			exp = n
		}
		if exp > 0 && exp < s.cfg.MinExpires {
			s.answer(req, tx, 423, "Interval Too Brief", "", hdrLine{"Min-Expires", strconv.Itoa(s.cfg.MinExpires)})
			return
		}
		exp = min(exp, s.cfg.MaxExpires)
		q := 1.0
		if v, ok := c.Params.Get("q"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				s.answer(req, tx, 400, "Bad Request", "q must be between 0 and 1")
				return
			}
			q = f
		}
		if c.Address.Host == "" {
			s.answer(req, tx, 400, "Bad Request", "Contact has no host")
			return
		}
		inst, _ := c.Params.Get("+sip.instance")
		b := Binding{
			Contact:  c.Address.String(),
			Q:        q,
			Expires:  now.Add(time.Duration(exp) * time.Second),
			CallID:   req.CallID().Value(),
			CSeq:     req.CSeq().SeqNo,
			Flow:     s.flowOf(req, tx),
			Instance: inst,
		}
		if ua := req.GetHeader("User-Agent"); ua != nil {
			b.UserAgent = s.loc.strs.intern(ua.Value())
		}
		changes = append(changes, change{contactKey(&c.Address), b, exp})
	}
	if wildcard && (len(changes) > 0 || defExpires != 0) {
		// RFC 3261 §10.3 step 6.
		s.answer(req, tx, 400, "Bad Request", "Contact: * must be alone and with Expires: 0")
		return
	}

	callID, cseq := req.CallID().Value(), req.CSeq().SeqNo
	var outOfOrder bool
	current := s.loc.update(aor, func(bs []Binding) ([]Binding, bool) {
		if wildcard {
			for _, b := range bs {
				if b.CallID == callID && cseq <= b.CSeq {
					outOfOrder = true
					return bs, false
				}
			}
			return nil, len(bs) > 0
		}
		if len(changes) == 0 {
			return bs, false
		}
		out := make([]Binding, 0, len(bs)+len(changes))
		out = append(out, bs...)
		for _, ch := range changes {
			idx := -1
			for i := range out {
				if u, err := out[i].uri(); err == nil && contactKey(&u) == ch.key {
					idx = i
					break
				}
			}
			if idx >= 0 && out[idx].CallID == callID && cseq <= out[idx].CSeq {
				// A reordered or replayed REGISTER: §10.3 step 7 says it
				// must not change the binding.
				outOfOrder = true
				continue
			}
			switch {
			case ch.expires == 0 && idx >= 0:
				out = append(out[:idx], out[idx+1:]...)
			case ch.expires == 0:
			case idx >= 0:
				out[idx] = ch.b
			default:
				out = append(out, ch.b)
			}
		}
		// Drop lapsed bindings and keep within MaxContacts by evicting the
		// ones that expire first.
		keep := out[:0]
		for _, b := range out {
			if b.Expires.After(now) {
				keep = append(keep, b)
			}
		}
		for len(keep) > s.cfg.MaxContacts {
			oldest := 0
			for i := range keep {
				if keep[i].Expires.Before(keep[oldest].Expires) {
					oldest = i
				}
			}
			keep = append(keep[:oldest], keep[oldest+1:]...)
		}
		return keep, true
	})
	if outOfOrder {
		// §10.3 step 7 leaves the binding alone; answering with the
		// current bindings (rather than an error) is what a late
		// retransmission's sender can use.
		s.log.Debug("out-of-order REGISTER left bindings unchanged", "aor", aor, "cseq", cseq)
	}

	if st, ok := tx.(*statelessTx); ok {
		a := startRawAnswer(req, 200, "OK")
		for i := range current {
			b := &current[i]
			a.b = append(a.b, "Contact: <"...)
			a.b = append(a.b, b.Contact...)
			a.b = append(a.b, ">;expires="...)
			a.b = strconv.AppendInt(a.b, int64(max(0, int(b.Expires.Sub(now).Round(time.Second)/time.Second))), 10)
			if b.Q != 1 {
				a.b = append(a.b, ";q="...)
				a.b = strconv.AppendFloat(a.b, b.Q, 'f', -1, 64)
			}
			a.b = append(a.b, "\r\n"...)
		}
		a.b = append(a.b, "Date: "...)
		a.b = now.UTC().AppendFormat(a.b, "Mon, 02 Jan 2006 15:04:05 GMT")
		a.b = append(a.b, "\r\n"...)
		if err := st.sendRaw(a.finish("", s.cfg.UserAgent), true); err != nil {
			s.log.Debug("respond failed", "status", 200, "err", err)
		}
		a.release()
		return
	}
	res := siplib.NewResponseFromRequest(req, 200, "OK", nil)
	for _, b := range current {
		var c siplib.ContactHeader
		if err := siplib.ParseUri(b.Contact, &c.Address); err != nil {
			continue
		}
		c.Params = siplib.NewParams()
		c.Params.Add("expires", strconv.Itoa(max(0, int(time.Until(b.Expires).Round(time.Second)/time.Second))))
		if b.Q != 1 {
			c.Params.Add("q", strconv.FormatFloat(b.Q, 'f', -1, 64))
		}
		res.AppendHeader(&c)
	}
	res.AppendHeader(siplib.NewHeader("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
	s.respond(tx, res)
}

// flowOf records how a request reached us.
func (s *Server) flowOf(req *siplib.Request, tx siplib.ServerTransaction) Flow {
	f := Flow{Transport: transportName(req.Transport()), Source: req.MessageData.Source()}
	switch st := tx.(type) {
	case *siplib.ServerTx:
		if st.Connection() != nil {
			f.Local = s.loc.strs.intern(st.Connection().LocalAddr().String())
		}
	case *statelessTx:
		f.Local = s.loc.strs.intern(st.fd.LocalAddr().String())
	}
	return f
}

// transportName is the lower-case transport, as a constant for the usual
// ones so that bindings do not each hold a copy.
func transportName(t string) string {
	for _, c := range [...]string{"udp", "tcp", "tls", "ws", "wss"} {
		if strings.EqualFold(t, c) {
			return c
		}
	}
	return strings.ToLower(t)
}

package sip

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"

	"github.com/punchline/punchline/internal/store"
)

// branchPrefix marks Via branches this proxy generated; the 8 hex digits
// after it are the loop-detection hash (RFC 3261 §16.6 step 8).
const branchPrefix = siplib.RFC3261BranchMagicCookie + "pl"

// inviteTimerC bounds how long an INVITE branch may ring after a
// provisional response before the proxy cancels it (RFC 3261 §16.8 says
// more than 3 minutes).
const inviteTimerC = 181 * time.Second

// target is one place a request is forwarded to.
type target struct {
	uri  siplib.Uri
	flow Flow
	// route is a next-hop URI (a Route header that is not ours) to send
	// to instead of a flow.
	route *siplib.Uri
}

// handleRequest routes every request except REGISTER, ACK and CANCEL:
// OPTIONS to the server itself, in-dialog requests by their route, and
// initial requests to the callee's registered contacts.
func (s *Server) handleRequest(req *siplib.Request, tx siplib.ServerTransaction) {
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == siplib.OPTIONS && s.isOurs(&req.Recipient) {
			s.answerOptions(req, tx)
			return
		}
		s.reply(req, tx, 483, "Too Many Hops", "Max-Forwards reached 0")
		return
	}
	token, hadRoute := s.popOurRoutes(req)
	if _, ok := req.To().Params.Get("tag"); ok {
		if token == "" && s.isRoomContact(req) {
			s.roomInDialog(req, tx)
			return
		}
		s.routeInDialog(req, tx, token, hadRoute)
		return
	}
	if s.isOurs(&req.Recipient) && req.Recipient.User == "" {
		if req.Method == siplib.OPTIONS {
			s.answerOptions(req, tx)
			return
		}
		s.reply(req, tx, 404, "Not Found", "no user in Request-URI")
		return
	}
	if s.looped(req) {
		s.reply(req, tx, 482, "Loop Detected", "request already passed this proxy")
		return
	}
	user, ok := s.authenticate(req, tx, "Proxy-Authorization")
	if !ok {
		return
	}
	if from := req.From().Address.User; from != user {
		s.metrics.authFailures.Inc()
		s.reply(req, tx, 403, "Forbidden", "From "+from+" does not match authenticated user "+user)
		return
	}
	callee := req.Recipient.User
	if strings.HasPrefix(callee, s.cfg.RoomPrefix) {
		if s.cfg.RoomHandler == nil {
			s.reply(req, tx, 404, "Not Found", "conference rooms are not enabled")
			return
		}
		s.cfg.RoomHandler.HandleRoom(req, tx, user)
		return
	}
	if _, err := s.users.get(callee); err != nil {
		if errors.Is(err, store.ErrNoSuchUser) {
			s.countCall(req, "4xx")
			s.reply(req, tx, 404, "Not Found", "no such user "+callee)
			return
		}
		s.reply(req, tx, 500, "Server Internal Error", "account store unavailable")
		return
	}
	bindings := s.loc.get(callee, time.Now())
	if len(bindings) == 0 {
		s.countCall(req, "4xx")
		s.reply(req, tx, 480, "Temporarily Unavailable", callee+" is not registered")
		return
	}
	targets := make([]target, 0, len(bindings))
	for _, b := range bindings {
		u, err := b.uri()
		if err != nil {
			continue
		}
		targets = append(targets, target{uri: u, flow: b.Flow})
	}
	s.forward(req, tx, targets, true)
}

func (s *Server) countCall(req *siplib.Request, result string) {
	if req.IsInvite() {
		if _, inDialog := req.To().Params.Get("tag"); !inDialog {
			s.metrics.calls.WithLabelValues(result).Inc()
		}
	}
}

func (s *Server) answerOptions(req *siplib.Request, tx siplib.ServerTransaction) {
	res := siplib.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(siplib.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, MESSAGE, PRACK, NOTIFY, SUBSCRIBE, REFER"))
	s.respond(tx, res)
}

// isOurs reports whether a URI names this server (one of its listeners or
// its advertised host).
func (s *Server) isOurs(u *siplib.Uri) bool {
	host := strings.Trim(u.Host, "[]")
	port := u.Port
	s.mu.Lock()
	defer s.mu.Unlock()
	for tr, hp := range s.local {
		p := port
		if p == 0 {
			p = int(siplib.DefaultPort(tr))
		}
		if p != hp.port {
			continue
		}
		if host == hp.host {
			return true
		}
		for _, b := range s.bound {
			if h, _, err := net.SplitHostPort(b.Addr.String()); err == nil && h == host {
				return true
			}
		}
	}
	return false
}

// popOurRoutes removes the Route entries naming this proxy from the top
// of the route set (RFC 3261 §16.4) and returns the dialog token found in
// them.
func (s *Server) popOurRoutes(req *siplib.Request) (token string, had bool) {
	for {
		r := req.Route()
		if r == nil || !s.isOurs(&r.Address) {
			return token, had
		}
		had = true
		if r.Address.User != "" && token == "" {
			token = r.Address.User
		}
		req.RemoveHeader("Route")
	}
}

// loopHash is the RFC 3261 §16.6 step 8 hash over the fields that stay
// the same when a request comes back to us in a loop and change in a
// spiral.
func loopHash(req *siplib.Request) string {
	h := sha256.New()
	h.Write([]byte(req.Recipient.String()))
	h.Write([]byte{0})
	if t, ok := req.From().Params.Get("tag"); ok {
		h.Write([]byte(t))
	}
	h.Write([]byte{0})
	h.Write([]byte(req.CallID().Value()))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)))
	for _, r := range req.GetHeaders("Route") {
		h.Write([]byte(r.Value()))
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// looped reports a request that carries one of our Vias with the same
// loop hash it has now (RFC 3261 §16.3 step 4).
func (s *Server) looped(req *siplib.Request) bool {
	var hash string
	for _, h := range req.GetHeaders("Via") {
		v, ok := h.(*siplib.ViaHeader)
		if !ok {
			continue
		}
		br, _ := v.Params.Get("branch")
		if !strings.HasPrefix(br, branchPrefix) || len(br) < len(branchPrefix)+8 {
			continue
		}
		if !s.isOurs(&siplib.Uri{Host: v.Host, Port: v.Port}) {
			continue
		}
		if hash == "" {
			hash = loopHash(req)
		}
		if br[len(branchPrefix):len(branchPrefix)+8] == hash {
			return true
		}
	}
	return false
}

// routeInDialog sends a request inside a dialog this proxy
// record-routed: by the signed flow token when present (the direction
// follows the From tag), else to the registered contact its Request-URI
// names, else to a further Route.
func (s *Server) routeInDialog(req *siplib.Request, tx siplib.ServerTransaction, token string, hadRoute bool) {
	var tok *dialogToken
	if token != "" {
		if t, err := s.decodeToken(token); err == nil {
			tok = &t
		} else {
			s.log.Debug("in-dialog request with a bad flow token", "method", req.Method, "from", req.Source())
		}
	}
	if r := req.Route(); r != nil {
		// Another proxy is next on the route set: loose routing to it,
		// but only for dialogs we record-routed (a valid token). Anything
		// else would make us a free relay for whoever writes a Route.
		if tok == nil {
			s.reply(req, tx, 403, "Forbidden", "this proxy is not on the request's route set")
			return
		}
		u := r.Address
		s.forward(req, tx, []target{{uri: req.Recipient, route: &u}}, false)
		return
	}
	if tok != nil {
		fl := tok.Callee
		if ft, _ := req.From().Params.Get("tag"); ft != tok.FromTag {
			fl = tok.Caller
		}
		s.forward(req, tx, []target{{uri: req.Recipient, flow: fl}}, false)
		return
	}
	if b, ok := s.loc.findByContact(&req.Recipient, time.Now()); ok {
		s.forward(req, tx, []target{{uri: req.Recipient, flow: b.Flow}}, false)
		return
	}
	if !hadRoute && req.Method == siplib.OPTIONS && s.isOurs(&req.Recipient) {
		s.answerOptions(req, tx)
		return
	}
	s.reply(req, tx, 481, "Call/Transaction Does Not Exist", "no route for this in-dialog request")
}

// isRoomContact reports an in-dialog request addressed to the conference
// focus itself: its Request-URI is the focus's Contact (a room user at one
// of our own addresses) or the room URI in our realm (a subscriber that
// keeps the room URI as its target), and no further Route leads elsewhere. The focus
// answers such dialogs inside this process, so nothing record-routed them
// and they carry no flow token.
func (s *Server) isRoomContact(req *siplib.Request) bool {
	return s.cfg.RoomHandler != nil && req.Route() == nil &&
		strings.HasPrefix(req.Recipient.User, s.cfg.RoomPrefix) &&
		(s.isOurs(&req.Recipient) || strings.EqualFold(req.Recipient.Host, s.cfg.Realm))
}

// roomInDialog hands an in-dialog request to the focus: a bridged phone's
// BYE or re-INVITE, a participant's SUBSCRIBE refresh with the focus's To
// tag (RFC 6665 §4.1.2.1). Requests that change membership (SUBSCRIBE,
// INVITE) are authenticated as outside a dialog; the focus matches BYE
// and ACK to its dialogs by Call-ID and tags.
func (s *Server) roomInDialog(req *siplib.Request, tx siplib.ServerTransaction) {
	user := ""
	if req.Method == siplib.SUBSCRIBE || req.Method == siplib.INVITE {
		u, ok := s.authenticate(req, tx, "Proxy-Authorization")
		if !ok {
			return
		}
		if from := req.From().Address.User; from != u {
			s.metrics.authFailures.Inc()
			s.reply(req, tx, 403, "Forbidden", "From "+from+" does not match authenticated user "+u)
			return
		}
		user = u
	}
	s.cfg.RoomHandler.HandleRoom(req, tx, user)
}

// handleAck forwards ACKs for 2xx (ACKs for other responses are absorbed
// by the server transaction). ACK has no response, so it goes statelessly.
func (s *Server) handleAck(req *siplib.Request, _ siplib.ServerTransaction) {
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return
	}
	token, _ := s.popOurRoutes(req)
	var tg target
	t, tokErr := s.decodeToken(token)
	switch {
	case req.Route() != nil:
		if token == "" || tokErr != nil {
			return // not on our route set: no free relay
		}
		u := req.Route().Address
		tg = target{uri: req.Recipient, route: &u}
	case token != "":
		if tokErr != nil {
			return
		}
		tg = target{uri: req.Recipient, flow: t.Callee}
		if ft, _ := req.From().Params.Get("tag"); ft != t.FromTag {
			tg.flow = t.Caller
		}
	case s.isRoomContact(req):
		// The ACK of a 2xx the focus sent (a bridged phone's call).
		s.cfg.RoomHandler.HandleRoom(req, nil, "")
		return
	default:
		b, ok := s.loc.findByContact(&req.Recipient, time.Now())
		if !ok {
			return
		}
		tg = target{uri: req.Recipient, flow: b.Flow}
	}
	out := s.prepareOut(req, tg, Flow{}, false)
	if err := s.tpl.WriteMsg(out); err != nil {
		s.log.Debug("forwarding ACK failed", "err", err)
	}
}

// handleCancel answers CANCELs that match no INVITE transaction (sipgo
// itself answers the matching ones with 200 and the INVITE with 487, and
// tells the forwarding loop through OnCancel).
func (s *Server) handleCancel(req *siplib.Request, tx siplib.ServerTransaction) {
	s.reply(req, tx, 481, "Call/Transaction Does Not Exist", "no transaction to cancel")
}

// prepareOut builds the request sent to one target (RFC 3261 §16.6).
func (s *Server) prepareOut(req *siplib.Request, tg target, caller Flow, recordRoute bool) *siplib.Request {
	out := forwardCopy(req, tg.uri)
	if mf := out.MaxForwards(); mf != nil {
		mf.Dec()
	} else {
		m := siplib.MaxForwardsHeader(70)
		out.AppendHeader(&m)
	}
	var tr, dest string
	if tg.route != nil {
		tr = "udp"
		if t, ok := tg.route.UriParams.Get("transport"); ok {
			tr = strings.ToLower(t)
		}
		port := tg.route.Port
		if port == 0 {
			port = int(siplib.DefaultPort(tr))
		}
		dest = net.JoinHostPort(strings.Trim(tg.route.Host, "[]"), strconv.Itoa(port))
	} else {
		tr, dest = tg.flow.Transport, tg.flow.Source
	}
	s.mu.Lock()
	hp, ok := s.local[tr]
	if !ok {
		// No listener of the flow's transport (after a reconfiguration):
		// fall back to UDP.
		tr = "udp"
		hp = s.local[tr]
	}
	var laddr siplib.Addr
	if tr == "udp" {
		if a, ok := s.udpLocal[tg.flow.Local]; ok {
			laddr = a
		} else {
			for _, a := range s.udpLocal {
				laddr = a
				break
			}
		}
	}
	inHP := hp
	inTr := strings.ToLower(req.Transport())
	if h, ok := s.local[inTr]; ok {
		inHP = h
	}
	s.mu.Unlock()

	if recordRoute {
		tok := dialogToken{Caller: caller, Callee: tg.flow}
		tok.FromTag, _ = req.From().Params.Get("tag")
		user := tok.encode(s.tokenKey)
		// With different transports on each side, record-route twice so
		// that each party reaches us over its own transport (RFC 5658).
		if inTr != tr {
			out.PrependHeader(recordRouteFor(user, inHP, inTr))
		}
		out.PrependHeader(recordRouteFor(user, hp, tr))
	}
	via := &siplib.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       strings.ToUpper(tr),
		Host:            hp.host,
		Port:            hp.port,
		Params:          siplib.NewParams(),
	}
	via.Params.Add("branch", branchPrefix+loopHash(req)+randHex(8))
	via.Params.Add("rport", "")
	out.PrependHeader(via)
	out.SetTransport(strings.ToUpper(tr))
	out.SetDestination(dest)
	out.Laddr = laddr
	return out
}

// forwardCopy is the copy of req sent to one target (§16.6 step 1): a new
// message with its own header list, Request-URI and Max-Forwards, sharing
// the other header objects and the body with req. Nothing changes those
// after parsing (the proxy adds and removes whole headers on its copies,
// and sipgo only reads them), so a deep clone per branch would only feed
// the garbage collector.
func forwardCopy(req *siplib.Request, ruri siplib.Uri) *siplib.Request {
	out := siplib.NewRequest(req.Method, ruri)
	out.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		if mf, ok := h.(*siplib.MaxForwardsHeader); ok {
			c := *mf
			out.AppendHeader(&c)
			continue
		}
		out.AppendHeader(h)
	}
	out.SetBody(req.Body())
	out.SetTransport(req.Transport())
	out.SetSource(req.Source())
	out.Laddr = req.Laddr
	return out
}

// withoutTopVia is res as relayed upstream (§16.7 step 3): a new message
// without the top Via, sharing every other header object and the body
// with res, which the client transaction only reads.
func withoutTopVia(res *siplib.Response) *siplib.Response {
	out := siplib.NewResponse(res.StatusCode, res.Reason)
	out.SipVersion = res.SipVersion
	skipped := false
	for _, h := range res.Headers() {
		if !skipped {
			if _, ok := h.(*siplib.ViaHeader); ok {
				skipped = true
				continue
			}
		}
		out.AppendHeader(h)
	}
	out.SetBody(res.Body())
	out.SetTransport(res.Transport())
	out.SetSource(res.Source())
	return out
}

func recordRouteFor(user string, hp hostPort, tr string) *siplib.RecordRouteHeader {
	rr := &siplib.RecordRouteHeader{Address: siplib.Uri{
		Scheme:    "sip",
		User:      user,
		Host:      hp.host,
		Port:      hp.port,
		UriParams: siplib.NewParams(),
	}}
	rr.Address.UriParams.Add("transport", tr)
	rr.Address.UriParams.Add("lr", "")
	return rr
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand does not fail.
	return hex.EncodeToString(b)
}

// branch is one forwarded copy of a request.
type branch struct {
	req   *siplib.Request
	tx    siplib.ClientTransaction
	final *siplib.Response
	// synthetic marks a final response we made up (timeout, transport
	// error) rather than received.
	synthetic bool
	// provisional is set once any 1xx arrived (CANCEL may then be sent).
	provisional bool
	cancelled   bool
}

type branchEvent struct {
	i   int
	res *siplib.Response
	err error
}

// forward relays a request statefully to its targets in parallel and
// sends the best response back (RFC 3261 §16.7): 2xx and 6xx at once,
// provisional responses as they come, otherwise the lowest class once
// every branch has finished.
func (s *Server) forward(req *siplib.Request, tx siplib.ServerTransaction, targets []target, initial bool) {
	isInvite := req.IsInvite()
	// No 100 Trying here: the INVITE server transaction sends one itself
	// when no provisional response has gone out 200 ms after the INVITE
	// came (RFC 3261 §17.2.1, sipgo's Timer_1xx), in time to stop the
	// caller's retransmissions (T1 = 500 ms). A callee that rings at once
	// saves the proxy a message per call.
	cancelled := make(chan struct{}, 1)
	if isInvite && !tx.OnCancel(func(*siplib.Request) {
		select {
		case cancelled <- struct{}{}:
		default:
		}
	}) {
		return
	}
	caller := s.flowOf(req, tx)
	recordRoute := initial && (isInvite || req.Method == siplib.SUBSCRIBE || req.Method == siplib.REFER)

	events := make(chan branchEvent, 4*len(targets)+4)
	branches := make([]*branch, 0, len(targets))
	for _, tg := range targets {
		out := s.prepareOut(req, tg, caller, recordRoute)
		b := &branch{req: out}
		branches = append(branches, b)
		// The context only bounds setting up a connection (a TCP dial
		// when the registered connection is gone).
		dialCtx, cancelDial := context.WithTimeout(context.Background(), 5*time.Second)
		ctx2, err := s.txl.Request(dialCtx, out)
		cancelDial()
		if err != nil {
			b.final = siplib.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
			b.synthetic = true
			s.log.Debug("forwarding failed", "to", tg.flow.Source, "err", err)
			continue
		}
		b.tx = ctx2
		if isInvite {
			// 2xx retransmissions from the callee arrive after the
			// transaction has delivered its final response; the caller
			// needs them until it ACKs (§13.3.1.4, §16.7 step 10).
			ctx2.OnRetransmission(func(r *siplib.Response) {
				if r.IsSuccess() {
					s.relayToFlow(r, caller)
				}
			})
		}
	}
	// With one branch (the usual call) the loop below reads the client
	// transaction itself; with several, a pump per branch fans them in.
	// A pump costs a goroutine and a hand-off per response.
	var respC <-chan *siplib.Response
	var doneC <-chan struct{}
	if len(branches) == 1 && branches[0].tx != nil {
		respC, doneC = branches[0].tx.Responses(), branches[0].tx.Done()
	} else {
		for i, b := range branches {
			if b.tx != nil {
				go s.pumpBranch(i, b.tx, events)
			}
		}
	}

	pending := 0
	for _, b := range branches {
		if b.final == nil {
			pending++
		}
	}
	answered := false // a 2xx or 6xx went to the caller
	callerCancelled := false
	var timerC <-chan time.Time
	handle := func(ev branchEvent) {
		b := branches[ev.i]
		if ev.err != nil {
			if b.final == nil {
				code, phrase := 408, "Request Timeout"
				if !errors.Is(ev.err, siplib.ErrTransactionTimeout) {
					code, phrase = 503, "Service Unavailable"
				}
				b.final = siplib.NewResponseFromRequest(req, code, phrase, nil)
				b.synthetic = true
				pending--
			}
			return
		}
		res := ev.res
		if res.IsProvisional() {
			if res.StatusCode == 100 {
				return
			}
			b.provisional = true
			if isInvite && timerC == nil {
				timerC = time.After(inviteTimerC)
			}
			if b.cancelled && b.final == nil {
				// A CANCEL waits for a provisional response (§9.1).
				s.sendCancel(b)
			}
			if !answered && !callerCancelled {
				s.relay(tx, req, res)
			}
			return
		}
		if b.final != nil {
			// A further 2xx after the transaction ended: relay, the
			// caller ACKs each dialog it gets.
			if res.IsSuccess() {
				s.relay(tx, req, res)
			}
			return
		}
		b.final = res
		pending--
		if res.IsSuccess() || (res.StatusCode >= 600 && !answered) {
			if !callerCancelled {
				s.relay(tx, req, res)
				answered = true
				s.countCall(req, strconv.Itoa(res.StatusCode/100)+"xx")
			}
			for _, o := range branches {
				if o.final == nil {
					s.cancelBranch(o)
				}
			}
		}
	}
	for pending > 0 {
		select {
		case <-cancelled:
			callerCancelled = true
			s.countCall(req, "cancelled")
			for _, b := range branches {
				if b.final == nil {
					s.cancelBranch(b)
				}
			}
		case <-timerC:
			// Ringing too long: give up on the branches still ringing.
			timerC = nil
			for _, b := range branches {
				if b.final == nil {
					s.cancelBranch(b)
				}
			}
		case ev := <-events:
			handle(ev)
		case res := <-respC:
			if !res.IsProvisional() {
				respC, doneC = nil, nil
			}
			handle(branchEvent{res: res})
		case <-doneC:
			// As in pumpBranch: a response may still be queued.
			ev := branchEvent{}
			select {
			case ev.res = <-respC:
			default:
			}
			respC, doneC = nil, nil
			if ev.res != nil {
				handle(ev)
				if !ev.res.IsProvisional() {
					break
				}
			}
			ev = branchEvent{err: branches[0].tx.Err()}
			if ev.err == nil {
				ev.err = errors.New("transaction ended without a final response")
			}
			handle(ev)
		}
	}
	if answered || callerCancelled {
		return
	}
	best := bestResponse(branches)
	if best == nil {
		s.reply(req, tx, 480, "Temporarily Unavailable", "no contact answered")
		s.countCall(req, "4xx")
		return
	}
	s.countCall(req, strconv.Itoa(best.final.StatusCode/100)+"xx")
	if best.synthetic {
		code, phrase, why := best.final.StatusCode, best.final.Reason, "contact did not answer"
		if code == 503 || code == 408 {
			// The callee is registered but none of its contacts could be
			// reached: tell the caller it is unavailable, not that we
			// are broken (§16.7 step 6 turns 503 into 500 anyway).
			code, phrase = 480, "Temporarily Unavailable"
			why = "registered contacts unreachable"
		}
		s.reply(req, tx, code, phrase, why)
		return
	}
	s.relay(tx, req, best.final)
}

// bestResponse picks the final response to send (RFC 3261 §16.7 step 6):
// the lowest class among 3xx–5xx (6xx is handled on arrival), preferring
// real responses over ones we synthesised.
func bestResponse(bs []*branch) *branch {
	var best *branch
	rank := func(b *branch) int {
		c := b.final.StatusCode
		r := c / 100 * 1000
		if b.synthetic {
			r += 500
		}
		// Within 4xx, prefer what says most about the callee: busy, then
		// declined/unavailable, over generic failures.
		switch c {
		case 486, 600:
			r -= 3
		case 480, 603:
			r -= 2
		}
		return r
	}
	for _, b := range bs {
		if b.final == nil || b.final.StatusCode < 300 {
			continue
		}
		if best == nil || rank(b) < rank(best) {
			best = b
		}
	}
	return best
}

// pumpBranch passes one client transaction's responses to the forwarding
// loop until the transaction ends.
//
// It does not terminate the transaction after a final response: an INVITE
// client transaction must live on to ACK retransmitted final responses
// (Timer D), and sipgo ends it on its own timers.
func (s *Server) pumpBranch(i int, ctx2 siplib.ClientTransaction, events chan<- branchEvent) {
	for {
		select {
		case res := <-ctx2.Responses():
			events <- branchEvent{i: i, res: res}
			if !res.IsProvisional() {
				return
			}
		case <-ctx2.Done():
			// Responses may still be queued behind Done.
			select {
			case res := <-ctx2.Responses():
				events <- branchEvent{i: i, res: res}
				if !res.IsProvisional() {
					return
				}
			default:
			}
			err := ctx2.Err()
			if err == nil {
				err = errors.New("transaction ended without a final response")
			}
			events <- branchEvent{i: i, err: err}
			return
		}
	}
}

// cancelBranch cancels a pending INVITE branch; per §9.1 the CANCEL goes
// only after a provisional response, so without one it is deferred.
func (s *Server) cancelBranch(b *branch) {
	if b.cancelled || b.tx == nil || !b.req.IsInvite() {
		return
	}
	b.cancelled = true
	if b.provisional {
		s.sendCancel(b)
	}
}

func (s *Server) sendCancel(b *branch) {
	c := siplib.NewRequest(siplib.CANCEL, *b.req.Recipient.Clone())
	c.AppendHeader(b.req.Via().Clone())
	for _, r := range b.req.GetHeaders("Route") {
		c.AppendHeader(siplib.HeaderClone(r))
	}
	mf := siplib.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(siplib.HeaderClone(b.req.From()))
	c.AppendHeader(siplib.HeaderClone(b.req.To()))
	c.AppendHeader(siplib.HeaderClone(b.req.CallID()))
	c.AppendHeader(&siplib.CSeqHeader{SeqNo: b.req.CSeq().SeqNo, MethodName: siplib.CANCEL})
	c.SetBody(nil)
	c.SetTransport(b.req.Transport())
	c.SetDestination(b.req.Destination())
	c.Laddr = b.req.Laddr
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	ctx2, err := s.txl.Request(ctx, c)
	if err != nil {
		cancel()
		s.log.Debug("CANCEL failed", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		// Drain the CANCEL's own transaction; its response means nothing
		// to the caller.
		defer s.wg.Done()
		defer cancel()
		defer ctx2.Terminate()
		for {
			select {
			case res := <-ctx2.Responses():
				if !res.IsProvisional() {
					return
				}
			case <-ctx2.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

// relay sends a downstream response back to the caller: our Via comes
// off (§16.7 step 3); nothing else, the body above all, is touched.
func (s *Server) relay(tx siplib.ServerTransaction, req *siplib.Request, res *siplib.Response) {
	out := withoutTopVia(res)
	out.SetDestination(responseDest(req))
	if err := tx.Respond(out); err != nil {
		s.log.Debug("relaying response failed", "status", res.StatusCode, "err", err)
	}
}

// responseDest is where responses to req go (RFC 3261 §18.2.2 with RFC
// 3581): the source address, and the source port when the client asked
// for rport or used a connection.
func responseDest(req *siplib.Request) string {
	src := req.MessageData.Source()
	host, port, err := net.SplitHostPort(src)
	if err != nil {
		return src
	}
	via := req.Via()
	if via == nil || !strings.EqualFold(req.Transport(), "udp") {
		return src
	}
	if _, ok := via.Params.Get("rport"); ok {
		return src
	}
	vp := via.Port
	if vp == 0 {
		vp = 5060
	}
	_ = port
	return net.JoinHostPort(host, strconv.Itoa(vp))
}

// relayStatelessResponse forwards a response that matches no transaction
// (2xx retransmissions) by its Via alone.
func (s *Server) relayStatelessResponse(res *siplib.Response) {
	via := res.Via()
	if via == nil {
		return
	}
	br, _ := via.Params.Get("branch")
	if !strings.HasPrefix(br, branchPrefix) {
		return
	}
	out := res.Clone()
	out.RemoveHeader("Via")
	next := out.Via()
	if next == nil {
		return
	}
	host, port := viaReplyAddr(next)
	dest := net.JoinHostPort(host, strconv.Itoa(port))
	out.SetDestination(dest)
	if err := s.tpl.WriteMsgTo(out, dest, next.Transport); err != nil {
		s.log.Debug("stateless relay failed", "err", err)
	}
}

// relayToFlow sends a downstream response, without our Via, straight over
// the caller's flow; for responses that no server transaction carries any
// more (2xx retransmissions).
func (s *Server) relayToFlow(res *siplib.Response, f Flow) {
	out := res.Clone()
	out.RemoveHeader("Via")
	var conn siplib.Connection
	switch f.Transport {
	case "udp":
		if pool := s.tpl.Pool("udp"); pool != nil {
			conn = pool.Get(f.Local)
		}
	default:
		if pool := s.tpl.Pool(f.Transport); pool != nil {
			conn = pool.Get(f.Source)
		}
	}
	if conn == nil {
		s.relayStatelessResponse(res)
		return
	}
	// Get took a reference on the connection; give it back.
	defer conn.TryClose() //nolint:errcheck // only drops our reference.
	out.SetDestination(f.Source)
	if err := conn.WriteMsg(out); err != nil {
		s.log.Debug("relaying a 2xx retransmission failed", "to", f.Source, "err", err)
	}
}

// viaReplyAddr is where a response goes back to for a Via (RFC 3261
// §18.2.2 with RFC 3581): the received address if the proxy before us
// recorded one, the rport it filled in, else the sent-by.
func viaReplyAddr(v *siplib.ViaHeader) (host string, port int) {
	host, port = v.Host, v.Port
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if r, ok := v.Params.Get("rport"); ok && r != "" {
		port, _ = strconv.Atoi(r)
	}
	if port == 0 {
		port = int(siplib.DefaultPort(v.Transport))
	}
	return host, port
}

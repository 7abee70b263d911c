package focus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// bridgeTTL is how long a bridged phone stays in the roster without a
// packet from it; its RTP (20 ms) refreshes the membership, so only a phone
// that stopped sending and never said BYE runs out.
const bridgeTTL = 10 * time.Second

// bridgeCall is one plain phone's INVITE dialog with the focus.
type bridgeCall struct {
	room, user string
	callID     string
	// phoneTag is the phone's From tag: a BYE must carry it (as From tag
	// from the phone), so knowing the Call-ID alone hangs up nobody.
	phoneTag string
}

// handleInvite answers a plain SIP phone calling the room: the focus puts
// it in the roster as a bridged participant, answers with a plain RTP
// endpoint (no ICE: the server has a public address, and the phone latches
// nothing) and mixes the room for it.
func (f *Focus) handleInvite(room string, req *sip.Request, tx sip.ServerTransaction, user string) {
	if user == "" {
		f.respond(req, tx, 403, "Forbidden", nil)
		return
	}
	callID := ""
	if req.CallID() != nil {
		callID = req.CallID().Value()
	}
	f.mu.Lock()
	existing := f.bridges[callID]
	f.mu.Unlock()
	if existing != nil {
		// A re-INVITE (session refresh, hold): keep the media as it is.
		f.answerAgain(room, req, tx, existing)
		return
	}
	if _, in := f.roster.Member(room, user); in {
		f.respond(req, tx, 486, "Already In Room", nil)
		return
	}
	offer := &sdp.SessionDescription{}
	if err := offer.UnmarshalString(string(req.Body())); err != nil {
		f.respond(req, tx, 400, "Bad SDP", nil)
		return
	}
	peer, pt, err := audioTarget(offer)
	if err != nil {
		f.respond(req, tx, 488, "Not Acceptable Here", nil)
		return
	}
	if _, _, err := f.roster.Join(room, JoinRequest{User: user, Kind: KindBridge, PIN: pinOf(req), TTL: bridgeTTL}, f.cfg.Now()); err != nil {
		switch {
		case isErr(err, ErrWrongPIN):
			f.respond(req, tx, 403, "Wrong Room PIN", nil)
		case isErr(err, ErrRoomFull):
			f.respond(req, tx, 486, "Room Full", nil)
		default:
			f.respond(req, tx, 400, "Bad Room", nil)
		}
		return
	}
	f.mu.Lock()
	h := f.hubs[room]
	if h == nil {
		h = newHub(f, room)
		f.hubs[room] = h
	}
	f.mu.Unlock()
	port, err := h.openPort(user, KindBridge, pt, peer, "")
	if err != nil {
		f.roster.Leave(room, user)
		f.respond(req, tx, 500, "No Media Port", nil)
		return
	}
	f.roster.SetForwarder(room, user, port.advertised) //nolint:errcheck // just joined.
	answer, err := f.answerSDP(port, pt)
	if err != nil {
		f.respond(req, tx, 500, "SDP", nil)
		return
	}
	f.mu.Lock()
	phoneTag, _ := req.From().Params.Get("tag")
	f.bridges[callID] = &bridgeCall{room: room, user: user, callID: callID, phoneTag: phoneTag}
	f.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", answer)
	res.AppendHeader(f.contact(room))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	if err := tx.Respond(res); err != nil {
		f.log.Debug("respond invite", "err", err)
	}
	f.log.Info("bridged", "room", room, "user", user, "media", port.advertised)
	f.wg.Add(1)
	go f.keepBridged(h, port, room, user)
	f.updateMedia(room)
	f.schedule(room)
}

func isErr(err, target error) bool {
	for e := err; e != nil; {
		if e == target {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// keepBridged refreshes a bridged phone's membership while its RTP flows.
func (f *Focus) keepBridged(h *hub, p *hubPort, room, user string) {
	defer f.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		if h.closed.Load() {
			return
		}
		h.mu.Lock()
		still := h.ports[user] == p
		h.mu.Unlock()
		if !still {
			return
		}
		p.mu.Lock()
		last := p.lastRx
		p.mu.Unlock()
		if !last.IsZero() && time.Since(last) < bridgeTTL {
			f.roster.Join(room, JoinRequest{User: user, Kind: KindBridge, TTL: bridgeTTL, PIN: f.roomPIN(room)}, f.cfg.Now()) //nolint:errcheck // refresh only.
		}
	}
}

func (f *Focus) roomPIN(room string) string {
	f.roster.mu.Lock()
	defer f.roster.mu.Unlock()
	if rm := f.roster.rooms[room]; rm != nil {
		return rm.pin
	}
	return ""
}

func (f *Focus) answerAgain(room string, req *sip.Request, tx sip.ServerTransaction, bc *bridgeCall) {
	f.mu.Lock()
	h := f.hubs[room]
	f.mu.Unlock()
	var port *hubPort
	if h != nil {
		h.mu.Lock()
		port = h.ports[bc.user]
		h.mu.Unlock()
	}
	if port == nil {
		f.respond(req, tx, 481, "Call Does Not Exist", nil)
		return
	}
	answer, err := f.answerSDP(port, port.pt)
	if err != nil {
		f.respond(req, tx, 500, "SDP", nil)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", answer)
	res.AppendHeader(f.contact(room))
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	tx.Respond(res) //nolint:errcheck // nothing to do on failure.
}

func (f *Focus) handleBye(req *sip.Request, tx sip.ServerTransaction) {
	callID := ""
	if req.CallID() != nil {
		callID = req.CallID().Value()
	}
	fromTag := ""
	if from := req.From(); from != nil {
		fromTag, _ = from.Params.Get("tag")
	}
	f.mu.Lock()
	bc := f.bridges[callID]
	if bc != nil && bc.phoneTag != fromTag {
		bc = nil
	}
	if bc != nil {
		delete(f.bridges, callID)
	}
	f.mu.Unlock()
	if bc == nil {
		f.respond(req, tx, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	f.respond(req, tx, 200, "OK", nil)
	f.log.Info("left", "room", bc.room, "user", bc.user, "why", "bye")
	f.roster.Leave(bc.room, bc.user)
	f.closeBridgePort(bc.room, bc.user)
	f.updateMedia(bc.room)
	f.schedule(bc.room)
}

// dropBridgeOf forgets the bridge dialog of a user that left the room.
func (f *Focus) dropBridgeOf(room, user string) {
	f.mu.Lock()
	for id, bc := range f.bridges {
		if bc.room == room && bc.user == user {
			delete(f.bridges, id)
		}
	}
	f.mu.Unlock()
	f.closeBridgePort(room, user)
}

func (f *Focus) closeBridgePort(room, user string) {
	f.mu.Lock()
	h := f.hubs[room]
	f.mu.Unlock()
	if h != nil {
		h.closePort(user)
	}
}

// audioTarget picks the first audio stream of an offer: where to send
// (c=/m=) and which G.711 payload type to use, PCMU preferred.
func audioTarget(sd *sdp.SessionDescription) (net.Addr, uint8, error) {
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		if md.MediaName.Port.Value < 0 || md.MediaName.Port.Value > 65535 {
			return nil, 0, fmt.Errorf("m= port %d", md.MediaName.Port.Value)
		}
		conn := sd.ConnectionInformation
		if md.ConnectionInformation != nil {
			conn = md.ConnectionInformation
		}
		if conn == nil || conn.Address == nil {
			return nil, 0, fmt.Errorf("no c= line")
		}
		ip := net.ParseIP(conn.Address.Address)
		if ip == nil {
			return nil, 0, fmt.Errorf("c= address %q", conn.Address.Address)
		}
		pt := -1
		for _, f := range md.MediaName.Formats {
			if f == "0" {
				pt = 0
				break
			}
			if f == "8" && pt < 0 {
				pt = 8
			}
		}
		if pt < 0 {
			return nil, 0, fmt.Errorf("no G.711 in offer")
		}
		return &net.UDPAddr{IP: ip, Port: md.MediaName.Port.Value}, uint8(pt), nil
	}
	return nil, 0, fmt.Errorf("no audio stream")
}

// answerSDP builds the focus's plain RTP answer for a bridged phone.
func (f *Focus) answerSDP(p *hubPort, pt uint8) ([]byte, error) {
	host, _, _ := net.SplitHostPort(p.advertised)
	ipVer := "IP4"
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		ipVer = "IP6"
	}
	sid := uint64(time.Now().UnixNano())
	sd := &sdp.SessionDescription{
		Version: 0,
		Origin: sdp.Origin{
			Username: "punchline-focus", SessionID: sid, SessionVersion: sid,
			NetworkType: "IN", AddressType: ipVer, UnicastAddress: host,
		},
		SessionName: "punchline room",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN", AddressType: ipVer, Address: &sdp.Address{Address: host},
		},
		TimeDescriptions: []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
	name := "PCMU/8000"
	if pt == 8 {
		name = "PCMA/8000"
	}
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media:   "audio",
			Port:    sdp.RangedPort{Value: portOf(p.advertised)},
			Protos:  []string{"RTP", "AVP"},
			Formats: []string{strconv.Itoa(int(pt))},
		},
	}
	md.WithValueAttribute("rtpmap", strconv.Itoa(int(pt))+" "+name)
	md.WithValueAttribute("ptime", "20")
	md.WithPropertyAttribute("sendrecv")
	sd.WithMedia(md)
	return sd.Marshal()
}

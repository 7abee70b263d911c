package ice

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Direction is an SDP media direction attribute (RFC 3264 §5.1). Hold is
// signalled by sendonly (the holding side) or inactive (RFC 3264 §8.4).
type Direction string

// Directions.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Answer returns the direction an answer takes to an offer with d
// (RFC 3264 §6.1): sendonly is answered recvonly and the reverse.
func (d Direction) Answer() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

// Sends reports whether a side with this direction sends media.
func (d Direction) Sends() bool { return d == "" || d == SendRecv || d == SendOnly }

// Receives reports whether a side with this direction receives media.
func (d Direction) Receives() bool { return d == "" || d == SendRecv || d == RecvOnly }

func directionOf(sends, receives bool) Direction {
	switch {
	case sends && receives:
		return SendRecv
	case sends:
		return SendOnly
	case receives:
		return RecvOnly
	}
	return Inactive
}

func parseDirection(key string) (Direction, bool) {
	switch Direction(key) {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		return Direction(key), true
	}
	return "", false
}

// MediaLine is an m-line we do not use (video, a second audio stream).
// Parse keeps them so that an answer can reject each one with port 0, as
// RFC 3264 §6 requires the answer to have as many m-lines as the offer.
type MediaLine struct {
	// Index is the m-line's position in the body, from 0.
	Index   int
	Media   string
	Proto   string
	Formats []string
}

// Description is the audio stream of an SDP body with its ICE attributes.
// Parse fills it from a remote body; Marshal writes it (pion/sdp does the
// encoding). The zero value is not useful: start from NewAudio or Parse.
type Description struct {
	// Origin (o=). SessionVersion must grow with every changed offer in a
	// dialog (re-INVITE), RFC 3264 §8.
	Username                  string
	SessionID, SessionVersion uint64
	// SessionName is s=; "-" when empty.
	SessionName string

	// Address and Port are c= and the audio m= port: the default
	// candidate, or the only address of a peer without ICE. Port 0 means
	// the stream is rejected.
	Address string
	Port    int
	// Proto is the m= transport, "RTP/AVP" when empty.
	Proto string
	// Codecs are the m= payload formats in preference order, with
	// telephone-event included.
	Codecs []Codec
	// TelephoneEvent is the payload type of telephone-event/8000 (RFC
	// 4733), 0 when absent.
	TelephoneEvent uint8
	// PTime is a=ptime in milliseconds, 0 when absent.
	PTime int
	// Direction is the media direction; "" reads as sendrecv.
	Direction Direction
	// Crypto are the a=crypto lines (RFC 4568 SDES keys for SRTP) of the
	// audio stream, in the order given. An offer lists one per suite its
	// sender can do; an answer carries the one line it accepted. RTP/SAVP
	// needs them; on RTP/AVP they are best-effort SRTP (the peer may
	// ignore them and answer plain RTP).
	Crypto []Crypto
	// RTCPMux is a=rtcp-mux (RFC 5761).
	RTCPMux bool
	// RTCPPort and RTCPAddress are a=rtcp (RFC 3605): where a peer without
	// rtcp-mux wants RTCP. Zero and empty when absent (then RTCP goes to
	// Port+1 at Address, RFC 3550 §11). RTCPAddress is empty when a=rtcp
	// names only a port.
	RTCPPort    int
	RTCPAddress string

	// Ufrag and Pwd are a=ice-ufrag and a=ice-pwd; both empty means the
	// peer does not do ICE.
	Ufrag, Pwd string
	// Lite is a=ice-lite.
	Lite bool
	// ICEOptions are the a=ice-options tokens ("trickle", "ice2").
	ICEOptions []string
	// Candidates are the a=candidate values of the audio stream.
	Candidates []string
	// EndOfCandidates is a=end-of-candidates.
	EndOfCandidates bool

	// AudioIndex is the audio m-line's position; Other holds the rest.
	AudioIndex int
	Other      []MediaLine
}

// HasICE reports whether the description carries ICE credentials. A peer
// without them is a plain SIP phone: send RTP to Address:Port and latch
// onto where its RTP really comes from (symmetric RTP).
func (d *Description) HasICE() bool { return d.Ufrag != "" && d.Pwd != "" }

// Restarts reports whether d, a new offer in the same dialog, restarts
// ICE relative to prev, the peer's previous description: new ice-ufrag
// or ice-pwd (RFC 8445 §9, RFC 8839). A re-INVITE that only updates the
// default candidate after ICE completed (pjsip and linphone send one)
// keeps the credentials and is not a restart: the session carries on.
func (d *Description) Restarts(prev *Description) bool {
	if prev == nil || !d.HasICE() || !prev.HasICE() {
		return false
	}
	return d.Ufrag != prev.Ufrag || d.Pwd != prev.Pwd
}

// OnHold reports whether the sender of this description puts the stream
// on hold: sendonly, inactive, or the old c=0.0.0.0 form (RFC 2543).
func (d *Description) OnHold() bool {
	return d.Direction == SendOnly || d.Direction == Inactive || d.Address == "0.0.0.0"
}

// DefaultMatches reports whether c=/m= equal one of the candidates. RFC
// 8839 treats a mismatch as a sign that something on the path (a SIP ALG,
// an SDP-rewriting proxy) changed the body, and ICE is then not used. The
// trickle placeholder (0.0.0.0 or :: with port 9, RFC 8840) counts as a
// match.
func (d *Description) DefaultMatches() bool {
	if (d.Address == "0.0.0.0" || d.Address == "::") && d.Port == 9 {
		return true
	}
	want, err := netip.ParseAddr(d.Address)
	if err != nil {
		return false
	}
	for _, raw := range d.Candidates {
		c, err := ParseCandidate(raw)
		if err != nil || c.Component != 1 {
			continue
		}
		ap, ok := c.AddrPort()
		if ok && ap.Addr() == want.Unmap() && int(ap.Port()) == d.Port {
			return true
		}
	}
	return false
}

// Codec returns the offered codec with payload type pt.
func (d *Description) Codec(pt uint8) (Codec, bool) {
	for _, c := range d.Codecs {
		if c.PT == pt {
			return c, true
		}
	}
	return Codec{}, false
}

// NewAudio returns our standard audio description: PCMU (0), PCMA (8) and
// telephone-event (101, events 0-16), 20 ms packets, sendrecv, rtcp-mux,
// with a fresh random session id. Set Address and Port, or SetICE.
func NewAudio() *Description {
	id := randomSessionID()
	return &Description{
		Username:       "punchline",
		SessionID:      id,
		SessionVersion: id,
		SessionName:    "punchline",
		Proto:          "RTP/AVP",
		Codecs: []Codec{
			PCMU,
			PCMA,
			{PT: TelephoneEventPT, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"},
		},
		TelephoneEvent: TelephoneEventPT,
		PTime:          20,
		Direction:      SendRecv,
		RTCPMux:        true,
	}
}

func randomSessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	// Keep it within 62 bits: some parsers read it as a signed integer.
	return binary.BigEndian.Uint64(b[:]) >> 2
}

// SetICE sets the ICE attributes from a gathered Local and puts its
// default candidate (DefaultCandidate) into c= and m=. It also sets
// a=rtcp-mux, a=end-of-candidates (we never trickle) and a=ice-lite for a
// lite session.
func (d *Description) SetICE(l Local) error {
	def, ok := DefaultCandidate(l.Candidates)
	if !ok {
		return fmt.Errorf("%w: no UDP candidate with an IP address for c=/m=", ErrIncomplete)
	}
	d.Address, d.Port = def.Address, def.Port
	d.Ufrag, d.Pwd, d.Lite = l.Ufrag, l.Pwd, l.Lite
	d.Candidates = slices.Clone(l.Candidates)
	d.EndOfCandidates = true
	d.RTCPMux = true
	return nil
}

// ClearICE removes the ICE attributes (for an answer to a peer without
// ICE, RFC 8839: an answerer must not use ICE if the offer lacks it).
func (d *Description) ClearICE() {
	d.Ufrag, d.Pwd, d.Lite = "", "", false
	d.ICEOptions, d.Candidates, d.EndOfCandidates = nil, nil, false
}

// NewAnswer derives the answer to offer from local, our own description
// (NewAudio plus SetICE, or an explicit address for symmetric RTP): the
// codec list narrows to the negotiated codec and, if offered,
// telephone-event under the offer's payload type; the direction is the
// answer to the offer's; other m-lines are rejected in place; ICE is
// dropped when the offer has none; rtcp-mux is kept only if offered
// (RFC 5761); a=rtcp is dropped, as our RTCP shares the RTP port.
//
// SRTP (RFC 4568): local.Crypto lists our keys, one line per suite we are
// willing to run; nil means we answer plain RTP only. The answer carries
// the line SelectCrypto picks (the first usable offered suite we have,
// under the offer's tag) and no other; a best-effort offer (RTP/AVP with
// a=crypto) is answered with it too, or plain when we have no keys or no
// common suite.
//
// It fails with ErrNoCommonCodec when the offer has neither PCMU nor
// PCMA, with ErrUnsupportedTransport when it needs SRTP we do not do
// (no local keys) or DTLS, and with ErrNoCommonCrypto for an RTP/SAVP
// offer without a suite we share (respond 488 to each).
func NewAnswer(offer, local *Description) (*Description, error) {
	sdes := SDESProto(offer.Proto)
	if !plainRTP(offer.Proto) && !(sdes && len(local.Crypto) > 0) {
		return nil, fmt.Errorf("%w: m=audio ... %s", ErrUnsupportedTransport, offer.Proto)
	}
	var chosen []Crypto
	if len(local.Crypto) > 0 {
		if c, _, ok := SelectCrypto(offer.Crypto, local.Crypto); ok {
			chosen = []Crypto{c}
		} else if sdes {
			return nil, fmt.Errorf("%w: offered %s", ErrNoCommonCrypto, suiteList(offer.Crypto))
		}
	}
	codec, err := Negotiate(offer.Codecs)
	if err != nil {
		return nil, err
	}
	ans := local.clone()
	ans.Codecs = []Codec{codec}
	ans.TelephoneEvent = 0
	if offer.TelephoneEvent != 0 {
		if te, ok := offer.Codec(offer.TelephoneEvent); ok {
			ans.Codecs = append(ans.Codecs, te)
			ans.TelephoneEvent = te.PT
		}
	}
	ans.Direction = directionOf(
		offer.Direction.Answer().Sends() && local.Direction.Sends(),
		offer.Direction.Answer().Receives() && local.Direction.Receives())
	ans.Proto = offer.Proto
	ans.Crypto = chosen
	ans.RTCPPort, ans.RTCPAddress = 0, ""
	ans.AudioIndex = offer.AudioIndex
	ans.Other = slices.Clone(offer.Other)
	ans.RTCPMux = offer.RTCPMux && local.RTCPMux
	if !offer.HasICE() {
		ans.ClearICE()
	}
	if offer.PTime != 0 {
		ans.PTime = offer.PTime
	}
	return ans, nil
}

// plainRTP reports whether an m= profile is unencrypted RTP: RTP/AVP, or
// RTP/AVPF (RFC 4585 feedback, compatible with AVP).
func plainRTP(proto string) bool {
	switch strings.ToUpper(proto) {
	case "RTP/AVP", "RTP/AVPF", "":
		return true
	}
	return false
}

// suiteList names the suites of lines, for an error message.
func suiteList(lines []Crypto) string {
	if len(lines) == 0 {
		return "no a=crypto line we can read"
	}
	names := make([]string, 0, len(lines))
	for _, c := range lines {
		names = append(names, c.Suite)
	}
	return strings.Join(names, ", ")
}

func (d *Description) clone() *Description {
	c := *d
	c.Codecs = slices.Clone(d.Codecs)
	c.ICEOptions = slices.Clone(d.ICEOptions)
	c.Candidates = slices.Clone(d.Candidates)
	c.Other = slices.Clone(d.Other)
	c.Crypto = slices.Clone(d.Crypto)
	return &c
}

// maxSDPLen bounds what Parse accepts; SIP bodies over UDP are far smaller.
const maxSDPLen = 64 << 10

// Parse reads the audio stream of an SDP body. The first m=audio line is
// the audio stream; every other m-line lands in Other. Media-level c=,
// a=ice-ufrag, a=ice-pwd and direction override session-level ones.
func Parse(body []byte) (*Description, error) {
	if len(body) > maxSDPLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadSDP, len(body))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrBadSDP)
	}
	var s sdp.SessionDescription
	if err := s.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	d := &Description{
		Username:       s.Origin.Username,
		SessionID:      s.Origin.SessionID,
		SessionVersion: s.Origin.SessionVersion,
		SessionName:    string(s.SessionName),
		AudioIndex:     -1,
	}
	var audio *sdp.MediaDescription
	for i, m := range s.MediaDescriptions {
		if audio == nil && strings.EqualFold(m.MediaName.Media, "audio") {
			audio, d.AudioIndex = m, i
			continue
		}
		d.Other = append(d.Other, MediaLine{
			Index:   i,
			Media:   m.MediaName.Media,
			Proto:   strings.Join(m.MediaName.Protos, "/"),
			Formats: slices.Clone(m.MediaName.Formats),
		})
	}
	if audio == nil {
		return nil, ErrNoAudio
	}
	d.Port = audio.MediaName.Port.Value
	d.Proto = strings.Join(audio.MediaName.Protos, "/")
	switch {
	case audio.ConnectionInformation != nil && audio.ConnectionInformation.Address != nil:
		d.Address = audio.ConnectionInformation.Address.Address
	case s.ConnectionInformation != nil && s.ConnectionInformation.Address != nil:
		d.Address = s.ConnectionInformation.Address.Address
	default:
		// RFC 4566 §5.7: c= must be present at session level or in
		// every m-line.
		return nil, fmt.Errorf("%w: no c= line for the audio stream", ErrBadSDP)
	}
	if err := d.readSessionAttrs(s.Attributes); err != nil {
		return nil, err
	}
	if err := d.readMediaAttrs(audio); err != nil {
		return nil, err
	}
	if d.Direction == "" {
		d.Direction = SendRecv
	}
	if !iceToken(d.Ufrag) || !iceToken(d.Pwd) {
		return nil, fmt.Errorf("%w: ice-ufrag or ice-pwd holds spaces or control characters", ErrBadSDP)
	}
	return d, nil
}

func (d *Description) readSessionAttrs(attrs []sdp.Attribute) error {
	for _, a := range attrs {
		switch a.Key {
		case "ice-ufrag":
			d.Ufrag = strings.TrimSpace(a.Value)
		case "ice-pwd":
			d.Pwd = strings.TrimSpace(a.Value)
		case "ice-lite":
			d.Lite = true
		case "ice-options":
			d.ICEOptions = append(d.ICEOptions, strings.Fields(a.Value)...)
		case "end-of-candidates":
			d.EndOfCandidates = true
		default:
			if dir, ok := parseDirection(a.Key); ok {
				d.Direction = dir
			}
		}
	}
	return nil
}

func (d *Description) readMediaAttrs(m *sdp.MediaDescription) error {
	rtpmaps := map[uint8]Codec{}
	fmtps := map[uint8]string{}
	for _, a := range m.Attributes {
		switch a.Key {
		case "ice-ufrag":
			d.Ufrag = strings.TrimSpace(a.Value)
		case "ice-pwd":
			d.Pwd = strings.TrimSpace(a.Value)
		case "ice-lite":
			d.Lite = true
		case "ice-options":
			d.ICEOptions = append(d.ICEOptions, strings.Fields(a.Value)...)
		case "candidate":
			// A value with a stray CR inside cannot be a candidate.
			if v := strings.TrimSpace(a.Value); noControl(v) {
				d.Candidates = append(d.Candidates, v)
			}
		case "end-of-candidates":
			d.EndOfCandidates = true
		case "rtcp-mux":
			d.RTCPMux = true
		case "crypto":
			// A line we cannot read is left out, as RFC 4568 §5.1.2
			// lets an answerer skip lines it does not understand.
			if c, err := ParseCrypto(a.Value); err == nil {
				d.Crypto = append(d.Crypto, c)
			}
		case "rtcp":
			d.readRTCP(a.Value)
		case "ptime":
			if v, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && v > 0 && v <= 1000 {
				d.PTime = v
			}
		case "rtpmap":
			if c, ok := parseRtpmap(a.Value); ok {
				rtpmaps[c.PT] = c
			}
		case "fmtp":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if n, err := strconv.ParseUint(pt, 10, 8); ok && err == nil && noControl(rest) {
				fmtps[uint8(n)] = strings.TrimSpace(rest)
			}
		default:
			if dir, ok := parseDirection(a.Key); ok {
				d.Direction = dir
			}
		}
	}
	for _, f := range m.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > 127 {
			// Not an RTP payload type; an RTP/AVP m-line must not have
			// one, but skipping it loses nothing we could use.
			continue
		}
		pt := uint8(n)
		c, ok := rtpmaps[pt]
		if !ok {
			c, ok = staticCodec(pt)
		}
		if !ok {
			c = Codec{PT: pt}
		}
		c.Fmtp = fmtps[pt]
		d.Codecs = append(d.Codecs, c)
		if strings.EqualFold(c.Name, "telephone-event") && c.Rate == 8000 && d.TelephoneEvent == 0 {
			d.TelephoneEvent = pt
		}
	}
	return nil
}

// readRTCP reads an a=rtcp value: "port" or "port IN IP4 address".
func (d *Description) readRTCP(v string) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return
	}
	port, err := strconv.Atoi(f[0])
	if err != nil || port <= 0 || port > 65535 {
		return
	}
	d.RTCPPort = port
	if len(f) == 4 && f[1] == "IN" && iceToken(f[3]) {
		d.RTCPAddress = f[3]
	}
}

// iceToken reports whether s can be written back as an attribute value:
// RFC 8839 allows only ice-chars (letters, digits, "+", "/"), but peers
// are lenient, so only whitespace and control bytes are refused.
func iceToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// noControl reports whether s is free of control bytes (a CR or LF inside
// a value would break the line structure when written back).
func noControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// parseRtpmap reads "PT name/rate[/channels]".
func parseRtpmap(v string) (Codec, bool) {
	pt, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return Codec{}, false
	}
	n, err := strconv.ParseUint(pt, 10, 8)
	if err != nil || n > 127 {
		return Codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || !iceToken(parts[0]) || parts[0] == "" {
		return Codec{}, false
	}
	rate, err := strconv.Atoi(parts[1])
	if err != nil || rate <= 0 {
		return Codec{}, false
	}
	c := Codec{PT: uint8(n), Name: parts[0], Rate: rate}
	if len(parts) > 2 {
		if ch, err := strconv.Atoi(parts[2]); err == nil && ch > 0 && ch < 256 {
			c.Channels = ch
		}
	}
	return c, true
}

// checkValues refuses values that would not survive as SDP text.
func (d *Description) checkValues() error {
	if !iceToken(d.RTCPAddress) {
		return fmt.Errorf("%w: a=rtcp address %q", ErrBadSDP, d.RTCPAddress)
	}
	vals := []string{d.Username, d.SessionName, d.Proto, d.Ufrag, d.Pwd}
	vals = append(vals, d.ICEOptions...)
	vals = append(vals, d.Candidates...)
	for _, c := range d.Codecs {
		vals = append(vals, c.Name, c.Fmtp)
	}
	for _, c := range d.Crypto {
		vals = append(vals, c.Suite)
		vals = append(vals, c.Params...)
		if !iceToken(c.Suite) || c.Tag < 0 || c.Tag > maxTag || len(c.Key) == 0 {
			return fmt.Errorf("%w: a=crypto tag %d suite %q", ErrBadSDP, c.Tag, c.Suite)
		}
		for _, p := range c.Params {
			if !iceToken(p) || p == "" {
				return fmt.Errorf("%w: a=crypto session parameter %q", ErrBadSDP, p)
			}
		}
	}
	for _, o := range d.Other {
		vals = append(vals, o.Media, o.Proto)
		vals = append(vals, o.Formats...)
	}
	if !iceToken(d.Address) || !iceToken(d.Username) || !iceToken(d.Proto) {
		return fmt.Errorf("%w: address, username or proto holds spaces or control characters", ErrBadSDP)
	}
	for _, v := range vals {
		if !noControl(v) {
			return fmt.Errorf("%w: value %q holds control characters", ErrBadSDP, v)
		}
	}
	return nil
}

// Marshal writes the description as an SDP body with CRLF line ends.
func (d *Description) Marshal() ([]byte, error) {
	if d.Address == "" {
		return nil, fmt.Errorf("%w: no address", ErrIncomplete)
	}
	if d.Port < 0 || d.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrIncomplete, d.Port)
	}
	if len(d.Codecs) == 0 {
		return nil, fmt.Errorf("%w: no codec", ErrIncomplete)
	}
	if err := d.checkValues(); err != nil {
		return nil, err
	}
	addrType := "IP4"
	if ip, err := netip.ParseAddr(d.Address); err == nil && ip.Is6() && !ip.Is4In6() {
		addrType = "IP6"
	}
	conn := &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: d.Address}}
	user, name := d.Username, d.SessionName
	if user == "" {
		user = "-"
	}
	if name == "" {
		name = "-"
	}
	s := &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: user, SessionID: d.SessionID, SessionVersion: d.SessionVersion,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: d.Address,
		},
		SessionName:           sdp.SessionName(name),
		ConnectionInformation: conn,
		TimeDescriptions:      []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
	// ice-lite is session-level only (RFC 8839); ice-options may be
	// either, and session level is where most peers look.
	if d.HasICE() && d.Lite {
		s.Attributes = append(s.Attributes, sdp.NewPropertyAttribute("ice-lite"))
	}
	if d.HasICE() && len(d.ICEOptions) > 0 {
		s.Attributes = append(s.Attributes, sdp.NewAttribute("ice-options", strings.Join(d.ICEOptions, " ")))
	}

	proto := d.Proto
	if proto == "" {
		proto = "RTP/AVP"
	}
	audio := &sdp.MediaDescription{
		MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: d.Port}, Protos: strings.Split(proto, "/")},
	}
	for _, c := range d.Codecs {
		audio.MediaName.Formats = append(audio.MediaName.Formats, strconv.Itoa(int(c.PT)))
	}
	for _, c := range d.Codecs {
		if c.Name == "" {
			continue
		}
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("rtpmap", c.rtpmap()))
		if c.Fmtp != "" {
			audio.Attributes = append(audio.Attributes, sdp.NewAttribute("fmtp", fmt.Sprintf("%d %s", c.PT, c.Fmtp)))
		}
	}
	if d.PTime > 0 {
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("ptime", strconv.Itoa(d.PTime)))
	}
	dir := d.Direction
	if dir == "" {
		dir = SendRecv
	}
	audio.Attributes = append(audio.Attributes, sdp.NewPropertyAttribute(string(dir)))
	if d.RTCPPort > 0 && d.RTCPPort <= 65535 {
		v := strconv.Itoa(d.RTCPPort)
		if d.RTCPAddress != "" {
			t := "IP4"
			if ip, err := netip.ParseAddr(d.RTCPAddress); err == nil && ip.Is6() && !ip.Is4In6() {
				t = "IP6"
			}
			v += " IN " + t + " " + d.RTCPAddress
		}
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("rtcp", v))
	}
	if d.RTCPMux {
		audio.Attributes = append(audio.Attributes, sdp.NewPropertyAttribute("rtcp-mux"))
	}
	for _, c := range d.Crypto {
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("crypto", c.Value()))
	}
	if d.HasICE() {
		audio.Attributes = append(audio.Attributes,
			sdp.NewAttribute("ice-ufrag", d.Ufrag),
			sdp.NewAttribute("ice-pwd", d.Pwd))
		for _, c := range d.Candidates {
			audio.Attributes = append(audio.Attributes, sdp.NewAttribute("candidate", strings.TrimPrefix(c, "candidate:")))
		}
		if d.EndOfCandidates {
			audio.Attributes = append(audio.Attributes, sdp.NewPropertyAttribute("end-of-candidates"))
		}
	}

	// Place the audio stream and the rejected others at their indexes.
	total := 1 + len(d.Other)
	media := make([]*sdp.MediaDescription, total)
	ai := d.AudioIndex
	if ai < 0 || ai >= total {
		ai = 0
	}
	media[ai] = audio
	for _, o := range d.Other {
		idx := o.Index
		if idx < 0 || idx >= total || media[idx] != nil {
			idx = slices.Index(media, nil)
		}
		formats := o.Formats
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		media[idx] = &sdp.MediaDescription{
			MediaName: sdp.MediaName{Media: o.Media, Port: sdp.RangedPort{Value: 0}, Protos: strings.Split(o.Proto, "/"), Formats: formats},
		}
	}
	s.MediaDescriptions = media
	return s.Marshal()
}

package focus

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"
)

// SSRCFor is the RTP SSRC a participant uses for its own stream in a room:
// derived from the user name so that every participant can map a stream it
// receives through a forwarder (a supernode or the server) to the user who
// spoke, without any extra signaling. Collisions between two names of one
// room are possible in theory (2^-32 per pair) and would merge two
// streams' statistics, not break audio.
func SSRCFor(user string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(user))
	v := h.Sum32()
	if v == 0 {
		v = 1
	}
	return v
}

// MediaKeepalive is what a participant sends to its server media port once
// a second: a zero byte (RTP version 0, so never mistaken for RTP) followed
// by the member's token. It opens and holds the participant's NAT binding
// towards the port and tells the port where the participant is. The port
// latches only onto an address that sent the right token, and takes RTP
// only from the latched address, so someone who learns the port from the
// roster cannot take the participant's place.
func MediaKeepalive(token string) []byte {
	return append([]byte{0}, token...)
}

// HeaderMediaToken carries a member's token in the 200 OK to its SUBSCRIBE.
const HeaderMediaToken = "X-Punchline-Media-Token"

// hubPort is one UDP port of the server that one participant sends to and
// receives from.
type hubPort struct {
	user string
	kind string
	// pt is the payload type a bridged phone negotiated (0 or 8).
	pt uint8
	// token is the member's secret for a mesh port (see MediaKeepalive).
	token string
	pc    net.PacketConn
	// advertised is host:port as written into the roster or SDP.
	advertised string

	// mu guards peer and lastRx.
	mu sync.Mutex
	// peer is where the participant's packets come from (latched), or for
	// a bridged phone the c=/m= address of its SDP until its first packet.
	peer   net.Addr
	lastRx time.Time
}

func (p *hubPort) latched() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peer
}

// admit decides whether a packet on the port comes from its participant,
// latching onto the source as it goes. A bridged phone's port latches onto
// the source of its RTP (symmetric RTP: the phone has no token). A mesh
// port latches onto whoever sends the member's keepalive token and then
// accepts RTP only from there.
func (p *hubPort) admit(b []byte, from net.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kind == KindBridge {
		if len(b) >= 12 && b[0]>>6 == 2 {
			p.peer = from
			p.lastRx = time.Now()
			return true
		}
		return false
	}
	if len(b) > 1 && b[0] == 0 {
		if subtle.ConstantTimeCompare(b[1:], []byte(p.token)) == 1 {
			p.peer = from
			p.lastRx = time.Now()
			return true
		}
		return false
	}
	if p.peer != nil && p.peer.String() == from.String() {
		p.lastRx = time.Now()
		return true
	}
	return false
}

// hub is a room's server-side media: the forwarder ports of mesh
// participants and the bridge ports of plain phones. It exists only while
// the room needs it.
type hub struct {
	f    *Focus
	room string
	ctr  *roomCounter

	// mu guards ports, plan and mix.
	mu    sync.Mutex
	ports map[string]*hubPort
	plan  Plan
	// mix holds, per bridged phone, the frames waiting to be mixed for it
	// from each mesh participant.
	mix map[string]*mixState

	wg     sync.WaitGroup
	closed atomic.Bool
}

// mixState is a bridged phone's mixer input: per source user a short queue
// of decoded 20 ms frames (a minimal jitter buffer: the server bridge is
// the fallback path, so it trades delay for simplicity and holds at most
// maxQueued frames per source).
type mixState struct {
	frames map[string][][]int16
}

const (
	frameSamples = 160 // 20 ms at 8 kHz
	maxQueued    = 6   // 120 ms
)

func newHub(f *Focus, room string) *hub {
	return &hub{f: f, room: room, ctr: f.met.room(room), ports: map[string]*hubPort{}, mix: map[string]*mixState{}}
}

// openPort opens a UDP port for user and starts its reader.
func (h *hub) openPort(user, kind string, pt uint8, peer net.Addr, token string) (*hubPort, error) {
	pc, err := h.f.cfg.ListenPacket("udp", net.JoinHostPort(h.f.cfg.MediaIP, "0"))
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	p := &hubPort{user: user, kind: kind, pt: pt, token: token, pc: pc, peer: peer, advertised: net.JoinHostPort(h.f.cfg.AdvertiseIP, port)}
	h.mu.Lock()
	if old := h.ports[user]; old != nil {
		old.pc.Close()
	}
	h.ports[user] = p
	if kind == KindBridge {
		h.mix[user] = &mixState{frames: map[string][][]int16{}}
	}
	h.mu.Unlock()
	h.wg.Add(1)
	go h.readLoop(p)
	if kind == KindBridge {
		h.wg.Add(1)
		go h.mixLoop(p)
	}
	return p, nil
}

func (h *hub) closePort(user string) {
	h.mu.Lock()
	p := h.ports[user]
	delete(h.ports, user)
	delete(h.mix, user)
	for _, m := range h.mix {
		delete(m.frames, user)
	}
	h.mu.Unlock()
	if p != nil {
		p.pc.Close()
	}
}

func (h *hub) close() {
	if h.closed.Swap(true) {
		return
	}
	h.mu.Lock()
	for _, p := range h.ports {
		p.pc.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hub) readLoop(p *hubPort) {
	defer h.wg.Done()
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		h.ctr.in.Add(uint64(n))
		if !p.admit(buf[:n], from) {
			continue
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue // keepalive or not RTP
		}
		// RTCP shares the port (rtcp-mux): payload types 72..79 with the
		// marker bit are RTCP packet types 200..207. The forwarder passes
		// audio only; receivers compute their own statistics.
		if pt := buf[1] & 0x7f; pt >= 72 && pt <= 79 {
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		if p.kind == KindBridge {
			h.fromBridged(p, &pkt)
		} else {
			h.fromMesh(p, buf[:n], &pkt)
		}
	}
}

// fromMesh handles a mesh participant's packet: forward it to the other
// mesh participants when the plan routes its stream through the server,
// and queue it for every bridged phone's mix.
func (h *hub) fromMesh(p *hubPort, raw []byte, pkt *rtp.Packet) {
	h.mu.Lock()
	viaServer := h.plan.Routes[p.user].Via == Server
	var dests []*hubPort
	if viaServer {
		for u, q := range h.ports {
			if u != p.user && q.kind == KindMesh {
				dests = append(dests, q)
			}
		}
	}
	if pcm := decodePayload(pkt.PayloadType, pkt.Payload); pcm != nil {
		for _, m := range h.mix {
			q := append(m.frames[p.user], pcm)
			if len(q) > maxQueued {
				q = q[len(q)-maxQueued:]
			}
			m.frames[p.user] = q
		}
	}
	h.mu.Unlock()
	for _, q := range dests {
		h.sendTo(q, raw)
	}
}

// fromBridged passes a plain phone's audio into the mesh: as PCMU with the
// bridged user's SSRC, to every mesh participant's port.
func (h *hub) fromBridged(p *hubPort, pkt *rtp.Packet) {
	payload := pkt.Payload
	switch pkt.PayloadType {
	case 0:
	case 8:
		payload = g711.Alaw2Ulaw(payload)
	default:
		return // telephone-event or comfort noise: not audio for the mix
	}
	out := rtp.Packet{Header: rtp.Header{
		Version:        2,
		PayloadType:    0,
		SequenceNumber: pkt.SequenceNumber,
		Timestamp:      pkt.Timestamp,
		SSRC:           SSRCFor(p.user),
		Marker:         pkt.Marker,
	}, Payload: payload}
	raw, err := out.Marshal()
	if err != nil {
		return
	}
	h.mu.Lock()
	var dests []*hubPort
	for _, q := range h.ports {
		if q.kind == KindMesh {
			dests = append(dests, q)
		}
	}
	// Other bridged phones in the room hear this one through their mix.
	pcm := decodePayload(0, payload)
	for u, m := range h.mix {
		if u != p.user && pcm != nil {
			q := append(m.frames[p.user], pcm)
			if len(q) > maxQueued {
				q = q[len(q)-maxQueued:]
			}
			m.frames[p.user] = q
		}
	}
	h.mu.Unlock()
	for _, q := range dests {
		h.sendTo(q, raw)
	}
}

func (h *hub) sendTo(q *hubPort, raw []byte) {
	to := q.latched()
	if to == nil {
		return
	}
	if n, err := q.pc.WriteTo(raw, to); err == nil {
		h.ctr.out.Add(uint64(n))
	}
}

// mixLoop sends a bridged phone the mix of everyone else every 20 ms.
func (h *hub) mixLoop(p *hubPort) {
	defer h.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	seq := uint16(time.Now().UnixNano())
	ts := uint32(time.Now().UnixNano())
	ssrc := SSRCFor("room-" + h.room + "/" + p.user)
	sum := make([]int32, frameSamples)
	for range t.C {
		if h.closed.Load() {
			return
		}
		h.mu.Lock()
		m := h.mix[p.user]
		if m == nil {
			h.mu.Unlock()
			return
		}
		for i := range sum {
			sum[i] = 0
		}
		for u, q := range m.frames {
			if len(q) == 0 {
				continue
			}
			for i, s := range q[0] {
				sum[i] += int32(s)
			}
			m.frames[u] = q[1:]
		}
		h.mu.Unlock()
		pcm := make([]byte, 2*frameSamples)
		for i, s := range sum {
			binary.LittleEndian.PutUint16(pcm[2*i:], uint16(clip16(s)))
		}
		var payload []byte
		pt := uint8(0)
		if p.pt == 8 {
			pt = 8
			payload = g711.EncodeAlaw(pcm)
		} else {
			payload = g711.EncodeUlaw(pcm)
		}
		seq++
		ts += frameSamples
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}
		raw, err := pkt.Marshal()
		if err != nil {
			continue
		}
		h.sendTo(p, raw)
	}
}

func clip16(v int32) int16 {
	switch {
	case v > 32767:
		return 32767
	case v < -32768:
		return -32768
	}
	return int16(v)
}

// decodePayload turns a 20 ms G.711 payload into samples (nil for other
// payload types or sizes).
func decodePayload(pt uint8, payload []byte) []int16 {
	if len(payload) != frameSamples {
		return nil
	}
	var lin []byte
	switch pt {
	case 0:
		lin = g711.DecodeUlaw(payload)
	case 8:
		lin = g711.DecodeAlaw(payload)
	default:
		return nil
	}
	out := make([]int16, frameSamples)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(lin[2*i:]))
	}
	return out
}

// updateMedia brings a room's server media in line with its roster: ports
// exist for every participant when the room has a bridged phone or the
// uplink plan routes someone's stream through the server, and for nobody
// otherwise (a pure mesh carries no media through the server).
func (f *Focus) updateMedia(room string) {
	members := f.roster.Members(room)
	peers := make([]Peer, 0, len(members))
	needed := false
	for _, m := range members {
		peers = append(peers, Peer{User: m.User, Seq: m.Seq, UploadKbps: m.UploadKbps, Bridge: m.Kind == KindBridge})
		if m.Kind == KindBridge {
			needed = true
		}
	}
	plan := MakePlan(peers)
	for _, r := range plan.Routes {
		if r.Via == Server {
			needed = true
		}
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	h := f.hubs[room]
	if h == nil && needed {
		h = newHub(f, room)
		f.hubs[room] = h
	}
	if h != nil && len(members) == 0 {
		delete(f.hubs, room)
	}
	f.mu.Unlock()
	if h == nil {
		return
	}
	if len(members) == 0 {
		h.close()
		return
	}
	h.mu.Lock()
	h.plan = plan
	present := map[string]bool{}
	for _, m := range members {
		present[m.User] = true
	}
	var stale []string
	for u, p := range h.ports {
		if !present[u] || (p.kind == KindMesh && !needed) {
			stale = append(stale, u)
		}
	}
	var missing []Member
	if needed {
		for _, m := range members {
			if m.Kind == KindMesh && h.ports[m.User] == nil {
				missing = append(missing, m)
			}
		}
	}
	h.mu.Unlock()
	for _, u := range stale {
		h.closePort(u)
		if present[u] {
			f.roster.SetForwarder(room, u, "") //nolint:errcheck // member may have left meanwhile.
		}
	}
	for _, m := range missing {
		p, err := h.openPort(m.User, KindMesh, 0, nil, m.Token)
		if err != nil {
			f.log.Error("forwarder port", "room", room, "user", m.User, "err", err)
			continue
		}
		f.roster.SetForwarder(room, m.User, p.advertised) //nolint:errcheck // member may have left meanwhile.
	}
}

// portString is host:port for SDP.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

package focus

import "sort"

// StreamKbps is what one outgoing G.711 stream costs on the wire: 160
// bytes of payload every 20 ms plus 12 (RTP) + 8 (UDP) + 20 (IPv4) bytes of
// headers = 200 bytes × 50 packets/s = 80 kbit/s. The uplink rule counts
// streams at this price, not at the 64 kbit/s codec rate, because a home
// uplink carries the headers too.
const StreamKbps = 80

// Server is the Via value of a Route that goes through the server's
// forwarder instead of a supernode.
const Server = "server"

// Peer is one participant as the planner sees it.
type Peer struct {
	// User is the participant's user name.
	User string
	// Seq is its join sequence number: a lower Seq joined earlier.
	Seq uint64
	// UploadKbps is the participant's upload budget; 0 means unlimited.
	UploadKbps int
	// Bridge marks a plain phone the server bridges: it neither sends
	// streams of its own into the mesh nor forwards anyone's.
	Bridge bool
}

// Route says how one participant's stream reaches the others.
type Route struct {
	// Via is "" when the participant sends its stream to every other
	// participant itself (full mesh), a supernode's user name when it sends
	// one stream to that supernode which passes it on, or Server when it
	// sends one stream to the server's forwarder.
	Via string
}

// Plan is the forwarding plan of a room: for every participant, how its
// audio reaches the others. Every participant computes the same plan from
// the same roster, so no extra signaling is needed to agree on it.
type Plan struct {
	// Routes maps user → route of that user's stream.
	Routes map[string]Route
	// Load maps user → its planned upload in kbit/s.
	Load map[string]int
}

// MakePlan applies the uplink rule to a room.
//
// The rule: a participant whose budget fits (N-1) streams (StreamKbps each)
// sends to everyone itself. A participant whose budget does not fit them
// sends one stream to a supernode: the participant, among those that send
// in full mesh themselves, with the most spare upload after taking on the
// N-2 extra streams of forwarding (unlimited budgets count as infinite
// spare; ties go to the earlier joiner). Uplink-limited participants are
// placed in join order, each one's forwarding load counting against its
// supernode before the next is placed. If no participant has the spare
// upload, the server's forwarder carries the stream (Via = Server).
// Bridged phones are placed like everyone else for their incoming audio,
// but their stream enters the mesh at the server, so they have Via =
// Server and no upload of their own.
func MakePlan(peers []Peer) Plan {
	ps := append([]Peer(nil), peers...)
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Seq < ps[j].Seq })
	n := len(ps)
	p := Plan{Routes: make(map[string]Route, n), Load: make(map[string]int, n)}
	full := (n - 1) * StreamKbps
	if n < 2 {
		full = 0
	}
	var limited []Peer
	for _, x := range ps {
		switch {
		case x.Bridge:
			p.Routes[x.User] = Route{Via: Server}
		case x.UploadKbps == 0 || x.UploadKbps >= full:
			p.Routes[x.User] = Route{}
			p.Load[x.User] = full
		default:
			limited = append(limited, x)
		}
	}
	extra := (n - 2) * StreamKbps
	for _, x := range limited {
		// With two participants there is nobody to forward to; one stream
		// is all a limited participant sends anyway, so it sends it
		// directly.
		if n <= 2 {
			p.Routes[x.User] = Route{}
			p.Load[x.User] = full
			continue
		}
		best, bestSpare := "", -1
		for _, s := range ps {
			if s.Bridge || s.User == x.User || p.Routes[s.User].Via != "" {
				continue
			}
			if _, isLimited := indexOf(limited, s.User); isLimited {
				continue
			}
			spare := 1 << 30
			if s.UploadKbps > 0 {
				spare = s.UploadKbps - p.Load[s.User] - extra
			}
			if spare >= 0 && spare > bestSpare {
				best, bestSpare = s.User, spare
			}
		}
		if best == "" {
			p.Routes[x.User] = Route{Via: Server}
		} else {
			p.Routes[x.User] = Route{Via: best}
			p.Load[best] += extra
		}
		p.Load[x.User] = StreamKbps
	}
	return p
}

func indexOf(ps []Peer, user string) (int, bool) {
	for i, p := range ps {
		if p.User == user {
			return i, true
		}
	}
	return -1, false
}

// Sends returns the users that from must send its own stream to directly
// under the plan (the rest get it forwarded).
func (p Plan) Sends(from string, all []string) []string {
	r := p.Routes[from]
	if r.Via == Server {
		return nil
	}
	if r.Via != "" {
		return []string{r.Via}
	}
	var out []string
	for _, u := range all {
		if u != from {
			out = append(out, u)
		}
	}
	return out
}

// ForwardsFor returns the users whose streams via forwards on to the
// others.
func (p Plan) ForwardsFor(via string) []string {
	var out []string
	for u, r := range p.Routes {
		if r.Via == via && via != "" {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

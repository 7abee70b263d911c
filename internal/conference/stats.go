package conference

import (
	"sort"
	"sync"
	"time"

	"github.com/punchline/punchline/media"
)

// Route values for a peer's stream in Stats.
const (
	RouteDirect    = "direct"
	RouteRelayed   = "relayed"
	RouteForwarded = "forwarded"
)

// PeerStats is what the stats JSON says about one other participant.
type PeerStats struct {
	// User is the participant's user name.
	User string `json:"user"`
	// Route is how its audio reached us: "direct" or "relayed" (the ICE
	// route of our leg with it), or "forwarded" (through a supernode or the
	// server, named in Via).
	Route string `json:"route"`
	// Via names the forwarder for Route "forwarded": a user, or "server".
	Via string `json:"via,omitempty"`
	// LocalCandidateType and RemoteCandidateType describe our leg with it.
	LocalCandidateType  string `json:"local_candidate_type,omitempty"`
	RemoteCandidateType string `json:"remote_candidate_type,omitempty"`
	// SetupMS is from starting the leg to its ICE pair being selected.
	SetupMS int64 `json:"setup_ms,omitempty"`
	// RTPPacketsReceived counts its audio packets that reached us.
	RTPPacketsReceived uint64 `json:"rtp_packets_received"`
	// LossFraction is the share of its packets that never arrived.
	LossFraction float64 `json:"loss_fraction"`
	// RTTMS is the round trip on our leg with it (ICE consent checks).
	RTTMS float64 `json:"rtt_ms"`
	// MOS is the ITU-T G.107 E-model estimate for its audio.
	MOS float64 `json:"mos"`
	// BytesSent and BytesReceived are what our leg with it carried.
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
	// Left is set for a participant that left the room before we did; its
	// figures are from when it left.
	Left bool `json:"left,omitempty"`
}

// Stats is the whole stats JSON of a conference participant.
type Stats struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Peers are the other participants, sorted by user.
	Peers []PeerStats `json:"peers"`
	// RTPPacketsSent counts our own audio packets over all legs.
	RTPPacketsSent uint64 `json:"rtp_packets_sent"`
	// UploadBytes is everything our legs and server stream sent.
	UploadBytes uint64 `json:"upload_bytes"`
	// UploadKbps is UploadBytes over the time in the room.
	UploadKbps float64 `json:"upload_kbps"`
	// ForwardedFor lists participants whose streams we forwarded as a
	// supernode.
	ForwardedFor []string `json:"forwarded_for,omitempty"`
	// DurationMS is the time in the room.
	DurationMS int64 `json:"duration_ms"`
}

// seqCounter counts one SSRC's packets and estimates loss from sequence
// numbers (RFC 3550 A.3, without the probation logic: streams here are
// identified by their SSRC up front).
type seqCounter struct {
	mu       sync.Mutex
	received uint64
	started  bool
	base     uint32 // extended sequence number of the first packet
	maxExt   uint32
	cycles   uint32
	maxSeq   uint16
}

func (c *seqCounter) add(seq uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received++
	if !c.started {
		c.started = true
		c.maxSeq = seq
		c.base = uint32(seq)
		c.maxExt = uint32(seq)
		return
	}
	delta := seq - c.maxSeq
	if delta < 0x8000 && delta != 0 {
		if seq < c.maxSeq {
			c.cycles += 1 << 16
		}
		c.maxSeq = seq
		c.maxExt = c.cycles | uint32(seq)
	}
}

func (c *seqCounter) snapshot() (received uint64, loss float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return 0, 0
	}
	expected := uint64(c.maxExt-c.base) + 1
	if expected <= c.received {
		return c.received, 0
	}
	return c.received, float64(expected-c.received) / float64(expected)
}

func mos(rtt time.Duration, loss float64) float64 {
	return media.EstimateMOS(rtt/2, loss)
}

func sortPeers(ps []PeerStats) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].User < ps[j].User })
}

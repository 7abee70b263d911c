package phone

import (
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/media"
)

// Stats describe a call or leg: the media path and the RTP counters. The
// JSON names are the `punchline phone --stats-json` contract.
type Stats struct {
	// Route is "direct" or "relayed"; empty before a path was selected.
	Route               string `json:"route"`
	LocalCandidateType  string `json:"local_candidate_type"`
	RemoteCandidateType string `json:"remote_candidate_type"`
	LocalAddr           string `json:"local_addr"`
	RemoteAddr          string `json:"remote_addr"`
	// ICE is false for a peer without ICE (plain RTP with latching).
	ICE         bool `json:"ice"`
	ICERestarts int  `json:"ice_restarts"`
	// SetupMs is INVITE sent (or received) to first RTP received.
	SetupMs float64 `json:"setup_ms"`
	Codec   string  `json:"codec"`
	// RTTMs is the RTCP round trip, or the ICE check round trip before
	// RTCP has measured one.
	RTTMs     float64 `json:"rtt_ms"`
	Peer      string  `json:"peer,omitempty"`
	CallID    string  `json:"call_id,omitempty"`
	Direction string  `json:"direction,omitempty"`
	DurationS float64 `json:"duration_s,omitempty"`
	// Encryption is "srtp SUITE" when media is SRTP, else "none".
	Encryption string `json:"media_encryption"`
	media.Stats
	media.SRTPStats
}

// sessState reports the ICE state (StateConnected for a plain leg).
func (l *Leg) sessState() ice.State {
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s == nil {
		return ice.StateConnected
	}
	return s.State()
}

// Stats returns the leg's statistics.
func (l *Leg) Stats() Stats {
	var st Stats
	ri, ok := l.Route()
	if ok {
		st.Route, st.LocalCandidateType, st.RemoteCandidateType = ri.Route, ri.LocalType, ri.RemoteType
		st.LocalAddr, st.RemoteAddr = ri.LocalAddr, ri.RemoteAddr
	}
	l.mu.Lock()
	s, stream, codec, closed := l.sess, l.stream, l.codec, l.closed
	l.mu.Unlock()
	st.ICE = s != nil
	st.Codec = codec.String()
	if stream != nil {
		st.Stats = stream.Stats()
	}
	st.RTTMs = st.Stats.RTTMs
	if !st.Stats.HaveRTT && s != nil {
		// Before RTCP measured a round trip, the ICE checks' one; a closed
		// session has none to give, so the last one read is kept.
		var rtt time.Duration
		if !closed {
			rtt = s.Stats().RTT // not under mu: it waits for pion's loop
		}
		l.mu.Lock()
		if !closed {
			l.iceRTT = rtt
		}
		st.RTTMs = float64(l.iceRTT) / float64(time.Millisecond)
		l.mu.Unlock()
	}
	l.mu.Lock()
	st.ICERestarts = l.restarts
	st.Encryption = l.encryptionLocked()
	if l.srtp != nil {
		st.SRTPStats = l.srtp.Stats()
	}
	l.mu.Unlock()
	return st
}

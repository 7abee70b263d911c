package media

import "time"

// Stats is a snapshot of a Stream's counters. Byte counts are whole RTP
// packets (header and payload), what the network carries apart from UDP/IP.
type Stats struct {
	SSRC            uint32 `json:"ssrc"`
	PacketsSent     uint64 `json:"rtp_packets_sent"`
	BytesSent       uint64 `json:"rtp_bytes_sent"`
	PacketsReceived uint64 `json:"rtp_packets_received"`
	BytesReceived   uint64 `json:"rtp_bytes_received"`
	// PacketsLost is expected minus received over all remote sources, from
	// sequence-number gaps (RFC 3550 A.3), duplicates not counted as received.
	PacketsLost int64 `json:"packets_lost"`
	// LossFraction is PacketsLost over packets expected since the start (0–1).
	LossFraction float64 `json:"loss_fraction"`
	// JitterMs is the RFC 3550 interarrival jitter (A.8) of the worst remote
	// source, in milliseconds.
	JitterMs float64 `json:"jitter_ms"`
	// RTT is the round-trip time from the peer's last RTCP report on our
	// stream (RFC 3550 §6.4.1); HaveRTT is false until one arrived.
	RTT     time.Duration `json:"-"`
	RTTMs   float64       `json:"rtt_ms"`
	HaveRTT bool          `json:"have_rtt"`
	// RemoteLossFraction and RemoteJitterMs are what the peer reported
	// about our stream in its last RTCP reception block.
	RemoteLossFraction float64 `json:"remote_loss_fraction"`
	RemoteJitterMs     float64 `json:"remote_jitter_ms"`
	// Jitter buffer outcomes, summed over remote sources.
	LateDiscards    uint64 `json:"late_discards"`
	Duplicates      uint64 `json:"duplicates"`
	ConcealedFrames uint64 `json:"concealed_frames"`
	InsertedFrames  uint64 `json:"inserted_frames"`
	DroppedFrames   uint64 `json:"dropped_frames"`
	PlayedFrames    uint64 `json:"played_frames"`
	// JitterBufferDelay is the playout delay the main source's buffer
	// applies now; TargetDelay what it aims for.
	JitterBufferDelay time.Duration `json:"-"`
	JitterBufferMs    float64       `json:"jitter_buffer_ms"`
	TargetDelayMs     float64       `json:"jitter_buffer_target_ms"`
	// Discarded counts datagrams rejected: malformed, unknown payload type,
	// or from a source other than the latched one.
	Discarded    uint64 `json:"discarded"`
	RTCPSent     uint64 `json:"rtcp_sent"`
	RTCPReceived uint64 `json:"rtcp_received"`
	Sources      int    `json:"sources"`
	// ByeReceived says every remote source has sent RTCP BYE: the peer
	// hung up or left the conference.
	ByeReceived bool `json:"bye_received"`
	// Remote is where we send now; Latched says a PacketConn stream has
	// confirmed it from received RTP.
	Remote  string `json:"remote"`
	Latched bool   `json:"latched"`
	// MOS is the E-model estimate (see EstimateMOS) with one-way delay =
	// RTT/2 + JitterBufferDelay (RTT/2 taken as 0 before RTCP measured it)
	// and loss = lost plus late-discarded packets over expected. 0 until
	// any packet was received.
	MOS float64 `json:"mos"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Stats returns the current counters.
func (s *Stream) Stats() Stats {
	st := Stats{SSRC: s.ssrc}
	s.sendMu.Lock()
	st.PacketsSent, st.BytesSent = s.pktsSent, s.bytesSent
	s.sendMu.Unlock()

	s.remoteMu.Lock()
	if s.cfg.Conn != nil {
		if ra := s.cfg.Conn.RemoteAddr(); ra != nil {
			st.Remote = ra.String()
		}
	} else if s.remote != nil {
		st.Remote = s.remote.String()
		st.Latched = s.latched
	}
	s.remoteMu.Unlock()

	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	st.PacketsReceived, st.BytesReceived = s.pktsRecv, s.bytesRecv
	st.Discarded, st.RTCPSent, st.RTCPReceived = s.discarded, s.rtcpSent, s.rtcpRecv
	st.RTT, st.HaveRTT = s.rtt, s.haveRTT
	st.RTTMs = ms(s.rtt)
	st.RemoteLossFraction, st.RemoteJitterMs = s.remoteLoss, s.remoteJit
	st.Sources = len(s.sources)

	tot := s.retiredStat
	var main *rxSource
	st.ByeReceived = len(s.sources) > 0
	for _, src := range s.sources {
		st.ByeReceived = st.ByeReceived && src.bye
		t := src.totals()
		tot.add(t)
		if j := src.jitter * 1000 / SampleRate; j > st.JitterMs {
			st.JitterMs = j
		}
		if main == nil || src.received > main.received {
			main = src
		}
	}
	lost := tot.lost + int64(tot.jb.Duplicates)
	if lost < 0 {
		lost = 0
	}
	st.PacketsLost = lost
	if tot.expected > 0 {
		st.LossFraction = min(float64(lost)/float64(tot.expected), 1)
	}
	st.LateDiscards, st.Duplicates = tot.jb.Late, tot.jb.Duplicates
	st.ConcealedFrames, st.InsertedFrames, st.DroppedFrames = tot.jb.Concealed, tot.jb.Inserted, tot.jb.Dropped
	st.PlayedFrames = tot.jb.Played
	if main != nil {
		js := main.jb.Stats()
		st.JitterBufferDelay = js.Delay
		st.JitterBufferMs = ms(js.Delay)
		st.TargetDelayMs = ms(js.TargetDelay)
	}
	if tot.expected > 0 {
		eff := min(float64(lost+int64(tot.jb.Late))/float64(tot.expected), 1)
		st.MOS = EstimateMOS(s.rtt/2+st.JitterBufferDelay, eff)
	}
	return st
}

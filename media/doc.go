// Package media is punchline's audio path: G.711 over RTP with RTCP, a
// jitter buffer, DTMF, statistics with an E-model MOS estimate, mixing for
// mesh conferences, and WAV files and test tones in place of a sound card.
//
// # Shape
//
// A Stream is one RTP session with one peer over one datagram socket:
//
//	s, err := media.New(media.Config{
//		Conn:   iceConn,                          // or PacketConn + RemoteAddr for a peer without ICE
//		Codec:  media.PCMU,                       // what we send; PCMU and PCMA are both decoded
//		Source: media.NewToneSource(440, 0),      // paced out every 20 ms
//		Sink:   recorder,                         // played-out audio every 20 ms
//		OnDTMF: func(d media.DTMF) { ... },
//	})
//	defer s.Close()
//	<-s.FirstPacket()                            // setup time ends here
//	st := s.Stats()                              // loss, jitter, RTT, MOS, ...
//
// Audio flows as 20 ms frames of 160 linear 16-bit samples at 8 kHz
// (FrameSamples). Sending is push based (a Source is paced by a ticker that
// keeps time from a fixed start, so it does not drift); playout is pull
// based: each 20 ms something calls PopFrame — the Stream itself when
// Config.Sink is set, or a Mixer/Player for a conference, where every peer
// has its own Stream and jitter buffer and
//
//	mixer.Add(stream)                 // for each peer
//	player := media.NewPlayer(mixer, recorder, log)
//	fan := media.NewFanout(media.FanoutConfig{Source: tone})
//	fan.Add(stream)                   // encode once, send to N−1
//
// A Stream never closes the conn it was given; Close stops its goroutines
// (interrupting the blocked read with a deadline) and waits for them.
//
// # Wire formats and RFCs
//
//   - RTP (RFC 3550) with the RTP/AVP profile (RFC 3551): G.711 µ-law as
//     static payload type 0 (PCMU) and A-law as 8 (PCMA), 8000 Hz clock,
//     one byte per sample, 20 ms (160 byte) payloads. SSRC, first sequence
//     number and first timestamp are random (RFC 3550 §5.1, §8.1). The
//     marker bit is set on the first packet. Packets are built and parsed
//     with github.com/pion/rtp.
//   - RTCP (RFC 3550 §6) via github.com/pion/rtcp: every RTCPInterval
//     (default 1 s, randomised ±50%) a compound packet of SR (when we sent
//     since the last report) or RR, with one reception block per remote
//     SSRC, plus SDES CNAME; BYE on Close. Loss follows Appendix A.1/A.3
//     (extended highest sequence number, cumulative and interval fraction),
//     jitter Appendix A.8 (J += (|D|−J)/16 in timestamp units), RTT from the
//     peer's LSR/DLSR (§6.4.1).
//   - RTP/RTCP multiplexing on one port (RFC 5761 §4): a datagram whose
//     second byte is 192–223 (RTCP packet types SR 200 … APP 204, i.e. what
//     would be RTP payload types 64–95) is RTCP, anything else RTP.
//   - DTMF as RFC 4733 telephone-events (default payload type 101): 4-byte
//     payload event/E/R/volume/duration; one RTP timestamp per event,
//     updates every 20 ms, the end packet sent three times; audio is
//     suppressed during the event. Received events are reported once each,
//     and the media time they cover plays as silence rather than counting
//     as loss.
//   - RTT needs SRs from us echoed in the peer's reports, so a Stream that
//     never sends RTP (no Source, no Fanout, no SendFrame) has no RTT; the
//     phone always sends, silence included. RFC 3611 XR is not used.
//
// # Symmetric RTP (latching)
//
// With a PacketConn (a peer without ICE, RFC 4961 behaviour) we send to the
// SDP c=/m= address until the peer's RTP shows where it really is, then
// send there. Only datagrams that parse as RTP version 2 with an audio or
// telephone-event payload type count. The rules:
//
//  1. Packets from the current remote address are always accepted and
//     confirm it (Stats.Latched).
//  2. A packet from another address makes that address the candidate; it
//     must send Config.LatchPackets (default 2) consecutive packets with the
//     same SSRC, with no other source in between, to become the remote.
//  3. Before anything latched, packets from any source are played so audio
//     starts at once; afterwards packets from other addresses are dropped
//     (counted in Stats.Discarded), so a third party cannot inject audio.
//  4. After latching, a new address takes over only if it carries the SSRC
//     we are receiving (the peer's NAT rebinding), or if the latched source
//     has been silent for a second (the peer restarted its stack).
//  5. RTCP is accepted from the remote's IP address (any port, for peers
//     without rtcp-mux); comfort noise and other payload types never move
//     the latch.
//
// Config.DisableLatching turns this off; SetRemote (a re-INVITE) re-arms it.
//
// # Jitter buffer
//
// JitterBuffer reorders by RTP timestamp, drops duplicates (by sequence
// number), discards packets that arrive after their playout time (counted
// as late), conceals gaps by repeating the last frame with a fade, and
// adapts its delay in milliseconds to the 95th percentile of measured
// arrival-delay variation over the last 5 s, within 20–200 ms (starting at
// 60 ms). See its doc comment for the details.
//
// # Quality
//
// Stats carries packets and bytes each way, loss, jitter, RTT, jitter buffer
// outcomes and an ITU-T G.107 E-model MOS (EstimateMOS: G.711 with PLC,
// Bpl = 25.1; delay = RTT/2 + jitter buffer delay).
//
// # Files and analysis
//
// ReadWAV accepts 16-bit PCM WAV, mono or stereo at any rate, and returns
// 8 kHz mono (windowed-sinc resampling); WriteWAV and WAVRecorder write 8 kHz
// mono PCM16. ToneLevel/DetectTones (Goertzel) and Correlate/Match
// (normalized cross-correlation, FFT based) let tests check what a peer
// heard without comparing bytes. Package mediatest wraps conns to drop,
// duplicate and reorder datagrams deterministically for such tests.
package media

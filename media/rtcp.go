package media

import (
	"time"
)

// RTCP helpers (RFC 3550 §6).

// ntpEpochOffset is the number of seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime returns t as a 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
func ntpTime(t time.Time) uint64 {
	ns := t.UnixNano()
	sec := uint64(ns/1e9) + ntpEpochOffset
	frac := (uint64(ns%1e9) << 32) / 1e9
	return sec<<32 | frac
}

// ntpMiddle returns the middle 32 bits of an NTP timestamp, the unit of the
// LSR and DLSR fields (1/65536 s).
func ntpMiddle(ntp uint64) uint32 { return uint32(ntp >> 16) }

// rttFromReport computes the round-trip time from a reception report's LSR
// and DLSR fields, received at now (RFC 3550 §6.4.1, figure 2):
// RTT = A − LSR − DLSR, all in 1/65536 s. ok is false when the report does
// not echo one of our SRs or the result is implausible.
func rttFromReport(now time.Time, lsr, dlsr uint32) (time.Duration, bool) {
	if lsr == 0 {
		return 0, false
	}
	a := ntpMiddle(ntpTime(now))
	rtt := int64(int32(a - lsr - dlsr))
	if rtt < 0 {
		// Clock granularity can make a LAN RTT come out a tick negative.
		if rtt > -66 { // -1 ms
			rtt = 0
		} else {
			return 0, false
		}
	}
	d := time.Duration(rtt) * time.Second / 65536
	if d > 60*time.Second {
		return 0, false
	}
	return d, true
}

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 §4): RTCP packet
// types 192–223 occupy the byte where RTP has the marker bit and payload
// type, and RTP payload types 64–95 are never used, so the ranges do not
// collide.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

package benchtool

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TimedLine is one line of a tool's output with the time the harness read
// it. turnutils_uclient reports its timings in whole seconds only, so the
// harness timestamps its (line-buffered) output to measure rates.
type TimedLine struct {
	At   time.Time
	Text string
}

// UclientResult is what one turnutils_uclient run reports.
type UclientResult struct {
	// Sent and Received are the final tot_send_msgs and tot_recv_msgs over
	// all sessions.
	Sent, Received int
	// Lost is "Total lost packets".
	Lost int
	// Connected is when allocation and permission setup finished ("Total
	// connect time"); traffic starts there.
	Connected time.Time
	// Rate is packets received back per second while traffic flowed:
	// the slope of tot_recv_msgs between the first and the last progress
	// report taken while packets were still arriving, or, with too few
	// reports, all received packets over the time from Connected to the
	// first report of the final count.
	Rate float64
	// Samples is how many progress reports the rate was taken from.
	Samples int
}

// uclientSample is one progress report: cumulative counts at a time.
type uclientSample struct {
	at         time.Time
	sent, recv int
}

// ParseUclient reads turnutils_uclient's output. It understands the lines
//
//	N: : Total connect time is S
//	N: : start_mclient: msz=M, tot_send_msgs=S, tot_recv_msgs=R, ...
//	N: : start_mclient: tot_send_msgs=S, tot_recv_msgs=R
//	N: : Total lost packets L (P%), total send dropped D (P%)
//
// and ignores everything else.
func ParseUclient(lines []TimedLine) (UclientResult, error) {
	var (
		res     UclientResult
		samples []uclientSample
		final   bool
	)
	for _, l := range lines {
		t := l.Text
		switch {
		case strings.Contains(t, "Total connect time is"):
			if res.Connected.IsZero() {
				res.Connected = l.At
			}
		case strings.Contains(t, "start_mclient:") && strings.Contains(t, "tot_recv_msgs="):
			sent, ok1 := intAfter(t, "tot_send_msgs=")
			recv, ok2 := intAfter(t, "tot_recv_msgs=")
			if !ok1 || !ok2 {
				continue
			}
			if strings.Contains(t, "msz=") {
				samples = append(samples, uclientSample{at: l.At, sent: sent, recv: recv})
			} else {
				res.Sent, res.Received, final = sent, recv, true
				samples = append(samples, uclientSample{at: l.At, sent: sent, recv: recv})
			}
		case strings.Contains(t, "Total lost packets"):
			if n, ok := intAfter(t, "Total lost packets "); ok {
				res.Lost = n
			}
		}
	}
	if !final {
		// The harness may stop uclient once every packet is sent and the
		// received count has stopped growing (it would otherwise wait
		// about ten seconds for packets that were lost); the last
		// progress report then holds the final counts.
		if len(samples) == 0 {
			return res, ErrNoUclientResult
		}
		last := samples[len(samples)-1]
		res.Sent, res.Received = last.sent, last.recv
		res.Lost = last.sent - last.recv
	}
	if res.Received == 0 {
		return res, fmt.Errorf("%w: no packet came back (sent %d)", ErrNoUclientResult, res.Sent)
	}
	res.Rate, res.Samples = uclientRate(samples, res.Connected, res.Received)
	if res.Rate <= 0 {
		return res, fmt.Errorf("%w: no usable timing in %d progress reports", ErrNoUclientResult, len(samples))
	}
	return res, nil
}

// uclientRate computes the receive rate from progress samples; see
// UclientResult.Rate.
func uclientRate(samples []uclientSample, connected time.Time, final int) (float64, int) {
	// The steady part: from the first report with packets received to the
	// last report before the count stopped growing.
	first, last := -1, -1
	for i, s := range samples {
		if s.recv > 0 && first < 0 {
			first = i
		}
		if s.recv < final {
			last = i
		}
	}
	if first >= 0 && last > first {
		dt := samples[last].at.Sub(samples[first].at).Seconds()
		if dt >= 0.5 {
			return float64(samples[last].recv-samples[first].recv) / dt, last - first + 1
		}
	}
	// Fallback: everything from the end of setup to the first report of
	// the final count.
	if connected.IsZero() {
		return 0, 0
	}
	for _, s := range samples {
		if s.recv >= final {
			if dt := s.at.Sub(connected).Seconds(); dt > 0 {
				return float64(final) / dt, 1
			}
			break
		}
	}
	return 0, 0
}

// intAfter parses the decimal number right after key in s.
func intAfter(s, key string) (int, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		return 0, false
	}
	rest := s[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j == 0 || j > 18 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:j])
	return n, err == nil
}

// UclientSettled reports whether uclient's output shows that all of
// expected packets were sent and the received count did not grow across
// the last two progress reports: nothing more will arrive.
func UclientSettled(lines []TimedLine, expected int) bool {
	var recv []int
	for _, l := range lines {
		t := l.Text
		if !strings.Contains(t, "start_mclient: msz=") {
			continue
		}
		sent, ok1 := intAfter(t, "tot_send_msgs=")
		r, ok2 := intAfter(t, "tot_recv_msgs=")
		if !ok1 || !ok2 || sent < expected {
			continue
		}
		recv = append(recv, r)
	}
	n := len(recv)
	return n >= 3 && recv[n-1] == recv[n-2] && recv[n-2] == recv[n-3]
}

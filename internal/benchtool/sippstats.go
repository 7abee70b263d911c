package benchtool

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// SippStats is the cumulative outcome of one sipp run, read from the last
// row of the file sipp writes with -trace_stat -stf FILE. sipp appends a
// row every -fd period and one when it ends; the header row names the
// columns, with (P) for the last period and (C) for the whole run.
type SippStats struct {
	// Created is TotalCallCreated: calls sipp started.
	Created int
	// Successful and Failed are SuccessfulCall(C) and FailedCall(C).
	Successful, Failed int
	// Retransmissions is Retransmissions(C): requests and responses sipp
	// had to send again because the answer did not come within T1.
	Retransmissions int
	// CallRate is CallRate(C): calls created per second over the run.
	CallRate float64
	// Elapsed is ElapsedTime(C).
	Elapsed time.Duration
	// TimeoutOnRecv, MaxUDPRetrans and Unexpected break Failed down.
	TimeoutOnRecv, MaxUDPRetrans, Unexpected int
	// DeadCallMsgs counts messages for calls already ended (late
	// retransmissions, or a response after the call gave up).
	DeadCallMsgs int
	// CPU is the CPU time sipp itself used. It is not in the file; the
	// harness fills it in from the process state.
	CPU time.Duration
}

// Clean reports whether the run completed every call it created, none
// failed and nothing had to be retransmitted: the bar for a rate to count.
func (s SippStats) Clean() bool {
	return s.Created > 0 && s.Failed == 0 && s.Retransmissions == 0 && s.Successful == s.Created
}

// String summarises the run for logs.
func (s SippStats) String() string {
	return fmt.Sprintf("created %d ok %d failed %d (recv-timeout %d, max-retrans %d, unexpected %d) retrans %d rate %.1f/s in %v",
		s.Created, s.Successful, s.Failed, s.TimeoutOnRecv, s.MaxUDPRetrans, s.Unexpected, s.Retransmissions, s.CallRate, s.Elapsed)
}

// ParseSippStats reads a sipp -trace_stat file and returns the totals of
// its last complete row. Rows whose field count differs from the header's
// (a row cut short when sipp was killed) are skipped.
func ParseSippStats(r io.Reader) (SippStats, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var header, last []string
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		fields := strings.Split(strings.TrimSuffix(line, ";"), ";")
		if header == nil {
			if !strings.HasPrefix(fields[0], "StartTime") {
				return SippStats{}, fmt.Errorf("%w: first line is not the header", ErrNoStats)
			}
			header = fields
			continue
		}
		if strings.HasPrefix(fields[0], "StartTime") {
			// sipp may write the header again when it reopens the file.
			header = fields
			continue
		}
		if len(fields) == len(header) {
			last = fields
		}
	}
	if err := sc.Err(); err != nil {
		return SippStats{}, fmt.Errorf("read sipp stats: %w", err)
	}
	if last == nil {
		return SippStats{}, ErrNoStats
	}
	col := make(map[string]string, len(header))
	for i, h := range header {
		col[h] = last[i]
	}
	var st SippStats
	var err error
	ints := []struct {
		name string
		dst  *int
	}{
		{"TotalCallCreated", &st.Created},
		{"SuccessfulCall(C)", &st.Successful},
		{"FailedCall(C)", &st.Failed},
		{"Retransmissions(C)", &st.Retransmissions},
		{"FailedTimeoutOnRecv(C)", &st.TimeoutOnRecv},
		{"FailedMaxUDPRetrans(C)", &st.MaxUDPRetrans},
		{"FailedUnexpectedMessage(C)", &st.Unexpected},
		{"DeadCallMsgs(C)", &st.DeadCallMsgs},
	}
	for _, f := range ints {
		v, ok := col[f.name]
		if !ok {
			// Older or newer sipp versions may lack a breakdown column;
			// the four totals are required.
			switch f.name {
			case "TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)":
				return SippStats{}, fmt.Errorf("%w: column %s missing", ErrNoStats, f.name)
			}
			continue
		}
		if *f.dst, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || *f.dst < 0 {
			return SippStats{}, fmt.Errorf("%w: column %s: %q", ErrNoStats, f.name, v)
		}
	}
	if v, ok := col["CallRate(C)"]; ok {
		if st.CallRate, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || st.CallRate < 0 {
			return SippStats{}, fmt.Errorf("%w: CallRate(C): %q", ErrNoStats, v)
		}
	}
	if v, ok := col["ElapsedTime(C)"]; ok {
		if st.Elapsed, err = parseSippDuration(v); err != nil {
			return SippStats{}, fmt.Errorf("%w: ElapsedTime(C): %v", ErrNoStats, err)
		}
	}
	return st, nil
}

// parseSippDuration reads sipp's HH:MM:SS or HH:MM:SS:uuuuuu durations.
func parseSippDuration(s string) (time.Duration, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 && len(parts) != 4 {
		return 0, fmt.Errorf("duration %q: want HH:MM:SS[:micros]", s)
	}
	mult := []time.Duration{time.Hour, time.Minute, time.Second, time.Microsecond}
	var d time.Duration
	for i, p := range parts {
		// A million of any unit keeps the sum far from overflowing.
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || n > 1e6 {
			return 0, fmt.Errorf("duration %q: bad field %q", s, p)
		}
		d += time.Duration(n) * mult[i]
	}
	return d, nil
}

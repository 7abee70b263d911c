package benchtool

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcStat is what the harness reads from /proc/PID/stat (proc(5)).
type ProcStat struct {
	PID, PPID int
	// UTime and STime are user and system CPU time in clock ticks, summed
	// over all threads of the process.
	UTime, STime uint64
}

// ParseProcStat parses one /proc/PID/stat line. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	open := bytes.IndexByte(b, '(')
	close := bytes.LastIndexByte(b, ')')
	if open < 1 || close < open {
		return ProcStat{}, fmt.Errorf("%w: no (comm)", ErrBadProcStat)
	}
	var st ProcStat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return ProcStat{}, fmt.Errorf("%w: pid %q", ErrBadProcStat, b[:open])
	}
	st.PID = pid
	// After ')': state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8)
	// flags(9) minflt(10) cminflt(11) majflt(12) cmajflt(13) utime(14)
	// stime(15).
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 13 {
		return ProcStat{}, fmt.Errorf("%w: %d fields after comm", ErrBadProcStat, len(f))
	}
	if st.PPID, err = strconv.Atoi(f[1]); err != nil || st.PPID < 0 {
		return ProcStat{}, fmt.Errorf("%w: ppid %q", ErrBadProcStat, f[1])
	}
	if st.UTime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return ProcStat{}, fmt.Errorf("%w: utime %q", ErrBadProcStat, f[11])
	}
	if st.STime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return ProcStat{}, fmt.Errorf("%w: stime %q", ErrBadProcStat, f[12])
	}
	return st, nil
}

// ParseMemField returns the value in kB of a "Name:   123 kB" line from
// /proc/PID/status or /proc/PID/smaps_rollup.
func ParseMemField(b []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q", name, line)
		}
		if len(f) > 1 && f[1] != "kB" {
			return 0, fmt.Errorf("%s: unit %q, want kB", name, f[1])
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: not found", name)
}

// clockTicks is sysconf(_SC_CLK_TCK), asked of getconf once; 100 is the
// value on every Linux architecture the harness runs on.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// readStat reads /proc/PID/stat.
func readStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	return ParseProcStat(b)
}

// processTree returns root and all its descendants. Kamailio is a tree of
// worker processes; punchline and coturn are single processes.
func processTree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		children[st.PPID] = append(children[st.PPID], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// CPUTime is the user+system CPU time used so far by the processes.
func CPUTime(pids []int) (time.Duration, error) {
	var ticks uint64
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			return 0, err
		}
		ticks += st.UTime + st.STime
	}
	return time.Duration(float64(ticks) / clockTicks * float64(time.Second)), nil
}

// Memory is the resident memory of a server, in kB.
type Memory struct {
	// RSS sums VmRSS over the processes. For a multi-process server
	// (Kamailio) it counts shared memory once per process that touched it.
	RSS int64
	// PSS sums the proportional set size: shared pages divided among the
	// processes sharing them, so a process tree's PSS is what it really
	// occupies. For a single process it is close to RSS.
	PSS int64
}

// MemoryOf reads VmRSS and Pss of each process and sums them.
func MemoryOf(pids []int) (Memory, error) {
	var m Memory
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		status, err := os.ReadFile(filepath.Join(dir, "status"))
		if err != nil {
			return m, err
		}
		rss, err := ParseMemField(status, "VmRSS")
		if err != nil {
			return m, fmt.Errorf("pid %d: %w", pid, err)
		}
		rollup, err := os.ReadFile(filepath.Join(dir, "smaps_rollup"))
		if err != nil {
			return m, err
		}
		pss, err := ParseMemField(rollup, "Pss")
		if err != nil {
			return m, fmt.Errorf("pid %d: %w", pid, err)
		}
		m.RSS += rss
		m.PSS += pss
	}
	return m, nil
}

// Machine describes the host for the report: CPU count and model.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		model = CPUModel(b)
	}
	n := 0
	if out, err := exec.Command("nproc").Output(); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	return fmt.Sprintf("%d × %s", n, model)
}

// CPUModel returns the first "model name" of /proc/cpuinfo.
func CPUModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

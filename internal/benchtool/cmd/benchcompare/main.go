// Command benchcompare runs punchline side by side with Kamailio and coturn
// under the same loads and writes the comparison table. bench/compare
// builds and runs it; see docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/punchline/punchline/internal/benchtool"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		cfg     benchtool.Config
		loads   string
		out     string
		work    string
		keep    bool
		timeout time.Duration
		version string
		plArgs  multiFlag
		uclient string
	)
	flag.StringVar(&cfg.PunchlineBin, "punchline", "", "punchline binary to test (required)")
	flag.StringVar(&cfg.BenchDir, "bench", "bench", "the repository's bench/ directory")
	flag.StringVar(&out, "out", "bench/results", "directory for latest.md")
	flag.StringVar(&work, "work", "", "work directory (default: a new one under /dev/shm or $TMPDIR)")
	flag.BoolVar(&keep, "keep", false, "keep the work directory (logs, sipp statistics, profiles)")
	flag.StringVar(&loads, "loads", strings.Join(benchtool.AllLoads, ","), "loads to run")
	flag.IntVar(&cfg.Rounds, "rounds", 2, "rounds per server (alternating punchline, reference)")
	flag.IntVar(&cfg.Users, "users", 10000, "bench accounts, and registrations in the memory load")
	flag.IntVar(&cfg.Allocations, "allocations", 1000, "TURN allocations in the memory load")
	flag.Float64Var(&cfg.ProbeSeconds, "probe-seconds", 3, "length of one rate probe")
	flag.StringVar(&uclient, "uclient-args", "", "turnutils_uclient load flags (default -m 20 -n 5000 -l 172 -z 0 -c -X)")
	flag.IntVar(&cfg.ProfileSeconds, "profile-seconds", 0, "take a CPU profile of punchline for this long in round 1 of each load (needs --pl-arg=--pprof)")
	flag.IntVar(&cfg.KamailioChildren, "kamailio-children", 0, "Kamailio UDP workers (default: the cfg's 8)")
	flag.Var(&plArgs, "pl-arg", "extra flag for punchline serve (repeatable)")
	flag.DurationVar(&timeout, "timeout", 9*time.Minute, "stop starting loads after this long")
	flag.StringVar(&version, "version", "", "punchline version for the report (e.g. git commit)")
	flag.Parse()
	cfg.PunchlineArgs = plArgs
	cfg.Loads = strings.Split(loads, ",")
	if uclient != "" {
		cfg.UclientArgs = strings.Fields(uclient)
	}
	cfg.Log = os.Stderr
	if cfg.PunchlineBin == "" {
		fmt.Fprintln(os.Stderr, "benchcompare: --punchline BIN is required")
		os.Exit(2)
	}
	if work == "" {
		base := os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			// tmpfs: punchline's store and Kamailio's memory both stay in
			// RAM, so neither server waits on this machine's disk.
			base = "/dev/shm"
		}
		var err error
		if work, err = os.MkdirTemp(base, "punchline-bench-"); err != nil {
			fmt.Fprintln(os.Stderr, "benchcompare:", err)
			os.Exit(1)
		}
	}
	cfg.WorkDir = work
	if !keep {
		defer os.RemoveAll(work)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rep, err := benchtool.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
	if version != "" {
		rep.Versions = append([]string{"punchline: " + version}, rep.Versions...)
	}
	if keep {
		rep.Notes = append(rep.Notes, "logs kept in "+work)
	}
	md := rep.Markdown()
	fmt.Print(md)
	if err := os.MkdirAll(out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
	path := filepath.Join(out, "latest.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "wrote", path)
}

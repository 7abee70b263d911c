package benchtool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/punchline/punchline/internal/store"
)

// Loads the harness knows, in the order it runs them.
const (
	LoadRegister = "register"
	LoadCalls    = "calls"
	LoadRelay    = "relay"
	LoadMemory   = "memory"
)

// AllLoads is every load, in run order.
var AllLoads = []string{LoadRegister, LoadCalls, LoadRelay, LoadMemory}

// numCallees is how many users the sipp UAS registers for load 2.
const numCallees = 100

// Config configures a comparison run. Zero values are usable unless said.
type Config struct {
	// PunchlineBin is the punchline binary to test. Required.
	PunchlineBin string
	// PunchlineArgs are extra `serve` flags (e.g. --pprof).
	PunchlineArgs []string
	// PunchlineEnv is added to serve's environment. Zero:
	// PUNCHLINE_SIP_RATE_LIMIT=off, since every sipp request comes from
	// 127.0.0.1 and Kamailio runs without pike.
	PunchlineEnv []string
	// BenchDir is the repository's bench/ directory (sipp scenarios,
	// kamailio.cfg, turnserver.conf). Required.
	BenchDir string
	// WorkDir holds data directories, configurations and logs. Required.
	WorkDir string
	// Sipp, Kamailio, Turnserver, Uclient and Peer are the tools. Zero:
	// looked up on PATH, then in /usr/sbin and /usr/bin.
	Sipp, Kamailio, Turnserver, Uclient, Peer string
	// KamailioChildren overrides the cfg's UDP worker count (8). Zero:
	// the cfg's.
	KamailioChildren int
	// Loads selects loads by name. Zero: AllLoads.
	Loads []string
	// Rounds is how many times each server runs each load, alternating
	// punchline and the reference. Zero: 2.
	Rounds int
	// Users is the number of bench accounts, and of registrations in the
	// memory load. Zero: 10000.
	Users int
	// Allocations is the number of TURN allocations in the memory load.
	// Zero: 1000.
	Allocations int
	// Realm and Password are shared by every account. Zero: "punchline"
	// and "bench-secret".
	Realm, Password string
	// ProbeSeconds is the length of one rate probe. Zero: 3.
	ProbeSeconds float64
	// MaxRate caps the rate searches. Zero: 32000.
	MaxRate float64
	// MemRegisterRate is the REGISTER rate of the memory load. Zero: 2000.
	MemRegisterRate float64
	// UclientArgs are turnutils_uclient's load flags. Zero: 20 sessions of
	// 5000 packets of 172 bytes sent back to back, as in the notes' coturn
	// figure, one allocation per session (-c).
	UclientArgs []string
	// ProfileSeconds, when positive, takes a CPU profile of punchline
	// (GET /debug/pprof/profile on its --http listener) during the first
	// round of each load that runs that long; serve must have been started
	// with pprof enabled through PunchlineArgs.
	ProfileSeconds int
	// Log receives progress lines. Nil: discarded.
	Log io.Writer
}

func (c *Config) validate() error {
	if c.PunchlineBin == "" || c.BenchDir == "" || c.WorkDir == "" {
		return errors.New("benchtool: PunchlineBin, BenchDir and WorkDir are required")
	}
	// Servers run with their own working directories: every path they
	// are given must be absolute.
	for _, p := range []*string{&c.PunchlineBin, &c.BenchDir, &c.WorkDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if len(c.Loads) == 0 {
		c.Loads = AllLoads
	}
	for _, l := range c.Loads {
		switch l {
		case LoadRegister, LoadCalls, LoadRelay, LoadMemory:
		default:
			return fmt.Errorf("benchtool: unknown load %q (want %s)", l, strings.Join(AllLoads, ", "))
		}
	}
	if c.Rounds <= 0 {
		c.Rounds = 2
	}
	if c.Users <= 0 {
		c.Users = 10000
	}
	if c.Allocations <= 0 {
		c.Allocations = 1000
	}
	c.Allocations = min(c.Allocations, c.Users)
	if c.Users < 1000+numCallees {
		return errors.New("benchtool: need at least 1100 users (1000 callers, 100 callees)")
	}
	if c.Realm == "" {
		c.Realm = "punchline"
	}
	if c.Password == "" {
		c.Password = "bench-secret"
	}
	if c.ProbeSeconds <= 0 {
		c.ProbeSeconds = 3
	}
	if c.MaxRate <= 0 {
		c.MaxRate = 32000
	}
	if c.MemRegisterRate <= 0 {
		c.MemRegisterRate = 2000
	}
	if len(c.UclientArgs) == 0 {
		c.UclientArgs = []string{"-m", "20", "-n", "5000", "-l", "172", "-z", "0", "-c", "-X"}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.PunchlineEnv == nil {
		c.PunchlineEnv = []string{"PUNCHLINE_SIP_RATE_LIMIT=off"}
		// Newer serve binaries take it as a flag too; pass it when offered.
		help, _ := exec.Command(c.PunchlineBin, "serve", "-h").CombinedOutput()
		if strings.Contains(string(help), "-sip-rate-limit") {
			c.PunchlineArgs = append(c.PunchlineArgs, "--sip-rate-limit=-1")
		}
	}
	var err error
	for _, t := range []struct {
		dst  *string
		name string
	}{
		{&c.Sipp, "sipp"}, {&c.Kamailio, "kamailio"}, {&c.Turnserver, "turnserver"},
		{&c.Uclient, "turnutils_uclient"}, {&c.Peer, "turnutils_peer"},
	} {
		if *t.dst == "" {
			if *t.dst, err = findTool(t.name); err != nil {
				return err
			}
		}
	}
	return nil
}

// findTool looks a program up on PATH and in the Debian system paths
// (kamailio and turnserver live in /usr/sbin, which a user's PATH may lack).
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (Debian packages: sip-tester, kamailio, coturn)", ErrMissingTool, name)
}

// harness is the state of one run.
type harness struct {
	cfg                            Config
	users                          []string
	usersCSV, calleesCSV, callsCSV string
	template                       string // punchline data dir with the users
	peerPort                       int
	seq                            int
	profiling                      bool // profile punchline now (first round)
	mu                             sync.Mutex
}

func (h *harness) logf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.cfg.Log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func (h *harness) nextSeq() int { h.seq++; return h.seq }

func (h *harness) scenario(name string) string { return filepath.Join(h.cfg.BenchDir, "sipp", name) }

// Run runs the selected loads against punchline and the reference servers
// and returns the report. Figures of loads that failed carry NaN and a
// note; Run returns an error only when the harness itself cannot work.
func Run(ctx context.Context, cfg Config) (Report, error) {
	started := time.Now()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	h := &harness{cfg: cfg}
	loadStart := loadAvg()
	rep := Report{Date: started, Machine: Machine(), Rounds: cfg.Rounds, Versions: toolVersions(cfg)}
	if err := h.prepare(); err != nil {
		return rep, err
	}
	h.logf("work dir %s; %d users; loads %s; %d rounds", cfg.WorkDir, cfg.Users, strings.Join(cfg.Loads, ","), cfg.Rounds)

	pl := &Punchline{Bin: cfg.PunchlineBin, Template: h.template, Dir: cfg.WorkDir, Realm: cfg.Realm, ExtraArgs: cfg.PunchlineArgs, Env: cfg.PunchlineEnv}
	plTURN := &Punchline{Bin: cfg.PunchlineBin, Template: h.template, Dir: cfg.WorkDir, Realm: cfg.Realm, TURN: true, ExtraArgs: cfg.PunchlineArgs, Env: cfg.PunchlineEnv}
	kam := &Kamailio{Bin: cfg.Kamailio, Config: filepath.Join(cfg.BenchDir, "kamailio", "kamailio.cfg"),
		Dir: cfg.WorkDir, Realm: cfg.Realm, Password: cfg.Password, Children: cfg.KamailioChildren}
	cot := &Coturn{Bin: cfg.Turnserver, Template: filepath.Join(cfg.BenchDir, "coturn", "turnserver.conf"),
		Dir: cfg.WorkDir, Realm: cfg.Realm, Password: cfg.Password, Users: h.users[:cfg.Allocations]}
	kamName, cotName := "Kamailio", "coturn"
	if slices.Contains(cfg.Loads, LoadRelay) {
		peer, err := h.startPeer()
		if err != nil {
			return rep, fmt.Errorf("turnutils_peer: %w", err)
		}
		defer peer.stop(time.Second) //nolint:errcheck // it runs until stopped.
	}

	for _, load := range cfg.Loads {
		if ctx.Err() != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("load %s not run: %v", load, ctx.Err()))
			continue
		}
		h.logf("load %s", load)
		switch load {
		case LoadRegister:
			f := Figure{Name: "authenticated REGISTER rate", Unit: "REGISTER/s", HigherIsBetter: true, Reference: kamName,
				Note: "highest rate with 0 failed and 0 retransmitted REGISTERs (401 then 200, sipp, " +
					fmt.Sprint(cfg.ProbeSeconds) + " s probes on a freshly started server, doubling then 3 bisections, a failing probe re-run once)"}
			eff := Figure{Name: "server CPU per 1,000 REGISTERs at 1,000/s", Unit: "CPU s", Reference: kamName,
				Note: "user+system time of the server's processes (/proc/PID/stat) over a 1,000/s probe, per 1,000 completed registrations"}
			h.alternate(ctx, &f, &eff, pl, kam, "register", 1000, h.registerProbe, h.registerRate)
			rep.Figures = append(rep.Figures, f, eff)
		case LoadCalls:
			f := Figure{Name: "calls through the proxy", Unit: "calls/s", HigherIsBetter: true, Reference: kamName,
				Note: "INVITE (407, ACK, INVITE with credentials) 180 200 ACK BYE 200 between sipp UAC and a registered sipp UAS, " +
					"highest rate with 0 failed calls and 0 retransmissions, searched as for REGISTER"}
			eff := Figure{Name: "server CPU per 1,000 calls at 200/s", Unit: "CPU s", Reference: kamName,
				Note: "as for REGISTER, over a 200 calls/s probe, per 1,000 completed calls"}
			h.alternate(ctx, &f, &eff, pl, kam, "calls", 200, h.callProbe, h.callRate)
			rep.Figures = append(rep.Figures, f, eff)
		case LoadRelay:
			rate := Figure{Name: "TURN relay, packets received back", Unit: "packets/s", HigherIsBetter: true, Reference: cotName,
				Note: "turnutils_uclient " + strings.Join(cfg.UclientArgs, " ") + " to turnutils_peer; steady receive rate"}
			cpu := Figure{Name: "TURN relay, server CPU per 100,000 packets received back", Unit: "CPU s", HigherIsBetter: false, Reference: cotName,
				Note: "user+system time of the server process over the uclient run (/proc/PID/stat), per 100,000 packets that made the round trip"}
			lossNote := ""
			for round := 0; round < cfg.Rounds; round++ {
				for i, srv := range []Server{plTURN, cot} {
					var r relayResult
					h.profiling = round == 0
					err := h.withServer(ctx, srv, func(ctx context.Context) error {
						stopProf := h.profile(ctx, srv, "relay")
						defer stopProf()
						var err error
						r, err = h.relayLoad(ctx, srv)
						return err
					})
					pps, sec := math.NaN(), math.NaN()
					if err != nil {
						h.logf("  %s relay round %d: %v", srv.Name(), round+1, err)
						rate.Note += fmt.Sprintf("; %s round %d failed: %v", srv.Name(), round+1, err)
					} else {
						pps, sec = r.uclient.Rate, r.cpu.Seconds()*100000/float64(r.uclient.Received)
						if r.uclient.Lost > 0 {
							lossNote += fmt.Sprintf("; %s round %d lost %d of %d", srv.Name(), round+1, r.uclient.Lost, r.uclient.Sent)
						}
					}
					if i == 0 {
						rate.Punchline, cpu.Punchline = append(rate.Punchline, pps), append(cpu.Punchline, sec)
					} else {
						rate.Ref, cpu.Ref = append(rate.Ref, pps), append(cpu.Ref, sec)
					}
				}
			}
			rate.Note += lossNote
			rep.Figures = append(rep.Figures, rate, cpu)
		case LoadMemory:
			regTotal := Figure{Name: fmt.Sprintf("memory with %d registrations", cfg.Users), Unit: "MB", Reference: kamName,
				Note: "proportional set size (Pss, /proc/PID/smaps_rollup) summed over the server's processes"}
			regEach := Figure{Name: "memory per registration", Unit: "bytes", Reference: kamName,
				Note: "(Pss with all registrations − Pss idle) / registrations"}
			h.memFigures(ctx, &regTotal, &regEach, pl, kam, h.memRegistrations)
			allocTotal := Figure{Name: fmt.Sprintf("memory with %d TURN allocations", cfg.Allocations), Unit: "MB", Reference: cotName,
				Note: "allocations held by pion/turn clients, one per user and client socket"}
			allocEach := Figure{Name: "memory per TURN allocation", Unit: "bytes", Reference: cotName,
				Note: "(Pss with all allocations − Pss idle) / allocations"}
			h.memFigures(ctx, &allocTotal, &allocEach, plTURN, cot, h.memAllocations)
			rep.Figures = append(rep.Figures, regTotal, regEach, allocTotal, allocEach)
		}
	}
	if len(cfg.PunchlineArgs)+len(cfg.PunchlineEnv) > 0 {
		rep.Notes = append(rep.Notes, "punchline serve ran with: "+strings.Join(append(append([]string{}, cfg.PunchlineEnv...), cfg.PunchlineArgs...), " "))
	}
	rep.Notes = append(rep.Notes, "load average (1, 5, 15 min) at start: "+loadStart+"; at end: "+loadAvg()+
		" — the machine is shared, which is why rounds alternate and figures are medians")
	rep.Took = time.Since(started)
	return rep, nil
}

// withServer starts srv, runs fn, and stops srv.
func (h *harness) withServer(ctx context.Context, srv Server, fn func(ctx context.Context) error) error {
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop() //nolint:errcheck // stop waits; nothing to report.
	return fn(ctx)
}

// alternate runs a load in rounds: punchline, reference, punchline,
// reference… (each probe on a freshly started server). Each round first
// offers the fixed rate effRate and records the server's CPU time per
// 1,000 completed calls (eff; a figure that does not depend on how much
// CPU the machine's other tenants leave over), then searches the highest
// clean rate (f). A server's later rounds start their search at its
// previous result, which saves the probes far below it.
func (h *harness) alternate(ctx context.Context, f, eff *Figure, pl, ref Server, load string, effRate float64,
	probe func(Server) ProbeFunc, search func(ctx context.Context, srv Server, start float64) (Probe, error)) {
	starts := map[string]float64{}
	for round := 0; round < h.cfg.Rounds; round++ {
		for i, srv := range []Server{pl, ref} {
			e := math.NaN()
			if p, err := probe(srv)(ctx, effRate); err != nil {
				h.logf("  %s %s at %.0f/s round %d: %v", srv.Name(), load, effRate, round+1, err)
				eff.Note += fmt.Sprintf("; %s round %d failed: %v", srv.Name(), round+1, err)
			} else if p.Completed > 0 {
				e = p.ServerCPU.Seconds() * 1000 / float64(p.Completed)
				if !p.Clean {
					eff.Note += fmt.Sprintf("; %s round %d: %s", srv.Name(), round+1, p.Detail)
				}
			}
			v := math.NaN()
			h.profiling = round == 0
			p, err := search(ctx, srv, starts[srv.Name()])
			h.profiling = false
			if err != nil {
				h.logf("  %s %s round %d: %v", srv.Name(), load, round+1, err)
				f.Note += fmt.Sprintf("; %s round %d failed: %v", srv.Name(), round+1, err)
			} else {
				v = p.Achieved
				h.logf("  %s %s round %d: %.0f %s (server CPU %.2f s, load tool CPU %.2f s at that rate)",
					srv.Name(), load, round+1, v, f.Unit, p.ServerCPU.Seconds(), p.LoadCPU.Seconds())
				if v > 0 {
					starts[srv.Name()] = v
				}
			}
			if i == 0 {
				f.Punchline, eff.Punchline = append(f.Punchline, v), append(eff.Punchline, e)
			} else {
				f.Ref, eff.Ref = append(f.Ref, v), append(eff.Ref, e)
			}
		}
	}
}

// memFigures runs a memory load in alternating rounds and fills the total
// (MB) and per-item (bytes) figures.
func (h *harness) memFigures(ctx context.Context, total, each *Figure, pl, ref Server,
	load func(context.Context, Server) (memResult, error)) {
	for round := 0; round < h.cfg.Rounds; round++ {
		for i, srv := range []Server{pl, ref} {
			var m memResult
			err := h.withServer(ctx, srv, func(ctx context.Context) error {
				var err error
				m, err = load(ctx, srv)
				return err
			})
			t, e := math.NaN(), math.NaN()
			switch {
			case err != nil:
				h.logf("  %s memory round %d: %v", srv.Name(), round+1, err)
				total.Note += fmt.Sprintf("; %s round %d failed: %v", srv.Name(), round+1, err)
			case m.count == 0:
				total.Note += fmt.Sprintf("; %s round %d: nothing was held", srv.Name(), round+1)
			default:
				t = float64(m.loaded.PSS) / 1024
				e = float64(m.loaded.PSS-m.idle.PSS) * 1024 / float64(m.count)
				if want := h.cfg.Users; total.Unit == "MB" && strings.Contains(total.Name, "registrations") && m.count != want {
					total.Note += fmt.Sprintf("; %s round %d held %d of %d", srv.Name(), round+1, m.count, want)
				}
			}
			if i == 0 {
				total.Punchline, each.Punchline = append(total.Punchline, t), append(each.Punchline, e)
			} else {
				total.Ref, each.Ref = append(total.Ref, t), append(each.Ref, e)
			}
		}
	}
}

// profile takes a CPU profile of punchline during the first round of a
// load, when enabled, and returns a function that waits for it.
func (h *harness) profile(ctx context.Context, srv Server, load string) func() {
	p, ok := srv.(*Punchline)
	if !ok || !h.profiling || h.cfg.ProfileSeconds <= 0 {
		return func() {}
	}
	out := filepath.Join(h.cfg.WorkDir, "profile-"+load+".pprof")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.HTTPAddr(), h.cfg.ProfileSeconds)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			h.logf("  profile %s: %v", load, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			h.logf("  profile %s: %s (is serve's pprof enabled?)", load, resp.Status)
			return
		}
		f, err := os.Create(out)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err == nil {
			h.logf("  profile %s: %s", load, out)
		}
	}()
	return wg.Wait
}

// prepare writes the injection files and the punchline data template and
// starts turnutils_peer when the relay load runs.
func (h *harness) prepare() error {
	cfg := h.cfg
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return err
	}
	h.users = make([]string, cfg.Users)
	for i := range h.users {
		h.users[i] = fmt.Sprintf("u%05d", i)
	}
	auth := func(u string) string {
		return "[authentication username=" + u + " password=" + cfg.Password + "]"
	}
	var all, callees, calls strings.Builder
	all.WriteString("SEQUENTIAL\n")
	callees.WriteString("SEQUENTIAL\n")
	calls.WriteString("SEQUENTIAL\n")
	for _, u := range h.users {
		fmt.Fprintf(&all, "%s;%s\n", u, auth(u))
	}
	// Callees are the last numCallees users; callers the first 1000, each
	// calling one of the callees in turn.
	calleeNames := h.users[len(h.users)-numCallees:]
	for _, u := range calleeNames {
		fmt.Fprintf(&callees, "%s;%s\n", u, auth(u))
	}
	for i, u := range h.users[:1000] {
		fmt.Fprintf(&calls, "%s;%s;%s\n", u, auth(u), calleeNames[i%numCallees])
	}
	h.usersCSV = filepath.Join(cfg.WorkDir, "users.csv")
	h.calleesCSV = filepath.Join(cfg.WorkDir, "callees.csv")
	h.callsCSV = filepath.Join(cfg.WorkDir, "calls.csv")
	for path, s := range map[string]string{h.usersCSV: all.String(), h.calleesCSV: callees.String(), h.callsCSV: calls.String()} {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			return err
		}
	}
	if err := h.makeTemplate(); err != nil {
		return err
	}
	return nil
}

// makeTemplate creates the bench accounts in a punchline store through
// internal/store, as `punchline user add` would, but in one process:
// 10,000 runs of the CLI would take minutes.
func (h *harness) makeTemplate() error {
	h.template = filepath.Join(h.cfg.WorkDir, "punchline-template")
	t0 := time.Now()
	st, err := store.Open(h.template)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, u := range h.users {
		if err := st.AddUser(u, h.cfg.Realm, h.cfg.Password, true); err != nil {
			return fmt.Errorf("bench user %s: %w", u, err)
		}
	}
	h.logf("created %d punchline accounts in %v", len(h.users), time.Since(t0).Round(time.Millisecond))
	return nil
}

// StartPeer starts turnutils_peer (the UDP echo the relay load sends to)
// on a free loopback port. The caller stops it.
func (h *harness) startPeer() (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	h.peerPort = port
	return startProcess(h.cfg.Peer, []string{"-L", "127.0.0.1", "-p", fmt.Sprint(port)}, nil, h.cfg.WorkDir,
		filepath.Join(h.cfg.WorkDir, "turnutils_peer.log"), "")
}

// toolVersions names the versions of the servers and tools.
func toolVersions(cfg Config) []string {
	first := func(bin string, args ...string) string {
		out, _ := exec.Command(bin, args...).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
		return "unknown"
	}
	return []string{
		"Kamailio: " + strings.TrimPrefix(first(cfg.Kamailio, "-v"), "version: "),
		"coturn: " + first(cfg.Turnserver, "--version"),
		"sipp: " + strings.TrimSpace(strings.TrimPrefix(first(cfg.Sipp, "-v"), "SIPp ")),
	}
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

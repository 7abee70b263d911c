package benchtool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// sippJob is one run of sipp as a load generator (UAC side).
type sippJob struct {
	name     string // for file names
	scenario string
	inf      string
	keys     map[string]string
	rate     float64
	calls    int
	port     int // local port; 0 picks one
	target   string
	extra    []string // more sipp flags
	noPause  bool     // skip the settling pause before the run
}

// runSipp runs a bounded sipp UAC load and returns its statistics. A run
// that outlives calls/rate plus a grace period is killed and counted with
// what it wrote so far.
func (h *harness) runSipp(ctx context.Context, job sippJob) (SippStats, error) {
	h.seq++
	stat := filepath.Join(h.cfg.WorkDir, fmt.Sprintf("sipp-%03d-%s.csv", h.seq, job.name))
	port := job.port
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return SippStats{}, err
		}
	}
	args := []string{
		"-sf", job.scenario, "-inf", job.inf,
		"-r", strconv.FormatFloat(job.rate, 'f', 0, 64), "-rp", "1000",
		"-m", strconv.Itoa(job.calls),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-nostdin", "-trace_stat", "-stf", stat, "-fd", "1",
		"-trace_err", "-error_file", stat + ".errors",
		// A response later than 2.5 s fails the call (after two
		// retransmissions at T1 = 500 ms): a clean probe needs none, and a
		// failing one then ends quickly.
		"-recv_timeout", "2500",
	}
	args = append(args, job.extra...)
	for k, v := range job.keys {
		args = append(args, "-key", k, v)
	}
	args = append(args, job.target)
	if !job.noPause {
		// A moment after start-up (or the previous run) lets the server
		// settle before the measured load begins.
		sleepCtx(ctx, 300*time.Millisecond)
	}
	limit := time.Duration(float64(job.calls)/job.rate*float64(time.Second)) + 15*time.Second
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(rctx, h.cfg.Sipp, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(stat + ".log")
	if err != nil {
		return SippStats{}, err
	}
	defer logf.Close()
	// sipp's screen goes to the log; it ends with the message table,
	// which says which step failed.
	cmd.Stdout, cmd.Stderr = logf, logf
	runErr := cmd.Run()
	f, err := os.Open(stat)
	if err != nil {
		return SippStats{}, fmt.Errorf("sipp %s: no statistics (%v; see %s)", job.name, runErr, logf.Name())
	}
	defer f.Close()
	st, err := ParseSippStats(f)
	if err != nil {
		return st, fmt.Errorf("sipp %s: %w (%v; see %s)", job.name, err, runErr, logf.Name())
	}
	if rctx.Err() != nil && ctx.Err() == nil {
		// Killed at the time limit: whatever had not finished failed.
		st.Failed += st.Created - st.Successful - st.Failed
	}
	if cmd.ProcessState != nil {
		st.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		return st, fmt.Errorf("sipp %s: %w", job.name, runErr)
	}
	return st, nil
}

// freshProbe starts srv, runs one probe against it and stops it. Every
// probe gets a freshly started server: an overloaded probe leaves
// transactions, retransmissions and half-open calls behind (in the server
// and in the sipp UAS), and they must not spill into the next probe.
func (h *harness) freshProbe(ctx context.Context, srv Server, load string, rate float64,
	fn func(ctx context.Context) (Probe, error)) (Probe, error) {
	if err := srv.Start(ctx); err != nil {
		return Probe{}, err
	}
	defer srv.Stop() //nolint:errcheck // stop waits; nothing to report.
	stopProf := h.profile(ctx, srv, fmt.Sprintf("%s-%.0f", load, rate))
	defer stopProf()
	return fn(ctx)
}

// registerProbe offers rate REGISTER/s for ProbeSeconds to a fresh srv.
func (h *harness) registerProbe(srv Server) ProbeFunc {
	return func(ctx context.Context, rate float64) (Probe, error) {
		return h.freshProbe(ctx, srv, "register", rate, func(ctx context.Context) (Probe, error) {
			return h.registerOnce(ctx, srv, rate)
		})
	}
}

// registerOnce offers rate REGISTER/s for ProbeSeconds to a running srv.
func (h *harness) registerOnce(ctx context.Context, srv Server, rate float64) (Probe, error) {
	cpu0, err := CPUTime(srv.PIDs())
	if err != nil {
		return Probe{}, err
	}
	st, err := h.runSipp(ctx, sippJob{
		name: srv.Name() + "-register-" + strconv.Itoa(int(rate)), scenario: h.scenario("register.xml"),
		inf: h.usersCSV, keys: map[string]string{"domain": h.cfg.Realm, "expires": "3600"},
		rate: rate, calls: h.probeCalls(rate), target: srv.Addr(),
	})
	if err != nil {
		return Probe{}, err
	}
	p, err := h.probeResult(srv, rate, st, cpu0)
	h.logf("  %s REGISTER %5.0f/s: clean=%v %s; server CPU %.2f s, sipp CPU %.2f s", srv.Name(), rate, p.Clean, st, p.ServerCPU.Seconds(), p.LoadCPU.Seconds())
	return p, err
}

// probeResult judges a sipp run: clean when every call completed without
// retransmission and sipp kept up with the rate. cpu0 is the server's CPU
// time before the run.
func (h *harness) probeResult(srv Server, rate float64, st SippStats, cpu0 time.Duration) (Probe, error) {
	cpu1, err := CPUTime(srv.PIDs())
	if err != nil {
		return Probe{}, err
	}
	return Probe{
		Achieved: st.CallRate, Clean: st.Clean() && st.CallRate >= 0.9*rate, Detail: st.String(),
		Completed: st.Successful, ServerCPU: cpu1 - cpu0, LoadCPU: st.CPU,
	}, nil
}

// probeCalls is the number of calls for one probe at rate: ProbeSeconds
// worth, and at least 300 so a slow rate still sees a few hundred.
func (h *harness) probeCalls(rate float64) int {
	return max(300, int(rate*h.cfg.ProbeSeconds))
}

// registerRate runs load 1: the highest clean REGISTER rate.
func (h *harness) registerRate(ctx context.Context, srv Server, start float64) (Probe, error) {
	best, _, err := SearchRate(ctx, SearchConfig{Start: start, Max: h.cfg.MaxRate, Confirm: true}, h.registerProbe(srv))
	return best, err
}

// callProbe offers rate calls/s for ProbeSeconds to a fresh srv.
func (h *harness) callProbe(srv Server) ProbeFunc {
	return func(ctx context.Context, rate float64) (Probe, error) {
		return h.freshProbe(ctx, srv, "calls", rate, func(ctx context.Context) (Probe, error) {
			return h.callsOnce(ctx, srv, rate)
		})
	}
}

// callRate runs load 2: the highest clean call rate.
func (h *harness) callRate(ctx context.Context, srv Server, start float64) (Probe, error) {
	best, _, err := SearchRate(ctx, SearchConfig{Start: start, Max: h.cfg.MaxRate, Min: 50, Confirm: true}, h.callProbe(srv))
	return best, err
}

// callsOnce runs one call probe against a running srv: the callees
// register from the sipp UAS's own port (so both proxies reach them at the
// address they registered from), the UAS answers, and the caller offers
// rate calls/s.
func (h *harness) callsOnce(ctx context.Context, srv Server, rate float64) (Probe, error) {
	uasPort, err := freePort()
	if err != nil {
		return Probe{}, err
	}
	st, err := h.runSipp(ctx, sippJob{
		name: srv.Name() + "-callees", scenario: h.scenario("register.xml"), inf: h.calleesCSV,
		keys: map[string]string{"domain": h.cfg.Realm, "expires": "3600"},
		rate: 500, calls: numCallees, port: uasPort, target: srv.Addr(), noPause: true,
	})
	if err != nil {
		return Probe{}, err
	}
	if st.Successful != numCallees {
		return Probe{}, fmt.Errorf("registering %d callees at the sipp UAS: %s", numCallees, st)
	}
	uas, err := startProcess(h.cfg.Sipp, []string{
		"-sf", h.scenario("call_uas.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort),
		"-nostdin", "-recv_timeout", "10000",
	}, nil, h.cfg.WorkDir, filepath.Join(h.cfg.WorkDir, fmt.Sprintf("sipp-uas-%s-%d.log", srv.Name(), uasPort)), "")
	if err != nil {
		return Probe{}, err
	}
	defer uas.stop(2 * time.Second) //nolint:errcheck // the UAS runs until told to stop.
	// The UAS binds its port at once; a short pause covers its start-up.
	sleepCtx(ctx, 200*time.Millisecond)
	cpu0, err := CPUTime(srv.PIDs())
	if err != nil {
		return Probe{}, err
	}
	st, err = h.runSipp(ctx, sippJob{
		name: srv.Name() + "-calls-" + strconv.Itoa(int(rate)), scenario: h.scenario("call_uac.xml"),
		inf: h.callsCSV, keys: map[string]string{"domain": h.cfg.Realm},
		rate: rate, calls: h.probeCalls(rate), target: srv.Addr(),
		// UDP lets a proxy with parallel workers deliver the callee's
		// 180 after its 200 (Kamailio does); see call_uac.xml.
		extra: []string{"-default_behaviors", "all,-abortunexp"},
	})
	if err != nil {
		return Probe{}, err
	}
	if uas.exited() {
		return Probe{}, fmt.Errorf("sipp UAS exited (see %s)", uas.log.Name())
	}
	p, err := h.probeResult(srv, rate, st, cpu0)
	h.logf("  %s calls %5.0f/s: clean=%v %s; server CPU %.2f s, sipp CPU %.2f s", srv.Name(), rate, p.Clean, st, p.ServerCPU.Seconds(), p.LoadCPU.Seconds())
	return p, err
}

// relayResult is load 3's outcome for one run.
type relayResult struct {
	uclient UclientResult
	cpu     time.Duration
}

// relayLoad runs turnutils_uclient against a started TURN server and
// measures the server's CPU time over the run.
func (h *harness) relayLoad(ctx context.Context, srv Server) (relayResult, error) {
	host, port, _ := net.SplitHostPort(srv.Addr())
	args := append([]string{
		"-u", h.users[0], "-w", h.cfg.Password,
		"-e", "127.0.0.1", "-r", strconv.Itoa(h.peerPort), "-p", port,
	}, h.cfg.UclientArgs...)
	args = append(args, host)
	cpu0, err := CPUTime(srv.PIDs())
	if err != nil {
		return relayResult{}, err
	}
	expected := uclientPackets(h.cfg.UclientArgs)
	lines, err := runTimed(ctx, h.cfg.Uclient, args, 90*time.Second,
		filepath.Join(h.cfg.WorkDir, fmt.Sprintf("uclient-%s-%d.log", srv.Name(), h.nextSeq())),
		func(lines []TimedLine) bool { return expected > 0 && UclientSettled(lines, expected) })
	if err != nil {
		return relayResult{}, err
	}
	cpu1, err := CPUTime(srv.PIDs())
	if err != nil {
		return relayResult{}, err
	}
	res, err := ParseUclient(lines)
	if err != nil {
		return relayResult{}, err
	}
	r := relayResult{uclient: res, cpu: cpu1 - cpu0}
	h.logf("  %s relay: sent %d received %d lost %d, %.0f packets/s back, server CPU %.2f s",
		srv.Name(), res.Sent, res.Received, res.Lost, res.Rate, r.cpu.Seconds())
	return r, nil
}

// uclientPackets is sessions × messages from uclient's -m and -n flags
// (defaults 1 and 5), or 0 if they cannot be read.
func uclientPackets(args []string) int {
	m, n := 1, 5
	for i := 0; i+1 < len(args); i++ {
		v, err := strconv.Atoi(args[i+1])
		switch args[i] {
		case "-m":
			if err != nil {
				return 0
			}
			m = v
		case "-n":
			if err != nil {
				return 0
			}
			n = v
		}
	}
	return m * n
}

// runTimed runs a tool and returns its output lines stamped with the time
// they were read; the output is also written to logPath. When done (may be
// nil) reports true for the lines so far, the tool is stopped and the run
// counts as complete.
func runTimed(ctx context.Context, bin string, args []string, limit time.Duration, logPath string,
	done func([]TimedLine) bool) ([]TimedLine, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var (
		lines   []TimedLine
		wg      sync.WaitGroup
		stopped bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines = append(lines, TimedLine{At: time.Now(), Text: sc.Text()})
			fmt.Fprintln(logf, sc.Text())
			if !stopped && done != nil && done(lines) {
				stopped = true
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // our own child's group.
			}
		}
		io.Copy(io.Discard, pr) //nolint:errcheck // draining only.
	}()
	runErr := cmd.Wait()
	pw.Close()
	wg.Wait()
	if stopped {
		fmt.Fprintln(logf, "# stopped by the harness: all packets sent, nothing more arriving")
		return lines, nil
	}
	if ctx.Err() != nil {
		return lines, fmt.Errorf("%s: killed after %v (see %s)", filepath.Base(bin), limit, logPath)
	}
	if runErr != nil {
		return lines, fmt.Errorf("%s: %w (see %s)", filepath.Base(bin), runErr, logPath)
	}
	return lines, nil
}

// memResult is load 4's outcome for one run.
type memResult struct {
	idle, loaded Memory
	count        int // registrations or allocations that succeeded
}

// settle gives the server a moment after a load (punchline flushes its
// store every 500 ms) before memory is read.
const settle = 1500 * time.Millisecond

// memRegistrations registers every bench user once and reads the server's
// memory before and after.
func (h *harness) memRegistrations(ctx context.Context, srv Server) (memResult, error) {
	sleepCtx(ctx, settle)
	idle, err := MemoryOf(srv.PIDs())
	if err != nil {
		return memResult{}, err
	}
	// On a busy machine a pass may lose some REGISTERs; registering
	// everyone again (a refresh for those already bound) at half the
	// rate fills the gaps. Three passes at most.
	count, rate := 0, h.cfg.MemRegisterRate
	var st SippStats
	for pass := 1; pass <= 3; pass++ {
		st, err = h.runSipp(ctx, sippJob{
			name: fmt.Sprintf("%s-mem-register-%d", srv.Name(), pass), scenario: h.scenario("register.xml"), inf: h.usersCSV,
			keys: map[string]string{"domain": h.cfg.Realm, "expires": "3600"},
			rate: rate, calls: len(h.users), target: srv.Addr(),
		})
		if err != nil {
			return memResult{}, err
		}
		count = max(count, st.Successful)
		if st.Successful == len(h.users) {
			break
		}
		rate /= 2
	}
	sleepCtx(ctx, settle)
	loaded, err := MemoryOf(srv.PIDs())
	if err != nil {
		return memResult{}, err
	}
	h.logf("  %s memory: %d registrations (last pass %s), PSS %d → %d kB, RSS %d → %d kB",
		srv.Name(), count, st, idle.PSS, loaded.PSS, idle.RSS, loaded.RSS)
	return memResult{idle: idle, loaded: loaded, count: count}, nil
}

// memAllocations holds Allocations TURN allocations (one per bench user,
// each from its own client socket) with pion/turn's client and reads the
// server's memory before and while they are held.
func (h *harness) memAllocations(ctx context.Context, srv Server) (memResult, error) {
	sleepCtx(ctx, settle)
	idle, err := MemoryOf(srv.PIDs())
	if err != nil {
		return memResult{}, err
	}
	held, err := holdAllocations(ctx, srv.Addr(), h.users[:h.cfg.Allocations], h.cfg.Password, h.cfg.Realm)
	defer held.close()
	if err != nil {
		return memResult{}, err
	}
	sleepCtx(ctx, settle)
	loaded, err := MemoryOf(srv.PIDs())
	if err != nil {
		return memResult{}, err
	}
	h.logf("  %s memory: %d allocations held (%d failed: %v), PSS %d → %d kB, RSS %d → %d kB",
		srv.Name(), held.ok(), held.failed, held.firstErr, idle.PSS, loaded.PSS, idle.RSS, loaded.RSS)
	return memResult{idle: idle, loaded: loaded, count: held.ok()}, nil
}

// heldAllocations are live TURN allocations made by holdAllocations.
type heldAllocations struct {
	mu       sync.Mutex
	clients  []*turn.Client
	relays   []net.PacketConn
	conns    []net.PacketConn
	failed   int
	firstErr error
}

func (a *heldAllocations) ok() int { return len(a.relays) }

// close releases every allocation (a Refresh with lifetime 0 each, in
// parallel) and closes the client sockets.
func (a *heldAllocations) close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, r := range a.relays {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.Close()
		}()
	}
	wg.Wait()
	for _, c := range a.clients {
		c.Close()
	}
	for _, c := range a.conns {
		c.Close()
	}
	a.relays, a.clients, a.conns = nil, nil, nil
}

// holdAllocations allocates one relay per user, 16 at a time.
func holdAllocations(ctx context.Context, server string, users []string, password, realm string) (*heldAllocations, error) {
	held := &heldAllocations{}
	logs := &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	var wg sync.WaitGroup
	work := make(chan string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for user := range work {
				conn, client, relay, err := allocate(ctx, server, user, password, realm, logs)
				held.mu.Lock()
				if err != nil {
					held.failed++
					if held.firstErr == nil {
						held.firstErr = fmt.Errorf("allocate as %s: %w", user, err)
					}
				} else {
					held.conns = append(held.conns, conn)
					held.clients = append(held.clients, client)
					held.relays = append(held.relays, relay)
				}
				held.mu.Unlock()
			}
		}()
	}
	for _, u := range users {
		select {
		case work <- u:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return held, ctx.Err()
	}
	if held.ok() == 0 {
		return held, held.firstErr
	}
	return held, nil
}

func allocate(ctx context.Context, server, user, password, realm string, logs logging.LoggerFactory) (net.PacketConn, *turn.Client, net.PacketConn, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: password, Realm: realm, LoggerFactory: logs,
	})
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	if err := client.Listen(); err != nil {
		client.Close()
		conn.Close()
		return nil, nil, nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	relay, err := client.AllocateWithContext(actx)
	if err != nil {
		client.Close()
		conn.Close()
		return nil, nil, nil, err
	}
	return conn, client, relay, nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// Server is one server under test: punchline, Kamailio or coturn.
type Server interface {
	// Name is how the report calls it.
	Name() string
	// Start launches the server in a fresh state and waits until it
	// answers on Addr.
	Start(ctx context.Context) error
	// Addr is host:port of its UDP listener (SIP or TURN).
	Addr() string
	// PIDs are the processes whose CPU time and memory count: the server
	// process and, for Kamailio, its worker processes.
	PIDs() []int
	// Stop ends the server and waits for it. It is safe to call twice.
	Stop() error
}

// startTimeout bounds how long a server may take to answer after start.
const startTimeout = 20 * time.Second

// process is a child process the harness started, in its own process
// group so that stopping it also stops the workers it forked.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
	// ready is closed when a stderr/stdout line contains readyMark.
	ready     chan struct{}
	readyOnce sync.Once
	pipes     sync.WaitGroup
	stopOnce  sync.Once
}

// startProcess runs bin with args, writing its output to logPath. When
// readyMark is not empty, the process' ready channel is closed on the
// first output line containing it.
func startProcess(bin string, args, env []string, dir, logPath, readyMark string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{}), ready: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	fmt.Fprintf(logf, "# %s %s\n", bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	var mu sync.Mutex // serialises writes to logf from both pipes
	copyLines := func(r io.Reader) {
		defer p.pipes.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			fmt.Fprintln(logf, line)
			mu.Unlock()
			if readyMark != "" && strings.Contains(line, readyMark) {
				p.readyOnce.Do(func() { close(p.ready) })
			}
		}
		// Keep draining so the child never blocks on a full pipe.
		io.Copy(io.Discard, r) //nolint:errcheck // draining only.
	}
	p.pipes.Add(2)
	go copyLines(stdout)
	go copyLines(stderr)
	go func() {
		p.pipes.Wait()
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then
// SIGKILLs the group, and waits for the process.
func (p *process) stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM) //nolint:errcheck // may already be gone.
		select {
		case <-p.done:
		case <-time.After(grace):
			syscall.Kill(-pgid, syscall.SIGKILL) //nolint:errcheck // may already be gone.
			<-p.done
		}
		// Workers of a forking server may outlive the leader briefly.
		syscall.Kill(-pgid, syscall.SIGKILL) //nolint:errcheck // usually gone.
	})
	return nil
}

// freePort returns a loopback UDP port that was free a moment ago (also
// free for TCP, for servers that open both).
func freePort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port")
}

// waitSIP sends OPTIONS to addr until any SIP response comes back.
func waitSIP(ctx context.Context, p *process, addr string) error {
	return waitUDP(ctx, p, addr, func(i int, local string) []byte {
		callID := fmt.Sprintf("bench-ready-%d-%d", os.Getpid(), i)
		return []byte("OPTIONS sip:ping@" + addr + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + callID + ";rport\r\n" +
			"From: <sip:bench@127.0.0.1>;tag=" + callID + "\r\n" +
			"To: <sip:ping@" + addr + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	}, func(b []byte) bool { return strings.HasPrefix(string(b), "SIP/2.0 ") })
}

// waitSTUN sends STUN binding requests to addr until one is answered.
func waitSTUN(ctx context.Context, p *process, addr string) error {
	return waitUDP(ctx, p, addr, func(int, string) []byte {
		return stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw
	}, func(b []byte) bool {
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		return m.Decode() == nil && m.Type == stun.BindingSuccess
	})
}

func waitUDP(ctx context.Context, p *process, addr string, req func(i int, local string) []byte, ok func([]byte) bool) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	dst, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		if p.exited() {
			return fmt.Errorf("%w: exited before answering on %s (see %s)", ErrNotReady, addr, p.log.Name())
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: no answer on %s within %v (see %s)", ErrNotReady, addr, startTimeout, p.log.Name())
		}
		if _, err := pc.WriteTo(req(i, pc.LocalAddr().String()), dst); err != nil {
			return err
		}
		pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond)) //nolint:errcheck // loopback socket.
		n, _, err := pc.ReadFrom(buf)
		if err == nil && ok(buf[:n]) {
			return nil
		}
	}
}

// Punchline runs the real punchline binary: `punchline serve`.
type Punchline struct {
	// Bin is the punchline binary bench/compare built.
	Bin string
	// Template is a data directory holding the bench users; every start
	// copies it, so each run begins with no registrations.
	Template string
	// Dir is where data directories and logs go.
	Dir string
	// Realm is the SIP/TURN realm the users were created with.
	Realm string
	// TURN selects the relay instead of the SIP server.
	TURN bool
	// ExtraArgs are appended to serve's flags (e.g. --pprof).
	ExtraArgs []string
	// Env is added to serve's environment (PUNCHLINE_SIP_RATE_LIMIT=off).
	Env []string

	port, httpPort int
	proc           *process
	runs           int
}

// Name implements Server.
func (s *Punchline) Name() string { return "punchline" }

// Addr implements Server.
func (s *Punchline) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// HTTPAddr is the /metrics (and /debug/pprof, when enabled) listener.
func (s *Punchline) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.httpPort) }

// PIDs implements Server.
func (s *Punchline) PIDs() []int { return []int{s.proc.pid()} }

// Start implements Server.
func (s *Punchline) Start(ctx context.Context) error {
	s.runs++
	kind := "sip"
	if s.TURN {
		kind = "turn"
	}
	data := filepath.Join(s.Dir, fmt.Sprintf("punchline-%s-%d", kind, s.runs))
	if err := copyDir(s.Template, data); err != nil {
		return fmt.Errorf("punchline data: %w", err)
	}
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	if s.httpPort, err = freePort(); err != nil {
		return err
	}
	listen := "udp:" + s.Addr()
	args := []string{"serve", "--data", data, "--realm", s.Realm, "--http", s.HTTPAddr(), "--log-level", "warn"}
	if s.TURN {
		args = append(args, "--sip", "", "--turn", listen, "--turn-allow-peer", "127.0.0.0/8")
	} else {
		args = append(args, "--turn", "", "--sip", listen)
	}
	args = append(args, s.ExtraArgs...)
	s.proc, err = startProcess(s.Bin, args, s.Env, s.Dir, data+".log", "punchline ready:")
	if err != nil {
		return err
	}
	select {
	case <-s.proc.ready:
	case <-s.proc.done:
		return fmt.Errorf("%w: punchline serve exited: %v (see %s)", ErrNotReady, s.proc.err, s.proc.log.Name())
	case <-time.After(startTimeout):
		s.proc.stop(time.Second) //nolint:errcheck // failing anyway.
		return fmt.Errorf("%w: punchline serve printed no readiness line (see %s)", ErrNotReady, s.proc.log.Name())
	}
	if s.TURN {
		err = waitSTUN(ctx, s.proc, s.Addr())
	} else {
		err = waitSIP(ctx, s.proc, s.Addr())
	}
	if err != nil {
		s.proc.stop(time.Second) //nolint:errcheck // failing anyway.
	}
	return err
}

// Stop implements Server. SIGTERM lets serve flush its store.
func (s *Punchline) Stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(5 * time.Second)
}

// Kamailio runs Kamailio in the foreground with bench/kamailio/kamailio.cfg.
type Kamailio struct {
	// Bin is the kamailio binary.
	Bin string
	// Config is bench/kamailio/kamailio.cfg.
	Config string
	// Dir is where its runtime directory and log go.
	Dir string
	// Realm and Password are the digest realm and the one password of
	// every bench user.
	Realm, Password string
	// Children is the number of UDP worker processes. Zero: the cfg's.
	Children int
	// SHMMegabytes is the shared memory pool. Zero: 1024; tm keeps every
	// finished transaction for its wait timer, so a few thousand calls per
	// second need hundreds of megabytes (64, the default, runs out).
	SHMMegabytes int

	port int
	proc *process
	runs int
}

// Name implements Server.
func (s *Kamailio) Name() string { return "kamailio" }

// Addr implements Server.
func (s *Kamailio) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// PIDs implements Server: the main process and its workers.
func (s *Kamailio) PIDs() []int { return processTree(s.proc.pid()) }

// Start implements Server.
func (s *Kamailio) Start(ctx context.Context) error {
	s.runs++
	run := filepath.Join(s.Dir, fmt.Sprintf("kamailio-%d", s.runs))
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	shm := s.SHMMegabytes
	if shm == 0 {
		shm = 1024
	}
	args := []string{
		"-f", s.Config, "-DD", "-E",
		"-m", strconv.Itoa(shm), "-M", "16",
		"-l", "udp:" + s.Addr(),
		"-P", filepath.Join(run, "kamailio.pid"),
		"-Y", run, "-w", run,
		"-A", `BENCH_PASSWORD="` + s.Password + `"`,
		"-A", `BENCH_REALM="` + s.Realm + `"`,
	}
	if s.Children > 0 {
		args = append(args, "-n", strconv.Itoa(s.Children))
	}
	s.proc, err = startProcess(s.Bin, args, nil, run, run+".log", "")
	if err != nil {
		return err
	}
	if err := waitSIP(ctx, s.proc, s.Addr()); err != nil {
		s.proc.stop(time.Second) //nolint:errcheck // failing anyway.
		return err
	}
	return nil
}

// Stop implements Server.
func (s *Kamailio) Stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(5 * time.Second)
}

// Coturn runs coturn's turnserver with a generated configuration:
// long-term credentials for the bench users, loopback peers allowed.
type Coturn struct {
	// Bin is the turnserver binary.
	Bin string
	// Template is bench/coturn/turnserver.conf; the harness appends the
	// per-run settings (ports, paths, users).
	Template string
	// Dir is where the configuration, database and log go.
	Dir string
	// Realm and Password as for Kamailio; Users are the account names.
	Realm, Password string
	Users           []string

	port int
	proc *process
	runs int
}

// Name implements Server.
func (s *Coturn) Name() string { return "coturn" }

// Addr implements Server.
func (s *Coturn) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// PIDs implements Server.
func (s *Coturn) PIDs() []int { return []int{s.proc.pid()} }

// Start implements Server.
func (s *Coturn) Start(ctx context.Context) error {
	s.runs++
	run := filepath.Join(s.Dir, fmt.Sprintf("coturn-%d", s.runs))
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	tmpl, err := os.ReadFile(s.Template)
	if err != nil {
		return fmt.Errorf("coturn template: %w", err)
	}
	var b strings.Builder
	b.Write(tmpl)
	fmt.Fprintf(&b, "\n# Per-run settings written by bench/compare.\n")
	fmt.Fprintf(&b, "listening-ip=127.0.0.1\nlistening-port=%d\nrelay-ip=127.0.0.1\n", s.port)
	fmt.Fprintf(&b, "realm=%s\n", s.Realm)
	fmt.Fprintf(&b, "userdb=%s\n", filepath.Join(run, "turndb"))
	fmt.Fprintf(&b, "pidfile=%s\n", filepath.Join(run, "turnserver.pid"))
	for _, u := range s.Users {
		fmt.Fprintf(&b, "user=%s:%s\n", u, s.Password)
	}
	conf := filepath.Join(run, "turnserver.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return err
	}
	s.proc, err = startProcess(s.Bin, []string{"-c", conf}, nil, run, run+".log", "")
	if err != nil {
		return err
	}
	if err := waitSTUN(ctx, s.proc, s.Addr()); err != nil {
		s.proc.stop(time.Second) //nolint:errcheck // failing anyway.
		return err
	}
	return nil
}

// Stop implements Server.
func (s *Coturn) Stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(5 * time.Second)
}

// copyDir copies the regular files of src into a new directory dst.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Ports punchline serve listens on inside the lab.
const (
	SIPPort     = 5060
	TURNPort    = 3478
	MetricsPort = 8088
)

// BuildPunchline compiles the punchline command into dir and returns the
// binary's path. It must run from inside the module (tests do).
func BuildPunchline(ctx context.Context, dir string) (string, error) {
	return goBuild(ctx, dir, "punchline", "github.com/punchline/punchline/cmd/punchline")
}

// BuildProbe compiles natprobe into dir and returns its path, for
// Config.Probe in tests outside this package.
func BuildProbe(ctx context.Context, dir string) (string, error) {
	return goBuild(ctx, dir, "natprobe", "github.com/punchline/punchline/internal/lab/cmd/natprobe")
}

func goBuild(ctx context.Context, dir, name, pkg string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, b)
	}
	return out, nil
}

// ServerConfig says how to run punchline serve in the lab.
type ServerConfig struct {
	// Binary is the punchline executable (see BuildPunchline). Required.
	Binary string
	// DataDir holds the server's store. Required; use a fresh directory.
	DataDir string
	// Users maps account names to passwords; they are added before the
	// server starts.
	Users map[string]string
	// Realm is the SIP and TURN realm. Empty means punchline's default.
	Realm string
	// Metrics enables serve's HTTP listener (/metrics) on the server
	// address, port MetricsPort; see Server.Metric.
	Metrics bool
	// NoRelay runs serve without its STUN/TURN service (SIP only), e.g.
	// when a third-party relay is under test.
	NoRelay bool
	// Args are extra serve flags.
	Args []string
}

// Server is punchline serve running on the lab's public segment.
type Server struct {
	*Process
	// SIP is the SIP endpoint (UDP and TCP).
	SIP netip.AddrPort
	// TURN is the STUN/TURN endpoint (UDP and TCP).
	TURN netip.AddrPort
	// HTTP is the /metrics endpoint when ServerConfig.Metrics is set.
	HTTP netip.AddrPort

	lab *Lab
}

// serverReady is the prefix of the line serve prints once it listens.
const serverReady = "punchline ready"

// StartServer adds the users and starts punchline serve in the public
// namespace on the server address, SIP and TURN on UDP and TCP, and waits
// for its readiness line. The lab stops it on Close.
func (l *Lab) StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Binary == "" || cfg.DataDir == "" {
		return nil, errors.New("start server: Binary and DataDir are required")
	}
	realm := []string{}
	if cfg.Realm != "" {
		realm = []string{"--realm", cfg.Realm}
	}
	names := make([]string, 0, len(cfg.Users))
	for n := range cfg.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		args := append([]string{cfg.Binary, "user", "add", n, "--password", cfg.Users[n], "--data", cfg.DataDir}, realm...)
		if _, err := l.Run(ctx, l.Public, args...); err != nil {
			return nil, err
		}
	}
	s := &Server{
		SIP:  netip.AddrPortFrom(serverAddr, SIPPort),
		TURN: netip.AddrPortFrom(serverAddr, TURNPort),
		lab:  l,
	}
	httpAddr := ""
	if cfg.Metrics {
		s.HTTP = netip.AddrPortFrom(serverAddr, MetricsPort)
		httpAddr = s.HTTP.String()
	}
	args := []string{cfg.Binary, "serve", "--data", cfg.DataDir,
		"--sip", fmt.Sprintf("udp:%s,tcp:%s", s.SIP, s.SIP),
		"--turn", fmt.Sprintf("udp:%s,tcp:%s", s.TURN, s.TURN),
		"--http", httpAddr}
	if cfg.NoRelay {
		args[len(args)-3] = "" // the --turn value
		s.TURN = netip.AddrPort{}
	}
	args = append(append(args, realm...), cfg.Args...)
	p, err := l.Start(ctx, l.Public, "punchline serve", args...)
	if err != nil {
		return nil, err
	}
	s.Process = p
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.WaitOutput(wctx, serverReady); err != nil {
		return nil, err
	}
	return s, nil
}

// Metric sums every sample of a counter or gauge family on serve's
// /metrics page (all label values), fetched from inside the public
// namespace. It needs ServerConfig.Metrics.
func (s *Server) Metric(ctx context.Context, name string) (float64, error) {
	if !s.HTTP.IsValid() {
		return 0, errors.New("server metrics: started without ServerConfig.Metrics")
	}
	if len(s.lab.cfg.Probe) == 0 {
		return 0, ErrNoProbe
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	page, err := s.lab.Run(ctx, s.lab.Public, append(append([]string{}, s.lab.cfg.Probe...),
		"get", "-url", "http://"+s.HTTP.String()+"/metrics")...)
	if err != nil {
		return 0, err
	}
	return sumMetric(page, name)
}

// sumMetric adds up the samples of one family in Prometheus text format.
func sumMetric(page, name string) (float64, error) {
	var sum float64
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // a longer name with this prefix
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			return 0, fmt.Errorf("metric line %q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// Tail returns the last n lines of a process's output, for failure messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

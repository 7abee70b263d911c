package sip

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/punchline/punchline/internal/store"
)

// testServer is an in-process Server on loopback with free ports.
type testServer struct {
	*Server
	store *store.Store
	dir   string
	reg   *prometheus.Registry
	udp   string // host:port
	tcp   string
}

// users maps name to password.
func startServer(t testing.TB, users map[string]string, tweak func(*Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for u, p := range users {
		if err := st.AddUser(u, "punchline", p, false); err != nil {
			t.Fatal(err)
		}
	}
	return startServerOn(t, st, dir, tweak)
}

func startServerOn(t testing.TB, st *store.Store, dir string, tweak func(*Config)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Realm:   "punchline",
		Store:   st,
		Metrics: reg,
		Listeners: []Listener{
			{Transport: "udp", Addr: "127.0.0.1:0"},
			{Transport: "tcp", Addr: "127.0.0.1:0"},
		},
	}
	if testing.Verbose() && os.Getenv("SIP_TEST_LOG") != "" {
		cfg.Logger = testLogger(t)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, store: st, dir: dir, reg: reg}
	for _, b := range srv.Addrs() {
		switch b.Transport {
		case "udp":
			ts.udp = b.Addr.String()
		case "tcp":
			ts.tcp = b.Addr.String()
		}
	}
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return ts
}

// needTool skips (or, in the lab CI, fails) when an external tool is
// missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatalf("%s not installed but PUNCHLINE_LAB is set: install it (Debian package sip-tester for sipp)", name)
		}
		t.Skipf("%s not installed (Debian package sip-tester); skipping", name)
	}
	return p
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago
// (for tools that take a port number rather than a socket).
func freeUDPPort(t testing.TB) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		// sipp also opens the TCP port of the same number for some modes;
		// make sure both are free.
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func scenario(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "testdata", "sipp", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sippResult is the outcome of one sipp run.
type sippResult struct {
	code int
	out  string
}

// runSipp runs sipp to completion (bounded by timeout) in a scratch
// directory and returns its exit code and output.
func runSipp(t testing.TB, timeout time.Duration, args ...string) sippResult {
	t.Helper()
	sipp := needTool(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return runSippCtx(ctx, t, sipp, args...)
}

func runSippCtx(ctx context.Context, t testing.TB, sipp string, args ...string) sippResult {
	cmd := exec.CommandContext(ctx, sipp, append([]string{"-nostdin", "-trace_err", "-trace_msg"}, args...)...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	res := sippResult{out: string(out)}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			res.code = ee.ExitCode()
		} else {
			res.code = -1
		}
	}
	if res.code != 0 {
		// Keep the error and message traces for the failure report.
		if ents, err := os.ReadDir(cmd.Dir); err == nil {
			for _, e := range ents {
				if b, err := os.ReadFile(filepath.Join(cmd.Dir, e.Name())); err == nil {
					res.out += "\n--- " + e.Name() + " ---\n" + tail(string(b), 6000)
				}
			}
		}
	}
	return res
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// writeCSV writes a sipp injection file of name;password lines.
func writeCSV(t testing.TB, rows [][2]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, r := range rows {
		b.WriteString(r[0] + ";[authentication username=" + r[0] + " password=" + r[1] + "]\n")
	}
	p := filepath.Join(t.TempDir(), "users.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func portFree(port int) bool {
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// Package labtest lets tests in any package run the kernel NAT lab
// (internal/lab) with one call: skip or fail when it cannot run, build the
// tools, tear everything down with the test.
//
//	func TestMain(m *testing.M) { os.Exit(labtest.Main(m)) }
//
//	func TestRoomAcrossNATs(t *testing.T) {
//		l := labtest.New(t, lab.Config{LANs: []lab.LANConfig{{NAT: lab.Symmetric}, {NAT: lab.FullCone}}})
//		if err := l.VerifyAll(ctx); err != nil { t.Fatal(err) }
//		srv, err := l.StartServer(ctx, lab.ServerConfig{Binary: labtest.Punchline(t), DataDir: t.TempDir(), Users: users})
//		p, err := l.Start(ctx, l.LANs[0].Hosts[0], "carol", labtest.Punchline(t), "phone", ...)
//	}
package labtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/lab"
)

// Main runs the tests of a package that uses the lab: it first deletes
// namespaces an interrupted earlier run left behind, tears every lab down
// on SIGINT/SIGTERM, and removes the built tools at the end.
func Main(m *testing.M) int {
	if lab.Available() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if _, err := lab.Sweep(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "labtest: sweeping stale namespaces: %v\n", err)
		}
		cancel()
		sweepToolDirs()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	stopped := make(chan struct{})
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "labtest: %v: tearing down labs\n", s)
			lab.CloseAll()
			os.Exit(130)
		case <-stopped:
		}
	}()
	defer func() {
		signal.Stop(sigs)
		close(stopped)
		<-handled
		lab.CloseAll()
		tools.cleanup()
	}()
	return m.Run()
}

// Require skips the test when the lab cannot run here, and fails it when
// PUNCHLINE_LAB is set (CI), where a skip would hide a missing lab.
func Require(t testing.TB) {
	t.Helper()
	if err := lab.Available(); err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatalf("PUNCHLINE_LAB is set but %v", err)
		}
		t.Skipf("kernel NAT lab skipped: %v (run as root with ip and nft; PUNCHLINE_LAB=1 makes this a failure)", err)
	}
}

// New builds a lab with natprobe configured and closes it when the test
// ends, passed, failed or panicked.
func New(t testing.TB, cfg lab.Config) *lab.Lab {
	t.Helper()
	Require(t)
	if len(cfg.Probe) == 0 {
		cfg.Probe = []string{tools.get(t, "natprobe", lab.BuildProbe)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab teardown: %v", err)
		}
	})
	return l
}

// Punchline returns the path of the punchline binary, built once per test
// process.
func Punchline(t testing.TB) string {
	t.Helper()
	return tools.get(t, "punchline", lab.BuildPunchline)
}

// tools builds each binary once per process into one directory.
var tools toolCache

type toolCache struct {
	mu    sync.Mutex // guards dir and built
	dir   string
	built map[string]string
}

func (c *toolCache) get(t testing.TB, name string, build func(context.Context, string) (string, error)) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.built[name]; ok {
		return p
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", toolDirPrefix, os.Getpid()))
		if err != nil {
			t.Fatal(err)
		}
		c.dir, c.built = d, map[string]string{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := build(ctx, c.dir)
	if err != nil {
		t.Fatal(err)
	}
	c.built[name] = p
	return p
}

func (c *toolCache) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir, c.built = "", nil
	}
}

// toolDirPrefix starts the directory the tools are built in; the pid
// follows, so a killed run's directory can be told from a live one's.
const toolDirPrefix = "punchline-labtest-"

// sweepToolDirs removes tool directories of test processes that are gone.
func sweepToolDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), toolDirPrefix+"*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), toolDirPrefix+"%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		os.RemoveAll(d)
	}
}

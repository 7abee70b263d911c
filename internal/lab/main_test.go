package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as natprobe: the lab runs this very
// binary inside its namespaces, so the tests need no separate build.
const helperEnv = "PUNCHLINE_LAB_NATPROBE"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(ProbeMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if Available() == nil {
		// What an interrupted earlier run left behind goes first.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if gone, err := Sweep(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "lab: sweeping stale namespaces: %v\n", err)
		} else if len(gone) > 0 {
			fmt.Fprintf(os.Stderr, "lab: deleted %d stale namespaces of an interrupted run\n", len(gone))
		}
		cancel()
		sweepBuildDirs()
	}
	// An interrupt must not leave namespaces behind: tear every lab down,
	// then exit as the signal would have.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	stopped := make(chan struct{})
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "lab: %v: tearing down labs\n", s)
			CloseAll()
			os.Exit(130)
		case <-stopped:
		}
	}()
	defer func() {
		signal.Stop(sigs)
		close(stopped)
		<-handled
	}()
	defer CloseAll()
	defer func() {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}()
	return m.Run()
}

// requireLab skips a test that needs the kernel lab when it cannot run here,
// and fails it instead when PUNCHLINE_LAB is set (CI).
func requireLab(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("PUNCHLINE_LAB") != "" {
			t.Fatalf("PUNCHLINE_LAB is set but %v", err)
		}
		t.Skipf("kernel NAT lab skipped: %v (run as root with ip and nft; PUNCHLINE_LAB=1 makes this a failure)", err)
	}
}

// probeCommand runs this test binary as natprobe.
func probeCommand(t testing.TB) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"env", helperEnv + "=1", exe}
}

// newLab builds a lab for the test and tears it down when the test ends,
// whether it passed, failed or panicked.
func newLab(t testing.TB, cfg Config) *Lab {
	t.Helper()
	requireLab(t)
	cfg.Probe = probeCommand(t)
	if os.Getenv("PUNCHLINE_LAB_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, cfg)
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

// sweepBuildDirs removes binaries built by earlier runs of this test that
// were killed before they could clean up (the directory names carry the
// pid, as the namespaces do).
func sweepBuildDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "punchline-lab-bin-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "punchline-lab-bin-%d-", &pid); err != nil || processAlive(pid) {
			continue
		}
		os.RemoveAll(d)
	}
}

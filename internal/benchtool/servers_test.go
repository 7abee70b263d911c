package benchtool

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// needTools skips when a tool is missing, and fails instead under
// PUNCHLINE_LAB when CI's .ci/run installs the tool's package (it installs
// sip-tester and coturn; kamailio only once .ci/run names it).
func needTools(t *testing.T, names ...string) {
	t.Helper()
	ci, _ := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	for _, n := range names {
		if _, err := findTool(n); err != nil {
			pkg := map[string]string{"sipp": "sip-tester", "kamailio": "kamailio",
				"turnserver": "coturn", "turnutils_uclient": "coturn", "turnutils_peer": "coturn"}[n]
			if os.Getenv("PUNCHLINE_LAB") != "" && strings.Contains(string(ci), pkg) {
				t.Fatalf("%v, though .ci/run installs %s", err, pkg)
			}
			t.Skipf("%v (Debian package %s)", err, pkg)
		}
	}
}

// repoRoot is the module root, two levels up from this package.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// testHarness prepares a harness with the minimum user count in a
// temporary directory.
func testHarness(t *testing.T, punchline string) *harness {
	t.Helper()
	cfg := Config{
		PunchlineBin: punchline, BenchDir: filepath.Join(repoRoot(t), "bench"), WorkDir: t.TempDir(),
		Users: 1100, Allocations: 20, ProbeSeconds: 1, MemRegisterRate: 1000,
		UclientArgs: []string{"-m", "2", "-n", "200", "-l", "100", "-z", "5", "-c", "-X"},
	}
	if testing.Verbose() {
		cfg.Log = os.Stderr
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	h := &harness{cfg: cfg}
	if err := h.prepare(); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestKamailioUnderSipp(t *testing.T) {
	needTools(t, "kamailio", "sipp")
	h := testHarness(t, "punchline-not-needed")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kam := &Kamailio{Bin: h.cfg.Kamailio, Config: filepath.Join(h.cfg.BenchDir, "kamailio", "kamailio.cfg"),
		Dir: h.cfg.WorkDir, Realm: h.cfg.Realm, Password: h.cfg.Password, Children: 2}

	// Load 1 at a rate any machine manages, on a server of its own:
	// every REGISTER is challenged and then accepted.
	p, err := h.registerProbe(kam)(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Clean || p.Achieved < 150 {
		t.Errorf("REGISTER probe at 200/s: %+v", p)
	}

	if err := kam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer kam.Stop()
	if pids := kam.PIDs(); len(pids) < 3 {
		t.Errorf("Kamailio process tree %v: want the main process and its workers", pids)
	}

	// A wrong password must fail the probe: the harness can tell a
	// refusing server from a working one.
	wrong := &harness{cfg: h.cfg, usersCSV: filepath.Join(h.cfg.WorkDir, "wrong.csv")}
	if err := os.WriteFile(wrong.usersCSV, []byte("SEQUENTIAL\nu00001;[authentication username=u00001 password=nope]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := wrong.runSipp(ctx, sippJob{name: "wrong", scenario: h.scenario("register.xml"), inf: wrong.usersCSV,
		keys: map[string]string{"domain": h.cfg.Realm, "expires": "60"}, rate: 10, calls: 1, target: kam.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if st.Clean() || st.Successful != 0 {
		t.Errorf("wrong password: %s", st)
	}

	// Load 4 (registrations): every user registered, memory grew.
	m, err := h.memRegistrations(ctx, kam)
	if err != nil {
		t.Fatal(err)
	}
	if m.count != h.cfg.Users || m.loaded.PSS <= 0 {
		t.Errorf("memory load: %+v", m)
	}
}

func TestKamailioCalls(t *testing.T) {
	needTools(t, "kamailio", "sipp")
	h := testHarness(t, "punchline-not-needed")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kam := &Kamailio{Bin: h.cfg.Kamailio, Config: filepath.Join(h.cfg.BenchDir, "kamailio", "kamailio.cfg"),
		Dir: h.cfg.WorkDir, Realm: h.cfg.Realm, Password: h.cfg.Password, Children: 2}
	// Load 2 with a ceiling low enough for a busy CI machine: the search
	// must find a clean rate, which means INVITE/407/ACK/INVITE/180/200/
	// ACK/BYE/200 worked end to end through the proxy.
	h.cfg.MaxRate = 100
	best, err := h.callRate(ctx, kam, 50)
	if err != nil {
		t.Fatal(err)
	}
	if best.Rate < 50 || !best.Clean {
		t.Errorf("calls through Kamailio: best %+v", best)
	}
}

func TestCoturnRelayAndAllocations(t *testing.T) {
	needTools(t, "turnserver", "turnutils_uclient", "turnutils_peer")
	h := testHarness(t, "punchline-not-needed")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	peer, err := h.startPeer()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.stop(time.Second)
	cot := &Coturn{Bin: h.cfg.Turnserver, Template: filepath.Join(h.cfg.BenchDir, "coturn", "turnserver.conf"),
		Dir: h.cfg.WorkDir, Realm: h.cfg.Realm, Password: h.cfg.Password, Users: h.users[:h.cfg.Allocations]}
	if err := cot.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cot.Stop()

	r, err := h.relayLoad(ctx, cot)
	if err != nil {
		t.Fatal(err)
	}
	if r.uclient.Sent != 400 || r.uclient.Received == 0 || r.uclient.Rate <= 0 || r.cpu < 0 {
		t.Errorf("relay load: %+v", r)
	}

	m, err := h.memAllocations(ctx, cot)
	if err != nil {
		t.Fatal(err)
	}
	if m.count != h.cfg.Allocations {
		t.Errorf("held %d of %d allocations", m.count, h.cfg.Allocations)
	}
}

// TestPunchlineBinary drives the real punchline binary the way
// bench/compare does: REGISTER probe, relay load, allocations.
func TestPunchlineBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the punchline binary")
	}
	needTools(t, "sipp", "turnutils_uclient", "turnutils_peer")
	bin := filepath.Join(t.TempDir(), "punchline")
	build := exec.Command("go", "build", "-o", bin, "./cmd/punchline")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	h := testHarness(t, bin)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	sip := &Punchline{Bin: h.cfg.PunchlineBin, Template: h.template, Dir: h.cfg.WorkDir, Realm: h.cfg.Realm, Env: h.cfg.PunchlineEnv}
	p, err := h.registerProbe(sip)(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Clean {
		t.Errorf("punchline REGISTER probe at 200/s: %+v", p)
	}

	peer, err := h.startPeer()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.stop(time.Second)
	relay := &Punchline{Bin: h.cfg.PunchlineBin, Template: h.template, Dir: h.cfg.WorkDir, Realm: h.cfg.Realm, TURN: true}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer relay.Stop()
	r, err := h.relayLoad(ctx, relay)
	if err != nil {
		t.Fatal(err)
	}
	if r.uclient.Received == 0 || r.uclient.Rate <= 0 {
		t.Errorf("relay load: %+v", r)
	}
	m, err := h.memAllocations(ctx, relay)
	if err != nil {
		t.Fatal(err)
	}
	if m.count != h.cfg.Allocations {
		t.Errorf("held %d of %d allocations", m.count, h.cfg.Allocations)
	}
}

package benchtool

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// figureNames are the rows every full bench/compare report has, in order.
var figureNames = []string{
	"authenticated REGISTER rate",
	"server CPU per 1,000 REGISTERs at 1,000/s",
	"calls through the proxy",
	"server CPU per 1,000 calls at 200/s",
	"TURN relay, packets received back",
	"TURN relay, server CPU per 100,000 packets received back",
	"memory with 10000 registrations",
	"memory per registration",
	"memory with 1000 TURN allocations",
	"memory per TURN allocation",
}

// reportRow is one parsed row of the results table.
type reportRow struct {
	name           string
	punchline, ref float64
	ratio          float64
	met            string
	refServer      string
}

var refCell = regexp.MustCompile(`^([0-9.]+) \((Kamailio|coturn)\)$`)

// parseReport reads the results table and the run time of a report that
// bench/compare wrote.
func parseReport(t *testing.T, md string) (rows []reportRow, took time.Duration) {
	t.Helper()
	for _, ln := range strings.Split(md, "\n") {
		if v, ok := strings.CutPrefix(ln, "- Run took: "); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("run time %q: %v", v, err)
			}
			took = d
		}
		if !strings.HasPrefix(ln, "| ") || strings.HasPrefix(ln, "| Load ") {
			continue
		}
		cells := strings.Split(strings.Trim(ln, "| "), " | ")
		if len(cells) != 7 {
			t.Fatalf("table row with %d cells: %q", len(cells), ln)
		}
		r := reportRow{name: cells[0], met: cells[6]}
		var err error
		if r.punchline, err = strconv.ParseFloat(cells[2], 64); err != nil {
			t.Errorf("%s: punchline figure %q is not a number", r.name, cells[2])
		}
		m := refCell.FindStringSubmatch(cells[3])
		if m == nil {
			t.Errorf("%s: reference figure %q is not a number and a server", r.name, cells[3])
		} else {
			r.ref, _ = strconv.ParseFloat(m[1], 64)
			r.refServer = m[2]
		}
		if r.ratio, err = strconv.ParseFloat(cells[4], 64); err != nil {
			t.Errorf("%s: ratio %q is not a number", r.name, cells[4])
		}
		rows = append(rows, r)
	}
	return rows, took
}

// checkRows asserts a report has every load's row, each measured on both
// sides with a ratio that matches its figures.
func checkRows(t *testing.T, rows []reportRow, names []string) {
	t.Helper()
	if len(rows) != len(names) {
		t.Fatalf("report has %d rows, want %d", len(rows), len(names))
	}
	for i, r := range rows {
		if r.name != names[i] {
			t.Errorf("row %d is %q, want %q", i, r.name, names[i])
		}
		if r.punchline <= 0 || r.ref <= 0 {
			t.Errorf("%s: not measured on both sides (%v, %v)", r.name, r.punchline, r.ref)
			continue
		}
		if r.met != "yes" && r.met != "no" {
			t.Errorf("%s: met column %q", r.name, r.met)
		}
		// The table rounds the figures; the ratio is of the unrounded
		// medians, so allow for the rounding of small values.
		want := r.punchline / r.ref
		if d := r.ratio - want; d > 0.05*want+0.02 || d < -0.05*want-0.02 {
			t.Errorf("%s: ratio %.2f, figures give %.2f", r.name, r.ratio, want)
		}
	}
}

// TestCompareScript runs the documented command, bench/compare, from this
// checkout with small loads (one round, 1 s probes, 1,100 accounts) and
// checks that its report has every load measured on both servers with a
// ratio. The full run differs only in sizes and is bounded by the script
// to 9.5 minutes (TestLatestResults checks the committed full run).
func TestCompareScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bench/compare against Kamailio and coturn")
	}
	needTools(t, "sipp", "kamailio", "turnserver", "turnutils_uclient", "turnutils_peer")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "bench", "compare"),
		"--rounds", "1", "--users", "1100", "--allocations", "50", "--probe-seconds", "1",
		"--uclient-args", "-m 2 -n 400 -l 172 -z 2 -c -X", "--out", out)
	cmd.Dir = repoRoot(t)
	cmd.WaitDelay = 10 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench/compare: %v\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(md) != string(stdout) {
		t.Errorf("latest.md differs from what bench/compare printed")
	}
	rows, took := parseReport(t, string(md))
	names := append([]string(nil), figureNames...)
	names[6] = "memory with 1100 registrations"
	names[8] = "memory with 50 TURN allocations"
	checkRows(t, rows, names)
	if took <= 0 || took > 10*time.Minute {
		t.Errorf("run took %v", took)
	}
	t.Logf("quick bench/compare run:\n%s", md)
}

// TestLatestResults checks the committed report of the last full run:
// every load measured on both servers, within the 10 minutes the issue
// allows, and README's performance table quotes its ratios.
func TestLatestResults(t *testing.T) {
	md, err := os.ReadFile(filepath.Join(repoRoot(t), "bench", "results", "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows, took := parseReport(t, string(md))
	checkRows(t, rows, figureNames)
	if took <= 0 || took >= 10*time.Minute {
		t.Errorf("the full run took %v, want under 10 minutes", took)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	checkReadmeQuotes(t, string(readme), rows)
}

// checkReadmeQuotes finds README's performance table and checks that its
// "ratio" column (the first one headed so) holds the latest run's ratio
// for each load, in the report's order, skipping the absolute-memory rows
// README leaves out.
func checkReadmeQuotes(t *testing.T, readme string, rows []reportRow) {
	t.Helper()
	_, perf, ok := strings.Cut(readme, "\n## Performance\n")
	if !ok {
		t.Fatal("README has no Performance section")
	}
	var ratios []string
	col := -1
	for _, ln := range strings.Split(perf, "\n") {
		if !strings.HasPrefix(ln, "|") {
			if col >= 0 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(ln, "| "), " | ")
		if col < 0 {
			for i, c := range cells {
				if strings.HasPrefix(c, "ratio") {
					col = i
					break
				}
			}
			if col < 0 {
				t.Fatalf("README's performance table has no ratio column: %q", ln)
			}
			continue
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		ratios = append(ratios, cells[col])
	}
	var want []string
	for _, r := range rows {
		if strings.HasPrefix(r.name, "memory with ") {
			continue
		}
		want = append(want, strconv.FormatFloat(r.ratio, 'f', 2, 64))
	}
	if strings.Join(ratios, " ") != strings.Join(want, " ") {
		t.Errorf("README quotes ratios %v; bench/results/latest.md has %v", ratios, want)
	}
}

package benchtool

import (
	"bufio"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readTimed reads a "unixtime<TAB>line" file, skipping # comments.
func readTimed(t testing.TB, file string) []TimedLine {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []TimedLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		ts, text, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("bad line %q", sc.Text())
		}
		sec, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, TimedLine{At: time.Unix(0, int64(sec*1e9)), Text: text})
	}
	return out
}

func TestParseUclientRealRun(t *testing.T) {
	got, err := ParseUclient(readTimed(t, "testdata/uclient-coturn-m50.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sent != 200000 || got.Received != 141517 || got.Lost != 58483 {
		t.Errorf("counts: sent %d received %d lost %d", got.Sent, got.Received, got.Lost)
	}
	// Steady rate: from the first report with packets back (7573 at
	// .203261) to the last before the count stopped (75545 at .208109).
	want := float64(75545-7573) / (1795626208.108954260 - 1795626203.261418572)
	if math.Abs(got.Rate-want)/want > 0.001 {
		t.Errorf("rate %.1f, want %.1f", got.Rate, want)
	}
	if got.Samples != 5 {
		t.Errorf("rate from %d samples, want 5", got.Samples)
	}
}

func TestParseUclient(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	progress := func(sent, recv int) string {
		return "1: : start_mclient: msz=2, tot_send_msgs=" + strconv.Itoa(sent) + ", tot_recv_msgs=" + strconv.Itoa(recv) + ", tot_send_bytes ~ 0, tot_recv_bytes ~ 0"
	}
	final := func(sent, recv int) string {
		return "2: : start_mclient: tot_send_msgs=" + strconv.Itoa(sent) + ", tot_recv_msgs=" + strconv.Itoa(recv)
	}
	tests := []struct {
		name     string
		lines    []TimedLine
		wantRate float64
		wantErr  error
	}{
		{
			name: "steady slope between progress reports",
			lines: []TimedLine{
				{at(0), "0: : Total connect time is 1"},
				{at(1000), progress(1000, 900)},
				{at(2000), progress(3000, 2900)},
				{at(3000), progress(5000, 4900)},
				{at(4000), progress(5000, 5000)},
				{at(9000), final(5000, 5000)},
			},
			wantRate: 2000,
		},
		{
			name: "too few reports: all packets over connect to the final count",
			lines: []TimedLine{
				{at(0), "0: : Total connect time is 0"},
				{at(500), progress(1000, 1000)},
				{at(800), final(1000, 1000)},
			},
			wantRate: 2000,
		},
		{
			name:     "stopped before the final line: the last progress report counts",
			lines:    []TimedLine{{at(0), "0: : Total connect time is 0"}, {at(500), progress(10, 10)}},
			wantRate: 20,
		},
		{
			name:    "no progress at all",
			lines:   []TimedLine{{at(0), "0: : Total connect time is 0"}},
			wantErr: ErrNoUclientResult,
		},
		{
			name:    "nothing came back",
			lines:   []TimedLine{{at(0), "0: : Total connect time is 0"}, {at(500), final(10, 0)}},
			wantErr: ErrNoUclientResult,
		},
		{
			name:    "an allocation error and nothing else",
			lines:   []TimedLine{{at(0), "0: : error 401 (Unauthorized)"}},
			wantErr: ErrNoUclientResult,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUclient(tt.lines)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.Rate-tt.wantRate) > 0.01 {
				t.Errorf("rate = %v, want %v", got.Rate, tt.wantRate)
			}
		})
	}
}

func FuzzParseUclient(f *testing.F) {
	var seed []string
	for _, l := range readTimed(f, "testdata/uclient-coturn-m50.txt") {
		seed = append(seed, l.Text)
	}
	f.Add(strings.Join(seed, "\n"))
	f.Add("0: : Total connect time is 0\n1: : start_mclient: tot_send_msgs=1, tot_recv_msgs=1")
	f.Fuzz(func(t *testing.T, in string) {
		var lines []TimedLine
		for i, l := range strings.Split(in, "\n") {
			lines = append(lines, TimedLine{At: time.Unix(1000, 0).Add(time.Duration(i) * 100 * time.Millisecond), Text: l})
		}
		r, err := ParseUclient(lines)
		if err != nil {
			return
		}
		if r.Received <= 0 || r.Rate <= 0 || math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0) {
			t.Fatalf("accepted a result without a usable rate: %+v", r)
		}
	})
}

func TestUclientSettledAndStopped(t *testing.T) {
	lines := readTimed(t, "testdata/uclient-coturn-m50.txt")
	// Up to the third identical report after the last packet was sent.
	cut := 0
	for i := range lines {
		if UclientSettled(lines[:i+1], 200000) {
			cut = i + 1
			break
		}
	}
	if cut == 0 || cut >= len(lines)-3 {
		t.Fatalf("settled at line %d of %d", cut, len(lines))
	}
	if UclientSettled(lines[:cut-1], 200000) {
		t.Error("settled one report early")
	}
	if UclientSettled(lines, 300000) {
		t.Error("settled although not every packet was sent")
	}
	// Stopped there, the last progress report gives the counts and the
	// rate is unchanged.
	got, err := ParseUclient(lines[:cut])
	if err != nil {
		t.Fatal(err)
	}
	full, _ := ParseUclient(lines)
	if got.Sent != 200000 || got.Received != 141517 || got.Lost != 58483 || got.Rate != full.Rate {
		t.Errorf("stopped run %+v, full run %+v", got, full)
	}
}

func TestUclientPackets(t *testing.T) {
	if got := uclientPackets([]string{"-m", "20", "-n", "5000", "-l", "172"}); got != 100000 {
		t.Errorf("got %d", got)
	}
	if got := uclientPackets(nil); got != 5 {
		t.Errorf("defaults: got %d", got)
	}
	if got := uclientPackets([]string{"-m", "x"}); got != 0 {
		t.Errorf("bad -m: got %d", got)
	}
}

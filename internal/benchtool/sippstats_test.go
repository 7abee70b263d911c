package benchtool

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseSippStatsRealFiles(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		want      SippStats
		wantClean bool
	}{
		{
			name: "Kamailio at 12000 REGISTER/s completes every call but retransmits",
			file: "testdata/sipp-register-stats.csv",
			want: SippStats{Created: 36000, Successful: 36000, Retransmissions: 2380, CallRate: 10129.4},
		},
		{
			name: "an overloaded proxy fails calls by receive timeout",
			file: "testdata/sipp-calls-failed-stats.csv",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseSippStats(f)
			if err != nil {
				t.Fatal(err)
			}
			if got.Clean() != tt.wantClean {
				t.Errorf("Clean() = %v, want %v (%s)", got.Clean(), tt.wantClean, got)
			}
			if tt.want.Created != 0 {
				if got.Created != tt.want.Created || got.Successful != tt.want.Successful ||
					got.Failed != tt.want.Failed || got.Retransmissions != tt.want.Retransmissions ||
					got.CallRate != tt.want.CallRate {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
			}
			if got.Created != got.Successful+got.Failed+currentCalls(t, tt.file) {
				t.Errorf("created %d != ok %d + failed %d + open", got.Created, got.Successful, got.Failed)
			}
		})
	}
}

// currentCalls reads CurrentCall of the last row, for the bookkeeping check.
func currentCalls(t *testing.T, file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	head := strings.Split(lines[0], ";")
	last := strings.Split(lines[len(lines)-1], ";")
	for i, h := range head {
		if h == "CurrentCall" {
			n := 0
			for _, c := range last[i] {
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	t.Fatal("no CurrentCall column")
	return 0
}

const sippHeader = "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);" +
	"TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);Retransmissions(P);Retransmissions(C);\n"

func TestParseSippStats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    SippStats
		wantErr error
	}{
		{
			name: "the last complete row wins",
			in: sippHeader +
				"a;b;c;00:00:01;00:00:01;100;100;100;100;100;100;0;0;0;0;\n" +
				"a;b;c;00:00:01;00:00:03:250000;100;100;99.5;300;100;300;0;0;0;0;\n",
			want: SippStats{Created: 300, Successful: 300, CallRate: 99.5, Elapsed: 3250 * time.Millisecond},
		},
		{
			name: "a row cut short by a kill is skipped",
			in: sippHeader +
				"a;b;c;00:00:01;00:00:02;100;100;100;200;100;150;0;50;0;7;\n" +
				"a;b;c;00:00:01;00:00:0",
			want: SippStats{Created: 200, Successful: 150, Failed: 50, Retransmissions: 7, CallRate: 100, Elapsed: 2 * time.Second},
		},
		{name: "header only", in: sippHeader, wantErr: ErrNoStats},
		{name: "empty", in: "", wantErr: ErrNoStats},
		{name: "not a stats file", in: "hello;world\n1;2\n", wantErr: ErrNoStats},
		{
			name:    "a required column is missing",
			in:      "StartTime;TotalCallCreated;\nx;1;\n",
			wantErr: ErrNoStats,
		},
		{
			name:    "a negative count is refused",
			in:      sippHeader + "a;b;c;00:00:01;00:00:01;1;1;1;-1;1;1;0;0;0;0;\n",
			wantErr: ErrNoStats,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSippStats(strings.NewReader(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSippStatsClean(t *testing.T) {
	tests := []struct {
		name string
		s    SippStats
		want bool
	}{
		{"all calls done, nothing retransmitted", SippStats{Created: 10, Successful: 10}, true},
		{"one retransmission", SippStats{Created: 10, Successful: 10, Retransmissions: 1}, false},
		{"one failure", SippStats{Created: 10, Successful: 9, Failed: 1}, false},
		{"calls still open", SippStats{Created: 10, Successful: 9}, false},
		{"no calls at all", SippStats{}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Clean(); got != tt.want {
			t.Errorf("%s: Clean() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzParseSippStats(f *testing.F) {
	for _, file := range []string{"testdata/sipp-register-stats.csv", "testdata/sipp-calls-failed-stats.csv"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(sippHeader + "a;b;c;00:00:01;00:00:01;1;1;1;1;1;1;0;0;0;0;\n")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSippStats(strings.NewReader(in))
		if err != nil {
			return
		}
		if s.Created < 0 || s.Successful < 0 || s.Failed < 0 || s.Retransmissions < 0 || s.CallRate < 0 || s.Elapsed < 0 {
			t.Fatalf("negative figure from %q: %+v", in, s)
		}
	})
}

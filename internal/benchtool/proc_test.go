package benchtool

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ProcStat
		wantErr bool
	}{
		{
			name: "a plain command",
			in:   "4242 (turnserver) S 1 4242 4242 0 -1 4194560 1200 0 0 0 153 87 0 0 20 0 9 0 100 1000 200",
			want: ProcStat{PID: 4242, PPID: 1, UTime: 153, STime: 87},
		},
		{
			name: "a command name with spaces and parentheses",
			in:   "17 (a b) (c)) R 16 17 17 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1",
			want: ProcStat{PID: 17, PPID: 16, UTime: 5, STime: 6},
		},
		{name: "no command", in: "17 R 16", wantErr: true},
		{name: "too few fields", in: "17 (x) R 16 17", wantErr: true},
		{name: "bad pid", in: "x (y) R 16 17 17 0 -1 0 0 0 0 0 5 6", wantErr: true},
		{name: "bad utime", in: "1 (y) R 0 1 1 0 -1 0 0 0 0 0 -5 6", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrBadProcStat) {
					t.Fatalf("err = %v, want ErrBadProcStat", err)
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

func TestReadOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != pid || st.PPID != os.Getppid() {
		t.Errorf("read %+v for pid %d ppid %d", st, pid, os.Getppid())
	}
	// Burn a little CPU so the counter has something to show.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	_ = x
	cpu, err := CPUTime([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("CPU time %v after a busy loop", cpu)
	}
	m, err := MemoryOf([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PSS <= 0 || m.PSS > m.RSS {
		t.Errorf("memory %+v: want 0 < PSS ≤ RSS", m)
	}
	if tree := processTree(pid); len(tree) == 0 || tree[0] != pid {
		t.Errorf("processTree(%d) = %v", pid, tree)
	}
}

func TestParseMemField(t *testing.T) {
	status := "Name:\tkamailio\nVmPeak:\t  100 kB\nVmRSS:\t   58588 kB\nThreads:\t1\n"
	if got, err := ParseMemField([]byte(status), "VmRSS"); err != nil || got != 58588 {
		t.Errorf("VmRSS = %d, %v", got, err)
	}
	if _, err := ParseMemField([]byte(status), "Pss"); err == nil {
		t.Error("missing field: no error")
	}
	if _, err := ParseMemField([]byte("Pss: 12 MB\n"), "Pss"); err == nil {
		t.Error("unknown unit: no error")
	}
	if _, err := ParseMemField([]byte("Pss: x kB\n"), "Pss"); err == nil {
		t.Error("bad number: no error")
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := CPUModel([]byte(info)); got != "AMD EPYC 7B13" {
		t.Errorf("CPUModel = %q", got)
	}
	if got := CPUModel(nil); got != "unknown CPU" {
		t.Errorf("CPUModel(nil) = %q", got)
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("4242 (turnserver) S 1 4242 4242 0 -1 4194560 1200 0 0 0 153 87 0 0 20 0 9 0 100 1000 200")
	f.Add("17 (a b) (c)) R 16 17 17 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1")
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := ParseProcStat([]byte(in))
		if err != nil {
			return
		}
		if st.PID <= 0 || st.PPID < 0 || !strings.Contains(in, ")") {
			t.Fatalf("accepted %q as %+v", in, st)
		}
	})
}

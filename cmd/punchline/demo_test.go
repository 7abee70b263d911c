package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/punchline/punchline/internal/vnetlab"
)

// TestDemoShowsDirectAndRelayedCells runs `punchline demo` as a newcomer
// would (the whole system: registrar, proxy, relay and phones inside the
// simulated network) and reads its table: every NAT pairing must show the
// route theory predicts, with audio heard both ways. It runs in a synctest
// bubble: the simulated network, SIP and ICE timers and RTP pacing all run
// on the virtual clock, so the outcome does not depend on machine load.
func TestDemoShowsDirectAndRelayedCells(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := runDemo(context.Background(), []string{"--audio", "500ms"}, &out, &errb); err != nil {
			t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
		}
		s := out.String()
		t.Log("\n" + s)
		rows := map[string]string{}
		for _, line := range strings.Split(s, "\n") {
			for _, nat := range vnetlab.NATTypes {
				if strings.HasPrefix(line, nat.String()+" ") && !strings.Contains(line, "↔") {
					rows[nat.String()] = line
				}
			}
		}
		if len(rows) != 4 {
			t.Fatalf("matrix has %d rows, want 4:\n%s", len(rows), s)
		}
		cell := regexp.MustCompile(`(direct|relayed)\s+\d+(\.\d+)?m?s`)
		// Row by row, the cells in order: upper triangle of the matrix.
		want := map[string][]string{
			"full-cone":       {"direct", "direct", "direct", "direct"},
			"restricted":      {"direct", "direct", "direct"},
			"port-restricted": {"direct", "relayed"},
			"symmetric":       {"relayed"},
		}
		for nat, routes := range want {
			var got []string
			for _, m := range cell.FindAllStringSubmatch(rows[nat], -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != strings.Join(routes, " ") {
				t.Errorf("row %s shows %v, want %v:\n%s", nat, got, routes, rows[nat])
			}
		}
		for _, line := range []string{"one LAN (behind port-restricted)   direct", "public ↔ symmetric                 direct",
			"12 of 12 calls took the expected route and carried audio both ways."} {
			if !strings.Contains(s, line) {
				t.Errorf("output lacks %q", line)
			}
		}
		if strings.Contains(s, "EXPECTED") || strings.Contains(s, "NOTHING") || strings.Contains(s, "FAILED") {
			t.Errorf("output reports a failed call")
		}
	})
}

func TestDemoJSON(t *testing.T) {
	for _, mode := range []string{"sip", "ice"} {
		t.Run(mode, func(t *testing.T) { synctest.Test(t, func(t *testing.T) { testDemoJSON(t, mode) }) })
	}
}

func testDemoJSON(t *testing.T, mode string) {
	{
		args := []string{"--json", "--audio", "300ms", "--parallel", "12"}
		if mode == "ice" {
			args = append(args, "--ice-only")
		}
		var out, errb bytes.Buffer
		if err := runDemo(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("demo --json: %v\n%s", err, errb.String())
		}
		var rep demoReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		if !rep.OK || len(rep.Calls) != len(vnetlab.Matrix()) || rep.Mode != mode {
			t.Fatalf("report: ok=%v, %d calls, mode %q", rep.OK, len(rep.Calls), rep.Mode)
		}
		relayed := 0
		for _, c := range rep.Calls {
			if c.Route != c.Expected || !c.CallerHeard || !c.CalleeHeard || c.CallerReceived == 0 || c.CalleeReceived == 0 {
				t.Errorf("%s: %+v", c.Name, c)
			}
			if c.Route == "relayed" {
				relayed++
				if c.LocalType != "relay" && c.RemoteType != "relay" {
					t.Errorf("%s relayed without a relay candidate: %+v", c.Name, c)
				}
			}
			if c.SetupMs <= 0 || c.SetupMs < c.ICEMs {
				t.Errorf("%s: setup %d ms, ICE %d ms", c.Name, c.SetupMs, c.ICEMs)
			}
			if (mode == "sip") != (c.RegisterMs > 0) {
				t.Errorf("%s: register %d ms in mode %s", c.Name, c.RegisterMs, mode)
			}
		}
		if relayed != 2 {
			t.Errorf("%d relayed calls, want 2", relayed)
		}
	}
}

func TestDemoRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runDemo(context.Background(), []string{"--audio", "1h"}, &out, &errb); err != errUsage {
		t.Fatalf("err = %v, want errUsage", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := runDemo(ctx, []string{"extra"}, &out, &errb); err != errUsage {
		t.Fatalf("err = %v, want errUsage", err)
	}
}

// BenchmarkDemoSIPSetup measures what a user waits for in the simulated
// network on the wall clock: INVITE sent until the caller's first RTP
// packet, through the proxy, with ICE across the NATs; a direct cell
// (through a symmetric NAT) and a relayed one. Each iteration builds a
// fresh lab, server and phones (not timed); the median is reported.
func BenchmarkDemoSIPSetup(b *testing.B) {
	for _, name := range []string{"full-cone ↔ symmetric", "symmetric ↔ symmetric"} {
		var cell vnetlab.Cell
		for _, c := range vnetlab.Matrix() {
			if c.Name == name {
				cell = c
			}
		}
		b.Run(cell.Want, func(b *testing.B) {
			var setups []float64
			for b.Loop() {
				var res demoCall
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := demoSIPCall(ctx, cell, demoOptions{audio: 200 * time.Millisecond, log: slog.New(slog.DiscardHandler)}, &res)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if res.Route != cell.Want {
					b.Errorf("route %s, want %s", res.Route, cell.Want)
				}
				setups = append(setups, float64(res.SetupMs))
			}
			slices.Sort(setups)
			b.ReportMetric(setups[len(setups)/2], "median-setup-ms")
		})
	}
}

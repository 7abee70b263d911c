package sip

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSippRegistersManyUsersWithDigest(t *testing.T) {
	const n = 100
	users := map[string]string{}
	var rows [][2]string
	for i := range n {
		name, pw := fmt.Sprintf("user%03d", i), fmt.Sprintf("pw-%d-secret", i)
		users[name] = pw
		rows = append(rows, [2]string{name, pw})
	}
	ts := startServer(t, users, nil)
	port := freeUDPPort(t)
	res := runSipp(t, 60*time.Second, "-sf", scenario(t, "register_auth.xml"),
		"-inf", writeCSV(t, rows), "-m", strconv.Itoa(n), "-r", "200", "-l", "100",
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "u1", "-timeout", "30s", ts.udp)
	if res.code != 0 {
		t.Fatalf("sipp exit %d (want 0: every REGISTER answered 401 then 200):\n%s", res.code, tail(res.out, 4000))
	}
	for name := range users {
		bs, err := ts.Lookup(name)
		if err != nil {
			t.Fatalf("%s not registered after sipp run: %v", name, err)
		}
		if got, want := bs[0].Flow.Source, fmt.Sprintf("127.0.0.1:%d", port); got != want {
			t.Errorf("%s flow source %s, want %s", name, got, want)
		}
	}
	if got := metricValue(t, ts.metrics.registrations); got != n {
		t.Errorf("registrations gauge %v, want %d", got, n)
	}
}

func TestSippWrongPasswordIsRefused(t *testing.T) {
	ts := startServer(t, map[string]string{"carol": "right", "dave": "right"}, nil)
	port := freeUDPPort(t)
	res := runSipp(t, 30*time.Second, "-sf", scenario(t, "register_wrong_password.xml"),
		"-inf", writeCSV(t, [][2]string{{"carol", "wrong"}, {"dave", "Right"}}), "-m", "2",
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "u1", "-timeout", "20s", ts.udp)
	if res.code != 0 {
		t.Fatalf("sipp exit %d (want 0: both REGISTERs refused with 403 after the challenge):\n%s", res.code, tail(res.out, 4000))
	}
	for _, u := range []string{"carol", "dave"} {
		if _, err := ts.Lookup(u); err == nil {
			t.Errorf("%s registered with a wrong password", u)
		}
	}
	if got := metricValue(t, ts.metrics.authFailures); got != 2 {
		t.Errorf("auth failures %v, want 2", got)
	}
}

// registerWithSipp registers user from 127.0.0.1:port with sipp.
func registerWithSipp(t *testing.T, ts *testServer, user, password string, port int) {
	t.Helper()
	res := runSipp(t, 20*time.Second, "-sf", scenario(t, "register_auth.xml"),
		"-inf", writeCSV(t, [][2]string{{user, password}}), "-m", "1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "u1", "-timeout", "10s", ts.udp)
	if res.code != 0 {
		t.Fatalf("registering %s: sipp exit %d:\n%s", user, res.code, tail(res.out, 4000))
	}
}

// sippCall registers bob with sipp, runs uasScenario on bob's port and
// uacScenario as alice calling bob; both must succeed.
func sippCall(t *testing.T, uasScenario, uacScenario string) *testServer {
	ts := startServer(t, map[string]string{"alice": "alice-pw", "bob": "bob-pw"}, nil)
	bobPort := freeUDPPort(t)
	registerWithSipp(t, ts, "bob", "bob-pw", bobPort)

	sipp := needTool(t, "sipp")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uasDone := make(chan sippResult, 1)
	go func() {
		uasDone <- runSippCtx(ctx, t, sipp, "-sf", scenario(t, uasScenario), "-m", "1",
			"-i", "127.0.0.1", "-p", strconv.Itoa(bobPort), "-t", "u1", "-timeout", "25s")
	}()
	// sipp binds its port at start; give the UAS a moment to do so
	// before the call can arrive (the proxy would otherwise get ICMP and
	// retransmit, which still works, only slower).
	waitUDPBound(t, bobPort)

	alicePort := freeUDPPort(t)
	uac := runSippCtx(ctx, t, sipp, "-sf", scenario(t, uacScenario), "-s", "bob",
		"-inf", writeCSV(t, [][2]string{{"alice", "alice-pw"}}), "-m", "1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(alicePort), "-t", "u1", "-timeout", "25s", ts.udp)
	uas := <-uasDone
	if uac.code != 0 || uas.code != 0 {
		t.Fatalf("caller sipp exit %d, callee sipp exit %d (want 0 and 0)\n=== caller ===\n%s\n=== callee ===\n%s",
			uac.code, uas.code, tail(uac.out, 5000), tail(uas.out, 5000))
	}
	return ts
}

// waitUDPBound waits until something has bound UDP port on 127.0.0.1.
func waitUDPBound(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if !portFree(port) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing bound udp port %d", port)
}

func TestSippCallThroughProxy(t *testing.T) {
	ts := sippCall(t, "uas.xml", "uac.xml")
	if got := metricValue(t, ts.metrics.calls.WithLabelValues("2xx")); got != 1 {
		t.Errorf("calls{2xx} = %v, want 1", got)
	}
	for _, m := range []string{"INVITE", "ACK", "BYE"} {
		if got := metricValue(t, ts.metrics.transactions.WithLabelValues(m)); got < 1 {
			t.Errorf("no %s passed the proxy", m)
		}
	}
}

func TestSippCancelBeforeAnswerGives487(t *testing.T) {
	ts := sippCall(t, "uas_cancel.xml", "uac_cancel.xml")
	if got := metricValue(t, ts.metrics.calls.WithLabelValues("cancelled")); got != 1 {
		t.Errorf("calls{cancelled} = %v, want 1", got)
	}
}

var _ = strings.Contains

func TestSippRegistersOverTCP(t *testing.T) {
	users := map[string]string{}
	var rows [][2]string
	for i := range 20 {
		name, pw := fmt.Sprintf("tcp%02d", i), fmt.Sprintf("pw%d", i)
		users[name] = pw
		rows = append(rows, [2]string{name, pw})
	}
	ts := startServer(t, users, nil)
	port := freeUDPPort(t)
	// -t t1: one TCP connection for all calls, as a phone (or an SBC)
	// keeps its connection open.
	res := runSipp(t, 30*time.Second, "-sf", scenario(t, "register_auth.xml"),
		"-inf", writeCSV(t, rows), "-m", "20", "-r", "50",
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "t1", "-timeout", "20s", ts.tcp)
	if res.code != 0 {
		t.Fatalf("sipp over TCP exit %d:\n%s", res.code, tail(res.out, 4000))
	}
	for name := range users {
		bs, err := ts.Lookup(name)
		if err != nil {
			t.Fatalf("%s not registered: %v", name, err)
		}
		if bs[0].Flow.Transport != "tcp" {
			t.Fatalf("%s flow %+v, want tcp", name, bs[0].Flow)
		}
	}
}

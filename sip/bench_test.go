package sip

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/store"
)

// BenchmarkRegister measures complete authenticated registrations
// (REGISTER, 401, REGISTER with credentials, 200) over real UDP sockets
// on loopback, with parallel clients.
func BenchmarkRegister(b *testing.B) {
	users := map[string]string{}
	for i := range 64 {
		users[fmt.Sprintf("u%d", i)] = "pw"
	}
	ts := startServer(b, users, func(c *Config) { c.RateLimit.PerSecond = -1 })
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		name := fmt.Sprintf("u%d", i%64)
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Error(err)
			return
		}
		defer pc.Close()
		srv, _ := net.ResolveUDPAddr("udp", ts.udp)
		buf := make([]byte, 4096)
		me := pc.LocalAddr().String()
		seq := 0
		msg := func(auth string) []byte {
			seq++
			return []byte("REGISTER sip:" + ts.udp + " SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP " + me + ";branch=z9hG4bK-b" + strconv.Itoa(seq) + ";rport\r\n" +
				"From: <sip:" + name + "@punchline>;tag=bt\r\nTo: <sip:" + name + "@punchline>\r\n" +
				"Call-ID: bench-" + me + "\r\nCSeq: " + strconv.Itoa(seq) + " REGISTER\r\n" +
				"Contact: <sip:" + name + "@" + me + ">\r\nExpires: 600\r\nMax-Forwards: 70\r\n" + auth +
				"Content-Length: 0\r\n\r\n")
		}
		read := func() string {
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return ""
			}
			return string(buf[:n])
		}
		for pb.Next() {
			pc.WriteTo(msg(""), srv)
			r := read()
			i := strings.Index(r, `nonce="`)
			if i < 0 {
				b.Errorf("no challenge: %q", r)
				return
			}
			nonce := r[i+7:]
			nonce = nonce[:strings.IndexByte(nonce, '"')]
			pc.WriteTo(msg("Authorization: "+digestAuth(name, "pw", "punchline", "REGISTER", "sip:"+ts.udp, nonce, "MD5", 1)+"\r\n"), srv)
			if r := read(); !strings.HasPrefix(r, "SIP/2.0 200") {
				b.Errorf("want 200, got %.60q", r)
				return
			}
		}
	})
}

// BenchmarkDigestCheck measures verifying one set of credentials: nonce
// check and response computation.
func BenchmarkDigestCheck(b *testing.B) {
	k := newNonceKeeper([]byte("0123456789abcdef0123456789abcdef"), time.Minute)
	nonce := k.issue()
	ha1 := "939e7578ed9e3c518a452acee763bce9"
	c, err := ParseCredentials(digestAuth("alice", "pw", "punchline", "REGISTER", "sip:127.0.0.1", nonce, "MD5", 1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.NC = uint32(i + 1)
		res, use := k.check(nonce, &c, "z9hG4bK-x|10.0.0.1:5060")
		if res != nonceOK {
			b.Fatal(res)
		}
		var buf [64]byte
		if got := appendDigestResponse(buf[:0], "MD5", []byte(ha1), "REGISTER", &c); len(got) != 32 {
			b.Fatal(string(got))
		}
		use.commit()
	}
}

// BenchmarkLocationLookup measures finding a user's contacts among
// 10,000 registered AORs.
func BenchmarkLocationLookup(b *testing.B) {
	l := newLocation()
	exp := time.Now().Add(time.Hour)
	for i := range 10000 {
		aor := "user" + strconv.Itoa(i)
		l.update(aor, func([]Binding) ([]Binding, bool) {
			return []Binding{{Contact: "sip:" + aor + "@10.0.0.1:5060", Q: 1, Expires: exp, Flow: Flow{Transport: "udp", Source: "1.2.3.4:5060"}}}, true
		})
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if len(l.get("user"+strconv.Itoa(i%10000), now)) != 1 {
			b.Fatal("missing")
		}
	}
}

// BenchmarkRegisterSipp drives the in-process registrar with sipp at
// SIPP_RATE registrations per second (default 4000) for b.N
// registrations, reporting sipp's retransmissions and failures; it
// exists mainly to profile the server under a real load generator
// (go test -bench RegisterSipp -cpuprofile ...). bench/register.sh is the
// throughput measurement.
func BenchmarkRegisterSipp(b *testing.B) {
	const nUsers = 500
	users := map[string]string{}
	var rows [][2]string
	for i := range nUsers {
		n := fmt.Sprintf("s%d", i)
		users[n] = "pw" + n
		rows = append(rows, [2]string{n, "pw" + n})
	}
	ts := startServer(b, users, func(c *Config) { c.RateLimit.PerSecond = -1 })
	rate := 4000
	if v, err := strconv.Atoi(os.Getenv("SIPP_RATE")); err == nil {
		rate = v
	}
	csv := writeCSV(b, rows)
	n := max(b.N, 1000)
	statDir := b.TempDir()
	stat := filepath.Join(statDir, "stat.csv")
	b.ResetTimer()
	res := runSipp(b, time.Duration(n/rate+60)*time.Second, "-sf", scenario(b, "register_auth.xml"), "-inf", csv,
		"-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-l", strconv.Itoa(2*rate),
		"-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(b)), "-t", "u1", "-timeout", "120s",
		"-trace_stat", "-stf", stat, "-fd", "1", ts.udp)
	b.StopTimer()
	st := sippStats(b, stat)
	b.ReportMetric(st["Retransmissions(C)"], "retrans")
	b.ReportMetric(st["FailedCall(C)"], "failed")
	b.ReportMetric(st["SuccessfulCall(C)"]/st["elapsed"], "reg/s")
	if res.code != 0 {
		b.Logf("sipp exit %d", res.code)
	}
}

// BenchmarkRegistrationMemory is bench/compare's memory load in process:
// sipp registers 10,000 distinct users (REGISTER, 401, REGISTER with
// credentials, 200) at 2,000/s, and after the same 1.5 s pause the
// harness takes, it reports per registration the growth of the process's
// proportional set size (pss-B/reg, the harness's figure; the sipp
// client runs in its own process) and of the live heap after a forced
// collection (live-B/reg: what the registrar really keeps). The first
// moves by hundreds of bytes from run to run with the collector's and
// the scavenger's timing (it can even come out negative when memory from
// start-up is returned during the load); the second is steady to a few
// bytes. It runs the load once, whatever b.N is.
func BenchmarkRegistrationMemory(b *testing.B) {
	const n = 10000
	dir := b.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	accounts := make(map[string]string, n)
	rows := make([][2]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("m%05d", i)
		accounts[name] = "bench-secret"
		rows = append(rows, [2]string{name, "bench-secret"})
	}
	if err := st.AddUsers("punchline", accounts, false); err != nil {
		b.Fatal(err)
	}
	ts := startServerOn(b, st, dir, func(c *Config) { c.RateLimit.PerSecond = -1 })
	csv := writeCSV(b, rows)
	scen, err := filepath.Abs(filepath.Join("..", "bench", "sipp", "register.xml"))
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	// Two collections: the second also empties sync.Pools' victim
	// caches, which the start-up filled.
	runtime.GC()
	runtime.GC()
	time.Sleep(200 * time.Millisecond)
	runtime.ReadMemStats(&before)
	pss0 := selfPss(b)
	b.ResetTimer()
	res := runSipp(b, 60*time.Second, "-sf", scen, "-inf", csv, "-m", strconv.Itoa(n), "-r", "2000", "-rp", "1000",
		"-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(b)), "-recv_timeout", "2500",
		"-key", "domain", "punchline", "-key", "expires", "3600", ts.udp)
	b.StopTimer()
	time.Sleep(1500 * time.Millisecond)
	pss1 := selfPss(b)
	got := ts.loc.total()
	if got < n*99/100 {
		b.Fatalf("only %d of %d registered (sipp exit %d):\n%s", got, n, res.code, tail(res.out, 3000))
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(pss1-pss0)*1024/float64(got), "pss-B/reg")
	b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(got), "live-B/reg")
}

// selfPss is this process's proportional set size in kB.
func selfPss(t testing.TB) int64 {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("no /proc/self/smaps_rollup: %v", err)
	}
	for _, ln := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(ln, "Pss:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatal("no Pss line in smaps_rollup")
	return 0
}

// sippStats reads the last line of a sipp -trace_stat file into numbers,
// adding "elapsed" (seconds from start to the last sample).
func sippStats(t testing.TB, path string) map[string]float64 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	head, last := strings.Split(lines[0], ";"), strings.Split(lines[len(lines)-1], ";")
	out := map[string]float64{}
	epoch := func(v string) float64 {
		f := strings.Split(v, "\t")
		x, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return x
	}
	for i, h := range head {
		if i >= len(last) {
			break
		}
		if x, err := strconv.ParseFloat(last[i], 64); err == nil {
			out[h] = x
		}
	}
	out["elapsed"] = epoch(last[2]) - epoch(last[0])
	return out
}

func TestReplyCacheExpires(t *testing.T) {
	c := newReplyCache()
	t0 := time.Now()
	for i := range 5000 {
		c.put(strconv.Itoa(i), []byte("x"), t0.Add(time.Duration(i)*time.Millisecond))
	}
	// Keys stored more than replyLinger before the last put are gone.
	c.put("last", []byte("y"), t0.Add(replyLinger+2500*time.Millisecond))
	if _, ok := c.get("0"); ok {
		t.Fatal("expired reply still cached")
	}
	if b, ok := c.get("4999"); !ok || string(b) != "x" {
		t.Fatal("fresh reply missing")
	}
	if len(c.m) > 5000 || len(c.order)-c.head != len(c.m) {
		t.Fatalf("map %d, order %d from %d", len(c.m), len(c.order), c.head)
	}
}

func TestReplyCacheExpiresWithoutNewAnswers(t *testing.T) {
	c := newReplyCache()
	t0 := time.Now()
	for i := range 3000 {
		c.put(strconv.Itoa(i), []byte("x"), t0)
	}
	c.expire(t0.Add(replyLinger / 2))
	if c.len() != 3000 {
		t.Fatalf("%d answers left before they expired, want 3000", c.len())
	}
	c.expire(t0.Add(replyLinger + time.Second))
	if c.len() != 0 || c.order != nil {
		t.Fatalf("%d answers (order %d) left after they expired", c.len(), len(c.order))
	}
	c.put("again", []byte("y"), t0.Add(replyLinger+time.Second))
	if b, ok := c.get("again"); !ok || string(b) != "y" {
		t.Fatal("cache unusable after emptying")
	}
}

func TestReplyCacheSweepsWithoutTraffic(t *testing.T) {
	c := newReplyCache()
	c.linger = 20 * time.Millisecond
	c.put("a", []byte("x"), time.Now())
	c.put("b", []byte("y"), time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for c.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d answers still cached long after they expired, with no further puts", c.len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	armed := c.sweep != nil
	c.mu.Unlock()
	if armed {
		t.Fatal("sweep timer still armed on an empty cache")
	}
}

// Package mesh benchmarks punchline's conference mesh: for N participants
// it measures what each participant uploads, what the server carries and
// what CPU a participant costs, beside what an SFU and a mixing server
// would carry for the same room.
//
//	go test -run '^$' -bench Mesh -benchtime 1x ./bench/mesh/
//	bench/mesh.sh      # the same, as the Markdown table in README
package mesh

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/internal/conference/conftest"
)

// streamKbps is one G.711 stream on the wire with RTP/UDP/IPv4 headers,
// the unit the SFU and mixer columns are computed in.
const streamKbps = conference.StreamKbpsWire

// window is how long each room is measured once every leg is up.
const window = 4 * time.Second

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkMesh(b *testing.B) {
	for n := 2; n <= 8; n++ {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for range b.N {
				benchRoom(b, n)
			}
		})
	}
}

func benchRoom(b *testing.B, n int) {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("p%d", i+1)
	}
	srv := conftest.Start(b, users, nil)
	ctx := context.Background()
	var phones []*conftest.Phone
	for i, u := range users {
		phones = append(phones, srv.Join(ctx, b, u, "bench", 300+float64(i)*150, conftest.Options{}))
	}
	defer func() {
		for _, p := range phones {
			p.Leave()
		}
	}()
	conftest.WaitLegs(b, phones, n-1, 30*time.Second)
	// Let the legs settle, then measure a clean window.
	time.Sleep(500 * time.Millisecond)
	before := make([]conference.Stats, n)
	for i, p := range phones {
		before[i] = p.Engine.Stats()
	}
	srvBefore := srv.Focus.Bytes("bench")
	cpu0, t0 := cpuTime(), time.Now()
	time.Sleep(window)
	cpu1, el := cpuTime(), time.Since(t0)
	srvAfter := srv.Focus.Bytes("bench")

	var upSum float64
	for i, p := range phones {
		st := p.Engine.Stats()
		secs := float64(st.DurationMS-before[i].DurationMS) / 1000
		upSum += float64(st.UploadBytes-before[i].UploadBytes) * 8 / 1000 / secs
		for _, ps := range st.Peers {
			if ps.Route != conference.RouteDirect {
				b.Fatalf("%s→%s is %s: the benchmark measures an all-direct mesh", p.User, ps.User, ps.Route)
			}
		}
	}
	upKbps := upSum / float64(n)
	b.ReportMetric(upKbps, "upload_kbps/participant")
	b.ReportMetric(float64(srvAfter-srvBefore)*8/1000/el.Seconds(), "server_media_kbps")
	b.ReportMetric(float64(cpu1-cpu0)/float64(el)/float64(n)*100, "cpu_%/participant")
	b.ReportMetric(float64(n*(n-1))*streamKbps, "sfu_server_out_kbps")
	b.ReportMetric(float64(n)*streamKbps, "sfu_server_in_kbps")
	b.ReportMetric(float64(2*n)*streamKbps, "mixer_server_kbps")
	b.ReportMetric(float64(n-1)*streamKbps, "mesh_upload_wire_kbps")
}

package relay

import (
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRelayChannelData measures the TURN packet path: ChannelData
// from a client through the relay to an echoing peer and back as
// ChannelData, with a window of datagrams in flight. Each iteration is one
// datagram relayed both ways (two relay operations); relayed_pps counts
// relay operations per second, cpu-µs/relayed the process's CPU time
// (user and system, the test's client and peer included) per relay
// operation, which a busy shared machine disturbs far less than the rate.
func BenchmarkRelayChannelData(b *testing.B) {
	for _, window := range []int{1, 32} {
		b.Run("window="+strconv.Itoa(window), func(b *testing.B) {
			benchRelay(b, window, 172)
		})
	}
}

func benchRelay(b *testing.B, window, size int) {
	r := startRelay(b, func(c *Config) { c.BandwidthPerAllocation = -1 })
	peer := newPeer(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			peer.WriteTo(buf[:n], from)
		}
	}()
	defer func() { peer.Close(); <-done }()

	c := newRawClient(b, r.udp, "alice", testRealm, "alice-pw")
	const ch = 0x4000
	c.allocateBound(ch, peer.LocalAddr())
	frame := make([]byte, 4+size)
	binary.BigEndian.PutUint16(frame[0:2], ch)
	binary.BigEndian.PutUint16(frame[2:4], uint16(size))
	buf := make([]byte, 2048)
	received, lost := 0, 0
	b.SetBytes(int64(2 * size))
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	for sent := 0; sent < b.N; {
		burst := min(window, b.N-sent)
		for range burst {
			c.conn.WriteTo(frame, c.server)
		}
		sent += burst
		for got := 0; got < burst; got++ {
			c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				lost += burst - got
				break
			}
			if n == len(frame) {
				received++
			}
		}
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(2*received)/elapsed.Seconds(), "relayed_pps")
	if received > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(2*received), "cpu-µs/relayed")
	}
	if lost > 0 {
		b.ReportMetric(float64(lost), "lost")
	}
}

// BenchmarkRelayManyClients runs 20 clients at once, each with its own
// allocation and a window of 8 datagrams in flight: the shape of
// turnutils_uclient -m 20 load, for profiling the server under it.
func BenchmarkRelayManyClients(b *testing.B) {
	const clients, window, size = 20, 8, 172
	r := startRelay(b, func(c *Config) { c.BandwidthPerAllocation = -1 })
	peer := newPeer(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			peer.WriteTo(buf[:n], from)
		}
	}()
	defer func() { peer.Close(); <-done }()
	cs := make([]*rawClient, clients)
	for i := range cs {
		cs[i] = newRawClient(b, r.udp, "alice", testRealm, "alice-pw")
		if _, _, err := cs[i].allocate(); err != nil {
			b.Fatal(err)
		}
		if err := cs[i].channelBind(0x4000, peer.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
	frame := make([]byte, 4+size)
	binary.BigEndian.PutUint16(frame[0:2], 0x4000)
	binary.BigEndian.PutUint16(frame[2:4], size)
	per := b.N/clients + 1
	received := make(chan int, clients)
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	for _, c := range cs {
		go func() {
			buf := make([]byte, 2048)
			got := 0
			for sent := 0; sent < per; {
				burst := min(window, per-sent)
				for range burst {
					c.conn.WriteTo(frame, c.server)
				}
				sent += burst
				for k := 0; k < burst; k++ {
					c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, _, err := c.conn.ReadFrom(buf); err != nil {
						break
					}
					got++
				}
			}
			received <- got
		}()
	}
	total := 0
	for range cs {
		total += <-received
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(2*total)/elapsed.Seconds(), "relayed_pps")
	if total > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(2*total), "cpu-µs/relayed")
	}
	b.ReportMetric(float64(clients*per-total), "lost")
}

func BenchmarkInspectChannelData(b *testing.B) {
	in := testInspector(true)
	frame := make([]byte, 176)
	frame[0] = 0x40
	binary.BigEndian.PutUint16(frame[2:4], 172)
	var addr net.Addr = aClient
	b.ReportAllocs()
	for b.Loop() {
		in.inspectWith(frame, len(frame), addr, aLocal, nil)
	}
}

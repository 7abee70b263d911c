package mediatest

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestImpairedPacketConnDropsDuplicatesAndReorders(t *testing.T) {
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	imp := NewPacketConn(a, Impairment{Drop: 0.1, Dup: 0.1, Reorder: 0.1, Seed: 1})
	const n = 500
	// Read concurrently: 500 datagrams would overflow the socket buffer.
	var (
		order    []int
		received atomic.Int64
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 16)
		for {
			b.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := b.ReadFrom(buf); err != nil {
				return
			}
			order = append(order, int(buf[2])<<8|int(buf[3]))
			received.Add(1)
		}
	}()
	for i := 0; i < n; i++ {
		// Fake RTP: version 2, PT 0, then a counter.
		imp.WriteTo([]byte{0x80, 0, byte(i >> 8), byte(i)}, b.LocalAddr())
		if i%20 == 19 {
			// Let the reader catch up (all but a held-back datagram) so
			// the socket buffer never overflows on a busy machine.
			c := imp.Counts()
			want := int64(c.Sent - c.Dropped + c.Duplicated - 1)
			for deadline := time.Now().Add(time.Second); received.Load() < want && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
	}
	<-done
	c := imp.Counts()
	if c.Sent != n || c.Dropped < 30 || c.Dropped > 70 || c.Duplicated < 30 || c.Reordered < 30 {
		t.Fatalf("counts %+v for 10%% each of %d", c, n)
	}
	got := map[int]int{}
	outOfOrder, last := 0, -1
	for _, i := range order {
		got[i]++
		if i < last {
			outOfOrder++
		}
		last = i
	}
	if len(order) != n-c.Dropped+c.Duplicated {
		t.Errorf("received %d datagrams, want %d", len(order), n-c.Dropped+c.Duplicated)
	}
	if len(got) != n-c.Dropped {
		t.Errorf("received %d distinct datagrams, want %d", len(got), n-c.Dropped)
	}
	if outOfOrder == 0 {
		t.Error("nothing arrived out of order")
	}
	// RTCP passes untouched by default.
	before := imp.Counts()
	imp.WriteTo([]byte{0x80, 200, 0, 6}, b.LocalAddr())
	if imp.Counts() != before {
		t.Error("RTCP was impaired")
	}
}

package vnetlab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/transport/v5/vnet"
)

// Probe ports on the server addresses (the relay has 3478).
const (
	probePort1 = 3479
	probePort2 = 3480
)

// MeasureNAT finds out how the NAT in front of h really behaves, in the
// manner of RFC 5780 but with a tiny echo protocol: mapping is read from
// the source address three server endpoints see (same IP other port,
// other IP), filtering from which of three endpoints can reach a mapping
// that was opened towards only one of them. A Public host measures as
// endpoint-independent on both counts.
func (l *Lab) MeasureNAT(ctx context.Context, h *Host) (Behaviour, error) {
	var b Behaviour
	eps := []string{
		fmt.Sprintf("%s:%d", ServerIP, probePort1),  // primary
		fmt.Sprintf("%s:%d", ServerIP, probePort2),  // same IP, other port
		fmt.Sprintf("%s:%d", ServerIP2, probePort1), // other IP
	}
	var conns []net.PacketConn
	for _, ep := range eps {
		pc, err := l.srv.ListenPacket("udp4", ep)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return b, fmt.Errorf("%w: probe server %s: %v", ErrLab, ep, err)
		}
		conns = append(conns, pc)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i, pc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveProbe(pc, i, conns)
		}()
	}

	// Mapping: one socket, three destinations.
	sock, err := h.Net.ListenPacket("udp4", h.IP+":0")
	if err != nil {
		return b, err
	}
	defer sock.Close()
	var seen [3]string
	for i, ep := range eps {
		addr, _ := net.ResolveUDPAddr("udp4", ep)
		reply, err := ask(ctx, sock, addr, "map")
		if err != nil {
			return b, fmt.Errorf("mapping probe to %s: %w", ep, err)
		}
		seen[i] = reply
	}
	switch {
	case seen[0] != seen[1]:
		b.Mapping = vnet.EndpointAddrPortDependent
	case seen[0] != seen[2]:
		b.Mapping = vnet.EndpointAddrDependent
	default:
		b.Mapping = vnet.EndpointIndependent
	}

	// Filtering: a fresh socket talks to the primary only, then asks all
	// three to answer.
	fsock, err := h.Net.ListenPacket("udp4", h.IP+":0")
	if err != nil {
		return b, err
	}
	defer fsock.Close()
	addr, _ := net.ResolveUDPAddr("udp4", eps[0])
	if _, err := fsock.WriteTo([]byte("filter"), addr); err != nil {
		return b, err
	}
	got := map[string]bool{}
	buf := make([]byte, 256)
	deadline := time.Now().Add(300 * time.Millisecond)
	for len(got) < 3 && time.Now().Before(deadline) && ctx.Err() == nil {
		_ = fsock.SetReadDeadline(deadline)
		n, _, err := fsock.ReadFrom(buf)
		if err != nil {
			break
		}
		got[string(buf[:n])] = true
	}
	if !got["from 0"] {
		return b, fmt.Errorf("%w: filtering probe: even the contacted server's answer was dropped", ErrLab)
	}
	switch {
	case got["from 2"]:
		b.Filtering = vnet.EndpointIndependent
	case got["from 1"]:
		b.Filtering = vnet.EndpointAddrDependent
	default:
		b.Filtering = vnet.EndpointAddrPortDependent
	}
	return b, nil
}

// MappingSurvives opens a NAT mapping from h towards the probe server,
// stays silent for idle, then has the server send to that mapping from the
// very address it was opened towards: the packet arrives only if the NAT
// still holds the mapping. It shows that a NAT really expires idle
// mappings, the premise of keepalive tests.
func (l *Lab) MappingSurvives(ctx context.Context, h *Host, idle time.Duration) (bool, error) {
	ep := fmt.Sprintf("%s:%d", ServerIP, probePort1)
	srv, err := l.srv.ListenPacket("udp4", ep)
	if err != nil {
		return false, fmt.Errorf("%w: probe server %s: %v", ErrLab, ep, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveProbe(srv, 0, []net.PacketConn{srv})
	}()
	addr, _ := net.ResolveUDPAddr("udp4", ep)
	sock, err := h.Net.ListenPacket("udp4", h.IP+":0")
	if err != nil {
		return false, err
	}
	defer sock.Close()
	mapped, err := ask(ctx, sock, addr, "map")
	if err != nil {
		return false, err
	}
	t := time.NewTimer(idle)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return false, ctx.Err()
	}
	other, err := h.Net.ListenPacket("udp4", h.IP+":0")
	if err != nil {
		return false, err
	}
	defer other.Close()
	if _, err := other.WriteTo([]byte("poke "+mapped), addr); err != nil {
		return false, err
	}
	buf := make([]byte, 64)
	_ = sock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, _, err := sock.ReadFrom(buf)
	return err == nil && string(buf[:n]) == "poked", nil
}

// ask sends msg and waits for one reply.
func ask(ctx context.Context, pc net.PacketConn, to net.Addr, msg string) (string, error) {
	buf := make([]byte, 256)
	for try := 0; try < 3 && ctx.Err() == nil; try++ {
		if _, err := pc.WriteTo([]byte(msg), to); err != nil {
			return "", err
		}
		_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("%w: no answer from %s", ErrLab, to)
}

// serveProbe answers "map" with the source address it sees, "filter" by
// having every probe endpoint send "from <index>" to the source, and
// "poke ADDR" by sending "poked" to ADDR.
func serveProbe(pc net.PacketConn, self int, all []net.PacketConn) {
	buf := make([]byte, 256)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		switch string(buf[:n]) {
		case "map":
			_, _ = pc.WriteTo([]byte(from.String()), from)
		case "filter":
			if self != 0 {
				continue
			}
			for i, c := range all {
				_, _ = c.WriteTo([]byte(fmt.Sprintf("from %d", i)), from)
			}
		default:
			// "poke ADDR": send to ADDR from this endpoint.
			if to, ok := strings.CutPrefix(string(buf[:n]), "poke "); ok {
				if a, err := net.ResolveUDPAddr("udp4", to); err == nil {
					_, _ = pc.WriteTo([]byte("poked"), a)
				}
			}
		}
	}
}

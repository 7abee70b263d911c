package ice

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	pice "github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Relayed candidates over UDP TURN are allocated here rather than by
// pion's agent, for one reason: pion's TURN client creates the permission
// for a new peer inside WriteTo, blocking for a round trip to the TURN
// server, and the agent sends its connectivity checks from its single task
// loop. Every check from a relayed candidate to a new peer address
// therefore stalls all checks, and responses to the peer's checks, for a
// round trip; a peer the relay refuses (private addresses: a relay must not
// reach into its operator's network) is retried, and stalls the loop again,
// on every check round until the pair fails. Measured in the in-process lab
// with 10 ms WAN hops, a direct call between two full-cone NATs took
// 130 ms of checks with pion's relay candidates and 50 ms without them.
//
// relayConn below hands pion the same allocation behind a WriteTo that
// never waits: the first packet to a new peer IP creates the permission
// on a goroutine of its own and is sent once the permission exists; later
// packets to that IP are held until then (a few; beyond that dropped, as
// checks are retransmitted anyway), and an IP the server refused is
// skipped for refusedRetry before it is tried again. TURN over TCP or TLS stays with
// pion.

// A relay also never sends to a peer address its relayed address cannot
// reach (relayReaches): a relay on a public address cannot reach a peer's
// private host candidate, and asking it to is not harmless. coturn 4.6,
// when its relay socket's send fails (ENETUNREACH on a server without a
// route into that private range), closes the whole allocation, not just
// that peer: every later ChannelData then lands in a fresh, unauthenticated
// session and is dropped ("wrote to peer 0 bytes"), our ChannelBinds get
// 438 Wrong nonce and then 400 Bad Request, and pion/turn's client closes
// the allocation on that 400. A call offering host candidates through
// coturn thus lost its relayed candidate at the first check. Such pairs can
// never succeed anyway (and a relay that does reach its operator's private
// network must not be used to), so their checks are dropped here, as the
// network would drop them.

// refusedRetry is how long a peer IP the TURN server refused a permission
// for is skipped before asking again.
const refusedRetry = time.Second

// isUDPTURN reports whether u is a TURN server reached over UDP, which
// gatherRelay handles.
func isUDPTURN(u *stun.URI) bool {
	return u.Scheme == stun.SchemeTypeTURN && (u.Proto == stun.ProtoTypeUDP || u.Proto == stun.ProtoTypeUnknown)
}

// relayGather allocates one relayed candidate on a UDP TURN server and
// adds it to the agent as a virtual candidate. gen is the session's
// gathering generation the allocation belongs to; a Restart in the
// meantime makes it stale, and it is released.
func (s *Session) gatherRelay(ctx context.Context, u *stun.URI, gen uint64) error {
	nw := s.net
	server := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	network := "udp4"
	raddr, err := nw.ResolveUDPAddr(network, server)
	if err != nil && s.cfg.IPv6 {
		network = "udp6"
		raddr, err = nw.ResolveUDPAddr(network, server)
	}
	if err != nil {
		return fmt.Errorf("resolve TURN server %s: %w", server, err)
	}
	loc, err := nw.ListenPacket(network, s.relayBindAddr(network))
	if err != nil {
		return fmt.Errorf("TURN client socket: %w", err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: raddr.String(),
		Username:       u.Username,
		Password:       u.Password,
		Conn:           loc,
		Net:            nw,
		LoggerFactory:  newLoggerFactory(s.cfg.Logger),
	})
	if err != nil {
		_ = loc.Close()
		return fmt.Errorf("TURN client: %w", err)
	}
	release := func() error {
		client.Close()
		return loc.Close()
	}
	if err := client.Listen(); err != nil {
		_ = release()
		return fmt.Errorf("TURN client: %w", err)
	}
	alloc, err := client.AllocateWithContext(ctx)
	if err != nil {
		_ = release()
		return fmt.Errorf("TURN allocation on %s: %w", server, err)
	}
	ra, ok := alloc.LocalAddr().(*net.UDPAddr)
	if !ok {
		_ = alloc.Close()
		_ = release()
		return fmt.Errorf("TURN allocation on %s: relayed address %v is not UDP", server, alloc.LocalAddr())
	}
	la, _ := loc.LocalAddr().(*net.UDPAddr)
	cfg := &pice.CandidateRelayConfig{
		Network:       "udp",
		Address:       ra.IP.String(),
		Port:          ra.Port,
		Component:     1,
		RelayProtocol: "udp",
		OnClose:       release,
	}
	if la != nil {
		cfg.RelAddr, cfg.RelPort = la.IP.String(), la.Port
	}
	cand, err := pice.NewCandidateRelay(cfg)
	if err != nil {
		_ = alloc.Close()
		_ = release()
		return fmt.Errorf("relay candidate: %w", err)
	}
	conn := &relayConn{PacketConn: alloc, perms: map[string]*permState{}, wg: &s.relayWG, log: s.log}
	if ip, ok := netip.AddrFromSlice(ra.IP); ok {
		conn.relayed = ip.Unmap()
	}
	s.mu.Lock()
	stale := s.relayGen != gen || s.closed.Load()
	s.mu.Unlock()
	if stale {
		_ = conn.Close()
		_ = release()
		return nil
	}
	if err := s.agent.AddVirtualCandidate(cand, conn); err != nil {
		_ = conn.Close()
		_ = release()
		return fmt.Errorf("add relay candidate: %w", err)
	}
	s.log.Debug("gathered candidate", "candidate", cand.Marshal())
	return nil
}

// relayBindAddr is the local address of the socket towards the TURN
// server: the first host address the address filters allow, or any.
func (s *Session) relayBindAddr(network string) string {
	wildcard := "0.0.0.0:0"
	if network == "udp6" {
		wildcard = "[::]:0"
	}
	if s.cfg.IPFilter == nil && s.cfg.InterfaceFilter == nil {
		return wildcard
	}
	ifaces, err := s.net.Interfaces()
	if err != nil {
		return wildcard
	}
	for _, ifc := range ifaces {
		if s.cfg.InterfaceFilter != nil && !s.cfg.InterfaceFilter(ifc.Name) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			var ip net.IP
			switch v := a.(type) {
			case *net.IPNet:
				ip = v.IP
			case *net.IPAddr:
				ip = v.IP
			}
			if ip == nil || (ip.To4() == nil) != (network == "udp6") {
				continue
			}
			if ip.IsLoopback() && !s.cfg.IncludeLoopback {
				continue
			}
			if s.cfg.IPFilter != nil && !s.cfg.IPFilter(ip) {
				continue
			}
			return net.JoinHostPort(ip.String(), "0")
		}
	}
	return wildcard
}

// maxQueued bounds the packets held for a peer while its permission is
// being created; later ones are dropped, as a network may drop them.
const maxQueued = 8

// queued is a packet held until its peer's permission exists.
type queued struct {
	p    []byte
	addr net.Addr
}

// scope is how far an address reaches, for relayReaches.
type scope int

const (
	scopeNone scope = iota // unspecified, multicast, broadcast: never a peer
	scopeLoopback
	scopePrivate // RFC 1918, RFC 4193, link-local, RFC 6598 shared space
	scopePublic
)

// sharedSpace is RFC 6598's carrier-grade NAT range, private in practice.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

func scopeOf(ip netip.Addr) scope {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsUnspecified(), ip.IsMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return scopeNone
	case ip.IsLoopback():
		return scopeLoopback
	case ip.IsPrivate(), ip.IsLinkLocalUnicast(), sharedSpace.Contains(ip):
		return scopePrivate
	}
	return scopePublic
}

// relayReaches reports whether a TURN relay sending from relayed can reach
// peer: the same address family, and a peer scope the relay's own address
// can route to. A loopback relay reaches only loopback peers, a relay on a
// private address private and public ones, a public relay only public ones
// (a TURN server on the internet has no business in, and usually no route
// to, the private network behind a peer's NAT).
func relayReaches(relayed, peer netip.Addr) bool {
	relayed, peer = relayed.Unmap(), peer.Unmap()
	if relayed.Is4() != peer.Is4() {
		return false
	}
	switch ps := scopeOf(peer); scopeOf(relayed) {
	case scopeLoopback:
		return ps == scopeLoopback
	case scopePrivate:
		return ps == scopePrivate || ps == scopePublic
	case scopePublic:
		return ps == scopePublic
	}
	return false
}

// permState is what relayConn knows about one peer IP.
type permState struct {
	pending bool
	ok      bool
	// unreachable marks a peer IP outside the relay's reach
	// (relayReaches); packets to it are dropped without asking the server.
	unreachable bool
	// queue holds packets written while pending.
	queue []queued
	// retryAt is when a refused IP may be asked for again.
	retryAt time.Time
}

// relayConn is a TURN allocation whose WriteTo never blocks on a
// permission round trip (see the comment at the top of this file).
type relayConn struct {
	net.PacketConn
	log *slog.Logger
	// relayed is the allocation's relayed address; peers it cannot reach
	// are never sent to. Zero means no such filtering.
	relayed netip.Addr
	// wg counts permission goroutines; the Session waits for them after
	// the agent (and with it the TURN client) is closed.
	wg *sync.WaitGroup

	mu     sync.Mutex // guards perms and closed
	perms  map[string]*permState
	closed bool
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.PacketConn.WriteTo(p, addr)
	}
	key := ua.IP.String()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	st := c.perms[key]
	if st == nil && c.relayed.IsValid() {
		if ip, ok := netip.AddrFromSlice(ua.IP); !ok || !relayReaches(c.relayed, ip) {
			st = &permState{unreachable: true}
			c.perms[key] = st
			c.log.Debug("TURN relay cannot reach this peer; its checks are dropped", "relayed", c.relayed, "peer", key)
		}
	}
	switch {
	case st != nil && st.unreachable:
		c.mu.Unlock()
		return len(p), nil
	case st != nil && st.ok:
		c.mu.Unlock()
		return c.PacketConn.WriteTo(p, addr)
	case st != nil && st.pending:
		// Held until the permission exists; beyond maxQueued, dropped.
		if len(st.queue) < maxQueued {
			st.queue = append(st.queue, queued{append([]byte(nil), p...), addr})
		}
		c.mu.Unlock()
		return len(p), nil
	case st != nil && time.Now().Before(st.retryAt):
		// The server refused this peer a moment ago: dropped.
		c.mu.Unlock()
		return len(p), nil
	}
	st = &permState{pending: true}
	c.perms[key] = st
	c.wg.Add(1)
	c.mu.Unlock()
	first := queued{append([]byte(nil), p...), addr}
	go func() {
		defer c.wg.Done()
		// The TURN client creates the permission, then sends.
		if _, err := c.PacketConn.WriteTo(first.p, first.addr); err != nil {
			c.mu.Lock()
			c.perms[key] = &permState{retryAt: time.Now().Add(refusedRetry)}
			c.mu.Unlock()
			c.log.Debug("TURN permission refused or failed", "peer", key, "err", err)
			return
		}
		for {
			c.mu.Lock()
			q := st.queue
			st.queue = nil
			if len(q) == 0 {
				st.pending, st.ok = false, true
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			for _, m := range q {
				_, _ = c.PacketConn.WriteTo(m.p, m.addr)
			}
		}
	}()
	return len(p), nil
}

func (c *relayConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.PacketConn.Close()
}

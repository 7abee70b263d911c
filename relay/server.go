package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/reuseport"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// closeWait bounds how long Close waits for pion's read loops and
// allocations to wind down after their sockets are closed.
const closeWait = 5 * time.Second

var (
	errPeerRefused = errors.New("peer address refused by policy")
	errNoEvenPort  = errors.New("no even relay port with a free successor")
)

// Endpoint is one address the server listens on.
type Endpoint struct {
	// Network is "udp", "tcp" or "tls".
	Network string
	// Addr is the bound address (the real port when 0 was asked for).
	Addr net.Addr
}

// Server is a running STUN/TURN relay. Create it with New; Close stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	filter  PeerFilter
	auth    *authenticator
	quota   *quota
	turn    *turn.Server
	inspect *inspector
	resv    *reservations
	usage   *usage

	endpoints []Endpoint

	// relays maps a relay address (as pion reports it in events) to its
	// *relayConn, for permission bookkeeping.
	relays sync.Map
	// tcpAllocs maps a TCP allocation's relay address to its *tcpAlloc,
	// for metering the peer connections of Connect requests.
	tcpAllocs sync.Map

	// loops counts what must end before Close returns: listener read
	// loops, TCP/TLS client connections and relay sockets.
	loops sync.WaitGroup

	// live holds the 5-tuples (client, local) that have an allocation.
	live sync.Map

	// allocs finds a UDP client's relay socket for the ChannelData fast
	// path; fastToPeer and fastToClient count the datagrams it relayed
	// (added per batch), so tests can tell which path a datagram took.
	allocs                   udpAllocs
	fastToPeer, fastToClient atomic.Uint64
	// listeners has one batched UDP listener per local address, filled in
	// New and read-only afterwards: the first route to a client, before
	// its own ChannelData shows which socket the kernel gives it.
	listeners map[netip.AddrPort]*listenConn

	mu      sync.Mutex // guards streams and closed
	streams map[*streamConn]struct{}
	closed  bool

	closeOnce sync.Once
	closeErr  error
}

// New opens the listeners and starts serving.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Net == nil {
		if cfg.Net, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("host network: %w", err)
		}
	}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("subsystem", "relay"),
		metrics:   m,
		filter:    PeerFilter{Allow: cfg.AllowPeers, Deny: cfg.DenyPeers},
		auth:      &authenticator{realm: cfg.Realm, users: cfg.Users, secret: cfg.Secret, now: cfg.Now},
		quota:     newQuota(cfg.MaxAllocationsPerUser, cfg.MaxAllocations),
		streams:   map[*streamConn]struct{}{},
		usage:     newUsage(),
		listeners: map[netip.AddrPort]*listenConn{},
	}
	s.inspect = s.newInspector()
	s.resv = newReservations(cfg.Now)

	var pcs []turn.PacketConnConfig
	var lns []turn.ListenerConfig
	var opened []interface{ Close() error }
	fail := func(err error) (*Server, error) {
		for _, c := range opened {
			c.Close()
		}
		return nil, err
	}
	for _, l := range cfg.Listeners {
		switch {
		case l.PacketConn != nil:
			opened = append(opened, l.PacketConn)
			cfgs, err := s.packetConfigs([]net.PacketConn{l.PacketConn})
			if err != nil {
				return fail(err)
			}
			pcs = append(pcs, cfgs...)
		case l.Listener != nil:
			opened = append(opened, l.Listener)
			lc, err := s.listenerConfig("tcp", l.Listener)
			if err != nil {
				return fail(err)
			}
			lns = append(lns, lc)
		case l.Network == "udp" || l.Network == "udp4" || l.Network == "udp6":
			socks, err := s.listenUDP(l.Network, l.Addr)
			if err != nil {
				return fail(err)
			}
			for _, c := range socks {
				opened = append(opened, c)
			}
			cfgs, err := s.packetConfigs(socks)
			if err != nil {
				return fail(err)
			}
			pcs = append(pcs, cfgs...)
		default: // tcp, tcp4, tcp6, tls
			network := l.Network
			if network == "tls" {
				network = "tcp"
			}
			ln, err := cfg.Net.CreateListenConfig(&net.ListenConfig{}).Listen(context.Background(), network, l.Addr)
			if err != nil {
				return fail(fmt.Errorf("%s listener: %w", l.Network, err))
			}
			opened = append(opened, ln)
			kind := "tcp"
			if l.Network == "tls" {
				ln = tls.NewListener(ln, cfg.TLSConfig)
				kind = "tls"
			}
			lc, err := s.listenerConfig(kind, ln)
			if err != nil {
				return fail(err)
			}
			lns = append(lns, lc)
		}
	}

	// pion runs one read loop per packet conn and one accept loop per
	// listener; each ends when its socket is closed (listenConn and
	// streamListener call Done).
	s.loops.Add(len(pcs) + len(lns))
	s.turn, err = turn.NewServer(turn.ServerConfig{
		PacketConnConfigs:  pcs,
		ListenerConfigs:    lns,
		LoggerFactory:      pionLogs{log: s.log},
		Realm:              cfg.Realm,
		AuthHandler:        s.authHandler,
		QuotaHandler:       s.quotaHandler,
		EventHandler:       s.eventHandler(),
		AllocationLifetime: cfg.DefaultLifetime,
		PermissionTimeout:  cfg.PermissionLifetime,
		ChannelBindTimeout: cfg.ChannelLifetime,
	})
	if err != nil {
		return fail(fmt.Errorf("pion turn server: %w", err))
	}
	for _, e := range s.endpoints {
		s.log.Info("listening", "network", e.Network, "addr", e.Addr.String())
	}
	return s, nil
}

// listenerBuffer is the socket buffer asked for on UDP listeners: bursts
// from many clients arrive on few sockets, and the kernel default (about
// 200 kB) overflows under a few thousand packets in flight. The kernel caps
// it at net.core.rmem_max / wmem_max.
const listenerBuffer = 2 << 20

// setBuffers enlarges a socket's buffers where the socket supports it.
func setBuffers(pc net.PacketConn) {
	if c, ok := pc.(interface{ SetReadBuffer(int) error }); ok {
		c.SetReadBuffer(listenerBuffer) //nolint:errcheck // best effort; the kernel caps it.
	}
	if c, ok := pc.(interface{ SetWriteBuffer(int) error }); ok {
		c.SetWriteBuffer(listenerBuffer) //nolint:errcheck // best effort.
	}
}

// listenUDP opens ReadLoops sockets on one address with SO_REUSEPORT, so
// the kernel spreads clients (by 4-tuple hash, so one client always meets
// the same socket and allocation manager) over several read loops.
//
// It first binds the address without SO_REUSEPORT and lets go of it: that
// fails as any server would when the port is taken, instead of silently
// sharing it with another process that also set SO_REUSEPORT.
func (s *Server) listenUDP(network, addr string) ([]net.PacketConn, error) {
	n := s.cfg.ReadLoops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if _, isHost := s.cfg.Net.(*stdnet.Net); !isHost {
		n = 1 // virtual networks have no SO_REUSEPORT
	}
	if n == 1 {
		pc, err := s.cfg.Net.ListenPacket(network, addr)
		if err != nil {
			return nil, fmt.Errorf("udp listener: %w", err)
		}
		setBuffers(pc)
		return []net.PacketConn{pc}, nil
	}
	probe, err := s.cfg.Net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("udp listener: %w", err)
	}
	bound := probe.LocalAddr().String()
	probe.Close()
	lc := s.cfg.Net.CreateListenConfig(&net.ListenConfig{Control: reuseport.Control})
	var socks []net.PacketConn
	for range n {
		pc, err := lc.ListenPacket(context.Background(), network, bound)
		if err != nil {
			for _, c := range socks {
				c.Close()
			}
			return nil, fmt.Errorf("udp listener %s (SO_REUSEPORT): %w", bound, err)
		}
		setBuffers(pc)
		socks = append(socks, pc)
	}
	return socks, nil
}

// packetConfigs wraps UDP sockets for pion, each with a relay address
// generator and the peer filter.
func (s *Server) packetConfigs(socks []net.PacketConn) ([]turn.PacketConnConfig, error) {
	gen, err := s.relayGenerator(socks[0].LocalAddr())
	if err != nil {
		return nil, err
	}
	var out []turn.PacketConnConfig
	for _, pc := range socks {
		lc := newListenConn(pc, s)
		if _, seen := s.listeners[lc.local]; lc.batched && !seen {
			s.listeners[lc.local] = lc
		}
		out = append(out, turn.PacketConnConfig{
			PacketConn:            lc,
			RelayAddressGenerator: gen,
			PermissionHandler:     s.permissionHandler,
		})
	}
	s.endpoints = append(s.endpoints, Endpoint{Network: "udp", Addr: socks[0].LocalAddr()})
	return out, nil
}

func (s *Server) listenerConfig(kind string, ln net.Listener) (turn.ListenerConfig, error) {
	gen, err := s.relayGenerator(ln.Addr())
	if err != nil {
		return turn.ListenerConfig{}, err
	}
	s.endpoints = append(s.endpoints, Endpoint{Network: kind, Addr: ln.Addr()})
	return turn.ListenerConfig{
		Listener:              &streamListener{Listener: ln, s: s, tls: kind == "tls"},
		RelayAddressGenerator: gen,
		PermissionHandler:     s.permissionHandler,
	}, nil
}

// relayGenerator picks where relay sockets bind and which address they
// advertise for clients of a listener at local.
func (s *Server) relayGenerator(local net.Addr) (*relayGen, error) {
	var ip netip.Addr
	switch a := local.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(local.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap()
	bind := s.cfg.RelayIP
	if !bind.IsValid() {
		bind = ip
	}
	if !bind.IsValid() {
		bind = netip.IPv4Unspecified()
	}
	advertise := s.cfg.PublicIP
	if !advertise.IsValid() {
		advertise = bind
		if bind.IsUnspecified() {
			a, err := firstInterfaceAddr(s.cfg.Net, bind.Is4())
			if err != nil {
				return nil, fmt.Errorf("%w: listening on %s: set PublicIP (--public-ip) or RelayIP: %v", ErrBadConfig, local, err)
			}
			advertise = a
		}
	}
	var inner turn.RelayAddressGenerator
	if s.cfg.RelayPortMin != 0 {
		inner = &turn.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(advertise.AsSlice()),
			MinPort:      s.cfg.RelayPortMin,
			MaxPort:      s.cfg.RelayPortMax,
			MaxRetries:   64,
			Address:      bind.String(),
			Net:          s.cfg.Net,
		}
	} else {
		inner = &turn.RelayAddressGeneratorStatic{
			RelayAddress: net.IP(advertise.AsSlice()),
			Address:      bind.String(),
			Net:          s.cfg.Net,
		}
	}
	g := &relayGen{s: s, inner: inner}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("relay addresses: %w", err)
	}
	return g, nil
}

// firstInterfaceAddr finds an address to advertise when relay sockets bind
// a wildcard address and no public address was given.
func firstInterfaceAddr(n transport.Net, want4 bool) (netip.Addr, error) {
	ifs, err := n.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr().Unmap()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.Is4() != want4 {
				continue
			}
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("no non-loopback interface address")
}

// Endpoints lists the addresses the server listens on (one per UDP
// address however many SO_REUSEPORT sockets serve it).
func (s *Server) Endpoints() []Endpoint { return append([]Endpoint(nil), s.endpoints...) }

// AllocationCount is the number of live allocations.
func (s *Server) AllocationCount() int { return s.turn.AllocationCount() }

// Close stops the server: it closes the listeners, every client TCP/TLS
// connection and every allocation, and waits for pion's loops to end. It
// is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.turn.Close()
		s.mu.Lock()
		s.closed = true
		streams := make([]*streamConn, 0, len(s.streams))
		for c := range s.streams {
			streams = append(streams, c)
		}
		s.mu.Unlock()
		for _, c := range streams {
			c.Close()
		}
		done := make(chan struct{})
		go func() {
			s.loops.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			s.log.Warn("close: relay loops still running after timeout", "timeout", closeWait)
		}
	})
	return s.closeErr
}

func (s *Server) acquire(user string) error {
	err := s.quota.acquire(user)
	switch {
	case errors.Is(err, errQuotaTotal):
		s.metrics.quotaTotal.Inc()
		s.log.Warn("allocation refused: server capacity reached", "user", user, "max", s.cfg.MaxAllocations)
	case errors.Is(err, errQuotaUser):
		s.metrics.quotaUser.Inc()
	}
	return err
}

// authHandler is pion's AuthHandler: it returns the user ID and key the
// request must be signed with.
func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	user, key, err := s.auth.key(ra.Username, ra.Realm)
	if err != nil {
		reason := "unknown_user"
		switch {
		case errors.Is(err, ErrExpired):
			reason = "expired"
		case errors.Is(err, errWrongRealm):
			reason = "wrong_realm"
		}
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		s.log.Debug("auth refused", "client", ra.SrcAddr, "username", ra.Username, "reason", reason, "err", err)
		return "", nil, false
	}
	return user, key, true
}

// keyFor serves the lifetime clamp, without counting failures (pion's
// auth of the same message counts them).
func (s *Server) keyFor(username, realm string) (string, []byte, bool) {
	id, key, err := s.auth.key(username, realm)
	return id, key, err == nil
}

func (s *Server) quotaHandler(user, _ string, src net.Addr) bool {
	if s.quota.userHasRoom(user) {
		return true
	}
	s.metrics.quotaUser.Inc()
	s.log.Info("allocation refused: user quota reached", "user", user, "client", src, "max", s.cfg.MaxAllocationsPerUser)
	return false
}

// permissionHandler is pion's PermissionHandler, asked for CreatePermission,
// ChannelBind and Connect.
func (s *Server) permissionHandler(client net.Addr, peer net.IP) bool {
	if s.filter.AllowedIP(peer) {
		return true
	}
	s.metrics.refusedPeers.Inc()
	s.log.Info("peer refused by policy", "client", client, "peer", peer)
	return false
}

func (s *Server) newInspector() *inspector {
	return &inspector{
		minL:        s.cfg.MinLifetime,
		maxL:        s.cfg.MaxLifetime,
		keyFor:      s.keyFor,
		peerAllowed: s.filter.AllowedIP,
		hasAllocation: func(client, local net.Addr) bool {
			_, ok := s.live.Load(tupleKey(client, local))
			return ok
		},
		refused: func(peer net.IP) {
			s.metrics.refusedPeers.Inc()
			s.log.Info("peer refused by policy", "peer", peer, "request", "ChannelBind")
		},
	}
}

func (s *Server) eventHandler() turn.EventHandler {
	m := s.metrics
	perm := func(relay net.Addr, peer net.IP, on bool) {
		if v, ok := s.relays.Load(relay.String()); ok {
			if !v.(*relayConn).setPermitted(peer, on) {
				return
			}
		}
		if on {
			m.permissions.Inc()
		} else {
			m.permissions.Dec()
		}
	}
	return turn.EventHandler{
		OnAuth: func(src, _ net.Addr, _, username, _, method string, ok bool) {
			if !ok {
				m.authFailures.WithLabelValues("bad_password").Inc()
				s.log.Debug("auth refused", "client", src, "username", username, "method", method, "reason", "bad_password")
			}
		},
		OnAllocationCreated: func(src, dst net.Addr, proto, user, _ string, relay net.Addr, _ int) {
			s.live.Store(tupleKey(src, dst), struct{}{})
			if v, ok := s.relays.Load(relay.String()); ok {
				if _, isUDP := src.(*net.UDPAddr); isUDP {
					s.bindClient(v.(*relayConn), src, dst)
				}
			}
			m.allocations.Inc()
			s.log.Debug("allocation created", "client", src, "transport", proto, "user", user, "relay", relay)
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, user, _ string) {
			s.live.Delete(tupleKey(src, dst))
			m.allocations.Dec()
			s.log.Debug("allocation deleted", "client", src, "user", user)
		},
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			perm(relay, peer, true)
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			perm(relay, peer, false)
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			if v, ok := s.relays.Load(relay.String()); ok {
				v.(*relayConn).setChannel(num, peer, true)
			}
			m.channels.Inc()
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			if v, ok := s.relays.Load(relay.String()); ok {
				v.(*relayConn).setChannel(num, peer, false)
			}
			m.channels.Dec()
		},
	}
}

func tupleKey(client, local net.Addr) string {
	return client.String() + "|" + local.String()
}

// Package vnetlab is punchline's in-process NAT lab: a simulated Internet
// built from pion/transport's vnet, with a WAN router, private LANs behind
// NAT routers of the four classic RFC 4787 behaviours (full cone,
// restricted cone, port-restricted cone, symmetric), hosts with public
// addresses, and punchline's own STUN/TURN relay (package relay) on the
// WAN. Everything runs in memory: no root, no sockets on the host, so the
// NAT matrix runs in every `go test` and in `punchline demo`.
//
// Addresses: the relay answers on 203.0.113.1:3478 (with a second address
// 203.0.113.2 for NAT behaviour probes); NAT routers take 198.51.100.N as
// their public address and serve 10.0.N.0/24; public hosts get
// 198.51.100.(100+N). All are documentation ranges: nothing here is, or
// looks like, a real network.
package vnetlab

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/relay"
)

// Lab addresses.
const (
	// ServerIP is the relay's address on the WAN.
	ServerIP = "203.0.113.1"
	// ServerIP2 is a second server address, used only to measure NAT
	// mapping and filtering behaviour.
	ServerIP2 = "203.0.113.2"
	// RelayPort is the STUN/TURN port.
	RelayPort = 3478
	// TURNUser and TURNPassword are the lab's TURN account.
	TURNUser, TURNPassword = "lab", "lab-secret"
	// TURNRealm is the relay's realm.
	TURNRealm = "punchline-lab"
)

// DefaultWANDelay is the one-way delay the WAN router adds to every
// packet crossing it, so that setup times and the race between direct and
// relayed pairs look like a real network rather than a memory copy.
const DefaultWANDelay = 10 * time.Millisecond

// NAT is the behaviour of the router in front of a site.
type NAT int

// NAT behaviours (RFC 4787 terms in the comments).
const (
	// Public: no NAT, the host has a public address.
	Public NAT = iota
	// FullCone: endpoint-independent mapping and filtering.
	FullCone
	// RestrictedCone: endpoint-independent mapping, address-dependent
	// filtering.
	RestrictedCone
	// PortRestrictedCone: endpoint-independent mapping,
	// address-and-port-dependent filtering (Linux masquerade).
	PortRestrictedCone
	// Symmetric: address-and-port-dependent mapping and filtering.
	Symmetric
)

// NATTypes are the four NAT behaviours of the matrix, in order.
var NATTypes = []NAT{FullCone, RestrictedCone, PortRestrictedCone, Symmetric}

// String returns a short name for tables.
func (n NAT) String() string {
	switch n {
	case Public:
		return "public"
	case FullCone:
		return "full-cone"
	case RestrictedCone:
		return "restricted"
	case PortRestrictedCone:
		return "port-restricted"
	case Symmetric:
		return "symmetric"
	}
	return fmt.Sprintf("NAT(%d)", int(n))
}

// Behaviour is a NAT's mapping and filtering in RFC 4787 terms.
type Behaviour struct {
	Mapping, Filtering vnet.EndpointDependencyType
}

// depName names an EndpointDependencyType the RFC 4787 way.
func depName(d vnet.EndpointDependencyType) string {
	switch d {
	case vnet.EndpointIndependent:
		return "endpoint-independent"
	case vnet.EndpointAddrDependent:
		return "address-dependent"
	case vnet.EndpointAddrPortDependent:
		return "address-and-port-dependent"
	}
	return "unknown"
}

func (b Behaviour) String() string {
	return depName(b.Mapping) + " mapping, " + depName(b.Filtering) + " filtering"
}

// Behaviour is what the NAT type should do.
func (n NAT) Behaviour() Behaviour {
	switch n {
	case FullCone:
		return Behaviour{vnet.EndpointIndependent, vnet.EndpointIndependent}
	case RestrictedCone:
		return Behaviour{vnet.EndpointIndependent, vnet.EndpointAddrDependent}
	case PortRestrictedCone:
		return Behaviour{vnet.EndpointIndependent, vnet.EndpointAddrPortDependent}
	case Symmetric:
		return Behaviour{vnet.EndpointAddrPortDependent, vnet.EndpointAddrPortDependent}
	}
	return Behaviour{}
}

// Site is a LAN behind one router (or, for Public, hosts on the WAN).
type Site struct {
	// Name labels the site's hosts ("alice").
	Name string
	// NAT is the router's behaviour.
	NAT NAT
	// Hosts is how many hosts the site has; zero means one.
	Hosts int
	// MappingLifetime is how long the NAT keeps an idle UDP mapping
	// (outbound packets refresh it). Zero means two minutes, longer than
	// any test; tests of keepalives set a few seconds.
	MappingLifetime time.Duration
}

// Config describes a lab.
type Config struct {
	// Sites are the LANs; each gets its own router and public address.
	Sites []Site
	// WANDelay is the WAN router's one-way delay. Zero means
	// DefaultWANDelay; negative means none.
	WANDelay time.Duration
	// Logger receives the relay's and ICE sessions' logs; nil discards.
	Logger *slog.Logger
	// ICE, if set, adjusts every ICE configuration ICEConfig returns
	// (tests shorten timeouts with it).
	ICE func(h *Host, c *ice.Config)
	// RelayUsers and RelayRealm replace the relay's single lab account
	// (TURNUser) with real accounts, e.g. relay.StoreUsers over the store
	// a SIP server in the lab uses, so phones authenticate to TURN with
	// their SIP credentials as they do against punchline serve.
	RelayUsers relay.UserKeys
	RelayRealm string
}

// Host is one simulated machine.
type Host struct {
	// Name is the site name, with "-2", "-3"... for further hosts.
	Name string
	// Site is the site's index in Config.Sites.
	Site int
	// NAT is the behaviour of the router in front of it.
	NAT NAT
	// Net is its network stack: pass it as ice.Config.Net.
	Net *vnet.Net
	// IP is its own address; PublicIP that of its router (equal for a
	// Public host).
	IP, PublicIP string
}

// Lab is a running simulated network with a relay.
type Lab struct {
	cfg   Config
	log   *slog.Logger
	wan   *vnet.Router
	srv   *vnet.Net
	relay *relay.Server
	// Hosts in site order.
	Hosts []*Host

	closeOnce sync.Once
}

// vnetBuildMu serializes the creation of vnet routers and nets; see New.
var vnetBuildMu sync.Mutex

// ErrLab wraps failures to build the simulated network.
var ErrLab = errors.New("vnetlab")

// New builds and starts a lab.
func New(cfg Config) (*Lab, error) {
	if len(cfg.Sites) == 0 {
		return nil, fmt.Errorf("%w: no sites", ErrLab)
	}
	if len(cfg.Sites) > 99 {
		return nil, fmt.Errorf("%w: at most 99 sites", ErrLab)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{cfg: cfg, log: log.With("subsystem", "vnetlab")}
	// pion's vnet numbers interfaces from a package-level counter without
	// a lock, so labs built concurrently (punchline demo runs several
	// calls at once) must not create routers and nets at the same time.
	vnetBuildMu.Lock()
	err := l.build()
	vnetBuildMu.Unlock()
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// quietLogs keeps vnet's own logger silent; the relay and ICE log through
// slog.
var quietLogs = logging.NewDefaultLoggerFactory()

func init() { quietLogs.DefaultLogLevel = logging.LogLevelError }

func (l *Lab) build() error {
	delay := l.cfg.WANDelay
	if delay == 0 {
		delay = DefaultWANDelay
	}
	if delay < 0 {
		delay = 0
	}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{Name: "wan", CIDR: "0.0.0.0/0", MinDelay: delay, LoggerFactory: quietLogs})
	if err != nil {
		return fmt.Errorf("%w: wan: %v", ErrLab, err)
	}
	l.wan = wan
	l.srv, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ServerIP, ServerIP2}})
	if err != nil {
		return fmt.Errorf("%w: server net: %v", ErrLab, err)
	}
	if err := wan.AddNet(l.srv); err != nil {
		return fmt.Errorf("%w: server net: %v", ErrLab, err)
	}
	for i, site := range l.cfg.Sites {
		n := site.Hosts
		if n <= 0 {
			n = 1
		}
		if n > 50 {
			return fmt.Errorf("%w: site %q: at most 50 hosts", ErrLab, site.Name)
		}
		if err := l.addSite(i, site, n); err != nil {
			return err
		}
	}
	if err := wan.Start(); err != nil {
		return fmt.Errorf("%w: start: %v", ErrLab, err)
	}
	return l.startRelay()
}

func hostName(site string, k int) string {
	if k == 0 {
		return site
	}
	return fmt.Sprintf("%s-%d", site, k+1)
}

func (l *Lab) addSite(i int, site Site, n int) error {
	if site.NAT == Public {
		for k := 0; k < n; k++ {
			ip := fmt.Sprintf("198.51.100.%d", 100+i*10+k)
			if 100+i*10+k > 254 {
				return fmt.Errorf("%w: too many public hosts", ErrLab)
			}
			hn, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
			if err != nil {
				return fmt.Errorf("%w: %v", ErrLab, err)
			}
			if err := l.wan.AddNet(hn); err != nil {
				return fmt.Errorf("%w: %v", ErrLab, err)
			}
			l.Hosts = append(l.Hosts, &Host{Name: hostName(site.Name, k), Site: i, NAT: Public, Net: hn, IP: ip, PublicIP: ip})
		}
		return nil
	}
	b := site.NAT.Behaviour()
	pub := fmt.Sprintf("198.51.100.%d", i+1)
	lifetime := site.MappingLifetime
	if lifetime <= 0 {
		lifetime = 2 * time.Minute
	}
	lan, err := vnet.NewRouter(&vnet.RouterConfig{
		Name:      "nat-" + site.Name,
		StaticIPs: []string{pub},
		CIDR:      fmt.Sprintf("10.0.%d.0/24", i+1),
		NATType: &vnet.NATType{
			MappingBehavior:   b.Mapping,
			FilteringBehavior: b.Filtering,
			MappingLifeTime:   lifetime,
		},
		LoggerFactory: quietLogs,
	})
	if err != nil {
		return fmt.Errorf("%w: router %s: %v", ErrLab, site.Name, err)
	}
	for k := 0; k < n; k++ {
		ip := fmt.Sprintf("10.0.%d.%d", i+1, k+2)
		hn, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrLab, err)
		}
		if err := lan.AddNet(hn); err != nil {
			return fmt.Errorf("%w: %v", ErrLab, err)
		}
		l.Hosts = append(l.Hosts, &Host{Name: hostName(site.Name, k), Site: i, NAT: site.NAT, Net: hn, IP: ip, PublicIP: pub})
	}
	if err := l.wan.AddRouter(lan); err != nil {
		return fmt.Errorf("%w: router %s: %v", ErrLab, site.Name, err)
	}
	return nil
}

// startRelay runs punchline's relay on the WAN, on a vnet socket.
func (l *Lab) startRelay() error {
	pc, err := l.srv.ListenPacket("udp4", fmt.Sprintf("%s:%d", ServerIP, RelayPort))
	if err != nil {
		return fmt.Errorf("%w: relay socket: %v", ErrLab, err)
	}
	key := relay.LongTermKey(TURNUser, TURNRealm, TURNPassword)
	var users relay.UserKeys = relay.UserKeysFunc(func(user string) ([]byte, error) {
		if user != TURNUser {
			return nil, relay.ErrNoSuchUser
		}
		return key, nil
	})
	realm := TURNRealm
	if l.cfg.RelayUsers != nil {
		users, realm = l.cfg.RelayUsers, l.cfg.RelayRealm
	}
	rs, err := relay.New(relay.Config{
		Realm:     realm,
		Users:     users,
		Listeners: []relay.Listener{{PacketConn: pc}},
		Net:       l.srv,
		ReadLoops: 1,
		RelayIP:   netip.MustParseAddr(ServerIP),
		// The simulated public addresses are documentation ranges the
		// default peer policy admits; the LANs behind the NATs stay
		// refused, as they would be on a real relay.
		Logger: l.log,
	})
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("%w: relay: %v", ErrLab, err)
	}
	l.relay = rs
	return nil
}

// Host returns the host with the given name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// ServerNet is the network stack of the server host on the WAN
// (ServerIP and ServerIP2): a SIP server in the lab listens on it.
func (l *Lab) ServerNet() *vnet.Net { return l.srv }

// Relay is the lab's relay server.
func (l *Lab) Relay() *relay.Server { return l.relay }

// ICEConfig returns an ICE configuration for a host: its vnet stack, and
// the lab relay as STUN and TURN server.
func (l *Lab) ICEConfig(h *Host) ice.Config {
	addr := fmt.Sprintf("%s:%d", ServerIP, RelayPort)
	c := ice.Config{
		Net: h.Net,
		Servers: []ice.Server{
			{URL: "stun:" + addr},
			{URL: "turn:" + addr + "?transport=udp", Username: TURNUser, Password: TURNPassword},
		},
		Logger: l.log,
	}
	if l.cfg.ICE != nil {
		l.cfg.ICE(h, &c)
	}
	return c
}

// AddWANFilter installs a filter on the WAN router: packets for which f
// returns false are dropped. Tests use it to cut a direct path mid-call.
func (l *Lab) AddWANFilter(f func(src, dst net.Addr) bool) {
	l.wan.AddChunkFilter(func(c vnet.Chunk) bool { return f(c.SourceAddr(), c.DestinationAddr()) })
}

// Close stops the relay and the routers. It is idempotent.
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		if l.relay != nil {
			_ = l.relay.Close()
		}
		if l.wan != nil {
			_ = l.wan.Stop()
		}
	})
}

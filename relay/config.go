package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/transport/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of Config. Each says what it controls and why.
const (
	// DefaultRealm is the long-term credential realm; it must equal the SIP
	// realm for the stored HA1 to serve as the TURN key.
	DefaultRealm = "punchline"
	// DefaultMaxAllocationsPerUser bounds one account's allocations. A
	// phone needs one per call leg and address family; a conference phone
	// a handful. 64 leaves room while stopping one leaked credential from
	// exhausting the port range.
	DefaultMaxAllocationsPerUser = 64
	// DefaultMaxAllocations bounds the whole server; each allocation holds
	// a socket and a goroutine.
	DefaultMaxAllocations = 10000
	// DefaultBandwidthPerAllocation is 4 MB/s in each direction: two
	// orders of magnitude above a G.711 call (about 11 kB/s with headers),
	// enough for video, and a ceiling on what one allocation can flood.
	DefaultBandwidthPerAllocation = 4 << 20
	// DefaultLifetime is the allocation lifetime when the client asks for
	// none (RFC 8656 §3.2: 10 minutes).
	DefaultLifetime = 10 * time.Minute
	// DefaultMinLifetime is the shortest lifetime a client may request;
	// shorter requests get this. It stops allocate/expire churn.
	DefaultMinLifetime = time.Minute
	// DefaultMaxLifetime is the longest lifetime granted (RFC 8656 §7.2
	// recommends 3600 s). pion treats 1 h and more as "use the default",
	// so the cap sits just below it.
	DefaultMaxLifetime = time.Hour - time.Second
	// DefaultStreamIdleTimeout is how long a TCP/TLS client may stay
	// silent before it has an allocation: long enough for a slow handshake
	// and a 401 round trip, short enough that idle connections cannot pile
	// up.
	DefaultStreamIdleTimeout = 30 * time.Second
)

// Listener is one STUN/TURN listening endpoint. Either Network and Addr
// name what to open (through Config.Net), or PacketConn/Listener hands in a
// ready socket (a vnet conn in NAT tests); the server then owns and closes it.
type Listener struct {
	// Network is "udp", "tcp" or "tls" (udp4/udp6/tcp4/tcp6 accepted).
	Network string
	// Addr is host:port; port 0 picks a free port.
	Addr string
	// PacketConn is a ready UDP socket (Network and Addr are ignored).
	PacketConn net.PacketConn
	// Listener is a ready stream listener (TCP or TLS; Network and Addr
	// are ignored).
	Listener net.Listener
}

// ParseListener parses "transport:host:port" as used on the command line
// (udp:127.0.0.1:3478, tcp:[::1]:3478, tls:0.0.0.0:443).
func ParseListener(s string) (Listener, error) {
	network, addr, ok := strings.Cut(s, ":")
	if !ok {
		return Listener{}, fmt.Errorf("%w %q: want transport:host:port", ErrBadListener, s)
	}
	switch network {
	case "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6", "tls":
	default:
		return Listener{}, fmt.Errorf("%w %q: transport must be udp, tcp or tls", ErrBadListener, s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Listener{}, fmt.Errorf("%w %q: %v", ErrBadListener, s, err)
	}
	return Listener{Network: network, Addr: addr}, nil
}

// UserKeys looks up the long-term credential key of an account:
// MD5(user ":" realm ":" password), 16 bytes. It returns an error wrapping
// ErrNoSuchUser for an unknown account.
type UserKeys interface {
	TURNKey(user string) ([]byte, error)
}

// UserKeysFunc adapts a function to UserKeys.
type UserKeysFunc func(user string) ([]byte, error)

// TURNKey implements UserKeys.
func (f UserKeysFunc) TURNKey(user string) ([]byte, error) { return f(user) }

// Config configures a Server. The zero value of every field is usable
// except that Listeners and one of Users or Secret must be set.
type Config struct {
	// Realm is the long-term credential realm. Zero: DefaultRealm.
	Realm string
	// Users gives the keys of stored accounts. Nil: only TURN REST
	// credentials are accepted.
	Users UserKeys
	// Secret enables TURN REST ephemeral credentials. Empty: disabled.
	Secret string

	// Listeners are the STUN/TURN endpoints. Required.
	Listeners []Listener
	// Net opens sockets (listeners and relay sockets). Nil: the host
	// network (pion stdnet). NAT tests pass a vnet.Net.
	Net transport.Net
	// TLSConfig serves "tls" listeners. Nil: a tls listener is an error.
	TLSConfig *tls.Config
	// ReadLoops is the number of sockets (SO_REUSEPORT), each with its own
	// read loop, opened per UDP listen address, so that several cores
	// relay. Zero: the number of CPUs.
	ReadLoops int

	// PublicIP is the address written into XOR-RELAYED-ADDRESS, for a
	// server behind 1:1 NAT. Zero: the address relay sockets are bound to.
	PublicIP netip.Addr
	// RelayIP is the local address relay sockets bind to. Zero: the
	// listener's address, or if that is a wildcard, the first non-loopback
	// interface address.
	RelayIP netip.Addr
	// RelayPortMin and RelayPortMax bound relay ports (inclusive). Zero:
	// the kernel chooses.
	RelayPortMin, RelayPortMax uint16

	// AllowPeers opens peer ranges the default policy refuses.
	AllowPeers []netip.Prefix
	// DenyPeers refuses further peer ranges. An explicit deny wins over an
	// explicit allow.
	DenyPeers []netip.Prefix

	// MaxAllocationsPerUser is answered with 486 Allocation Quota Reached.
	// Zero: DefaultMaxAllocationsPerUser; negative: unlimited.
	MaxAllocationsPerUser int
	// MaxAllocations is the server-wide bound, answered with 508
	// Insufficient Capacity. Zero: DefaultMaxAllocations; negative:
	// unlimited.
	MaxAllocations int
	// BandwidthPerAllocation caps relayed payload bytes per second in each
	// direction of one allocation; excess datagrams are dropped, and TCP
	// (RFC 6062) data connections are slowed to it instead. Zero:
	// DefaultBandwidthPerAllocation; negative: unlimited.
	BandwidthPerAllocation int64

	// DefaultLifetime, MinLifetime and MaxLifetime bound allocation
	// lifetimes; requests outside [Min, Max] are clamped. Zero: the
	// Default* constants.
	DefaultLifetime, MinLifetime, MaxLifetime time.Duration
	// StreamIdleTimeout closes a TCP/TLS client connection that sends
	// nothing for this long without an allocation (with one, the maximum
	// lifetime is added). Zero: DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
	// PermissionLifetime and ChannelLifetime override pion's 5 and 10
	// minute defaults (tests shorten them). Zero: pion's defaults.
	PermissionLifetime, ChannelLifetime time.Duration

	// Logger receives the relay's logs. Nil: discard.
	Logger *slog.Logger
	// Metrics is where the relay's collectors are registered. Nil: a
	// private registry, not exported anywhere.
	Metrics prometheus.Registerer
	// Now is the clock for REST credential expiry and the bandwidth
	// buckets. Nil: time.Now.
	Now func() time.Time
}

// withDefaults returns cfg with zero values replaced and checks it.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Listeners) == 0 {
		return cfg, ErrNoListeners
	}
	if cfg.Users == nil && cfg.Secret == "" {
		return cfg, ErrNoAuth
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.MaxAllocationsPerUser == 0 {
		cfg.MaxAllocationsPerUser = DefaultMaxAllocationsPerUser
	}
	if cfg.MaxAllocations == 0 {
		cfg.MaxAllocations = DefaultMaxAllocations
	}
	if cfg.BandwidthPerAllocation == 0 {
		cfg.BandwidthPerAllocation = DefaultBandwidthPerAllocation
	}
	if cfg.DefaultLifetime == 0 {
		cfg.DefaultLifetime = DefaultLifetime
	}
	if cfg.MinLifetime == 0 {
		cfg.MinLifetime = DefaultMinLifetime
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxLifetime >= time.Hour {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MinLifetime > cfg.MaxLifetime {
		return cfg, fmt.Errorf("%w: MinLifetime %v above MaxLifetime %v", ErrBadConfig, cfg.MinLifetime, cfg.MaxLifetime)
	}
	cfg.DefaultLifetime = min(max(cfg.DefaultLifetime, cfg.MinLifetime), cfg.MaxLifetime)
	if (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) || cfg.RelayPortMin > cfg.RelayPortMax {
		return cfg, fmt.Errorf("%w: relay port range %d-%d", ErrBadConfig, cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for i, l := range cfg.Listeners {
		if l.PacketConn != nil || l.Listener != nil {
			continue
		}
		switch l.Network {
		case "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6":
		case "tls":
			if cfg.TLSConfig == nil {
				return cfg, ErrTLSConfig
			}
		default:
			return cfg, fmt.Errorf("%w %d: network %q", ErrBadListener, i, l.Network)
		}
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			return cfg, fmt.Errorf("%w %d: %v", ErrBadListener, i, err)
		}
	}
	return cfg, nil
}

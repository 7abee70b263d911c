package sip

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/punchline/punchline/internal/store"
)

// Listener is one SIP listening socket. Either Addr is set and Start binds
// it, or a ready socket is handed in (PacketConn for udp, Listener for the
// stream transports), which is how tests and in-process labs supply their
// own network.
type Listener struct {
	// Transport is "udp", "tcp", "tls" or "ws".
	Transport string
	// Addr is host:port to bind; port 0 picks a free port.
	Addr string
	// PacketConn, when set for udp, is served instead of binding Addr.
	PacketConn net.PacketConn
	// Listener, when set for tcp/tls/ws, is served instead of binding Addr.
	// For tls it must already be a TLS listener.
	Listener net.Listener
}

// ParseListener parses "transport:host:port" (the CLI form, e.g.
// "udp:127.0.0.1:5060").
func ParseListener(s string) (Listener, error) {
	tr, addr, ok := strings.Cut(s, ":")
	if !ok || addr == "" {
		return Listener{}, fmt.Errorf("%w: %q: want transport:host:port", ErrBadListener, s)
	}
	tr = strings.ToLower(tr)
	switch tr {
	case "udp", "tcp", "tls", "ws":
	default:
		return Listener{}, fmt.Errorf("%w: %q: transport must be udp, tcp, tls or ws", ErrBadListener, s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Listener{}, fmt.Errorf("%w: %q: %v", ErrBadListener, s, err)
	}
	return Listener{Transport: tr, Addr: addr}, nil
}

// RateLimit configures the per-source-IP request limiter (like Kamailio's
// pike module): a token bucket per source IP.
type RateLimit struct {
	// PerSecond is the sustained request rate allowed per source IP.
	// Zero means DefaultRatePerSecond; negative disables the limiter.
	PerSecond float64
	// Burst is the bucket depth. Zero means twice PerSecond.
	Burst float64
}

// Defaults. They are chosen for softphones on home and office networks:
// a phone sends a handful of requests per call and one REGISTER every few
// minutes, so a few hundred requests per second from one address is
// either a very large office behind one NAT or an attack.
const (
	DefaultMinExpires     = 60
	DefaultMaxExpires     = 3600
	DefaultExpires        = 3600
	DefaultMaxContacts    = 16
	DefaultNonceLifetime  = 5 * time.Minute
	DefaultFlushInterval  = 500 * time.Millisecond
	DefaultRatePerSecond  = 300
	DefaultMaxMessageSize = 8192
	// DefaultRoomPrefix marks Request-URI users that are conference rooms.
	DefaultRoomPrefix = "room-"
)

// RoomHandler serves requests addressed to conference rooms (Request-URI
// users with Config.RoomPrefix). The proxy has authenticated the caller
// (user is the account name) before it calls HandleRoom; the handler must
// answer tx. Requests inside a room's dialog reach the handler too when
// their Request-URI is the focus' Contact (a room user at this server's
// address): SUBSCRIBE refreshes and re-INVITEs authenticated (user set),
// BYE and the rest with user "" (the handler matches them to its dialogs),
// ACK with a nil tx.
type RoomHandler interface {
	HandleRoom(req *SIPRequest, tx ServerTransaction, user string)
}

// Config configures a Server. The zero value of every field but Store and
// Listeners is usable.
type Config struct {
	// Realm is the digest realm. Default "punchline". It must match the
	// realm the accounts were created with.
	Realm string
	// Listeners are the sockets to serve. At least one is required.
	Listeners []Listener
	// Host is the address written into Via and Record-Route. Default: the
	// IP of each listener, or 127.0.0.1 for a wildcard bind.
	Host string
	// Store holds accounts and persisted bindings. Required.
	Store *store.Store
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Metrics, when set, receives the server's Prometheus collectors.
	Metrics prometheus.Registerer
	// TLS is the server certificate configuration for tls listeners.
	TLS *tls.Config

	// MinExpires, MaxExpires and DefaultExpires bound registration
	// lifetimes in seconds. Defaults 60, 3600, 3600.
	MinExpires, MaxExpires, DefaultExpires int
	// MaxContacts caps the bindings per AOR; the oldest is replaced
	// beyond it. Default 16.
	MaxContacts int
	// NonceLifetime is how long a digest nonce is accepted before the
	// client is asked to retry with stale=true. Default 5 minutes.
	NonceLifetime time.Duration
	// Algorithms are the digest algorithms offered, in order of preference
	// (one challenge each). Default MD5 then SHA-256: many deployed phones
	// (and sipp) answer only the first challenge they see and know only
	// MD5; RFC 8760 clients pick SHA-256 from the second.
	Algorithms []string
	// FlushInterval is how often changed bindings are written to the store.
	// Default 500 ms.
	FlushInterval time.Duration
	// RateLimit is the per-source request limiter.
	RateLimit RateLimit
	// MaxMessageSize is the largest UDP datagram accepted; larger ones get
	// 513 Message Too Large. Default 8192.
	MaxMessageSize int
	// PingInterval is how often UDP contacts get a keepalive OPTIONS
	// (DefaultPingInterval is a good value). Zero disables pings: load
	// generators such as sipp treat an unexpected OPTIONS as a failed
	// call, so pinging is opt-in.
	PingInterval time.Duration
	// RoomPrefix marks conference room users. Default "room-".
	RoomPrefix string
	// RoomHandler serves room requests; nil answers them 404.
	RoomHandler RoomHandler
	// UserAgent is the Server header value. Default "punchline".
	UserAgent string
}

func (c *Config) validate() error {
	if c.Store == nil {
		return ErrNoStore
	}
	if len(c.Listeners) == 0 {
		return ErrNoListeners
	}
	for i, l := range c.Listeners {
		switch strings.ToLower(l.Transport) {
		case "udp":
			if l.PacketConn == nil && l.Addr == "" {
				return fmt.Errorf("%w: listener %d has no address", ErrBadListener, i)
			}
		case "tcp", "ws":
			if l.Listener == nil && l.Addr == "" {
				return fmt.Errorf("%w: listener %d has no address", ErrBadListener, i)
			}
		case "tls":
			if l.Listener == nil && (c.TLS == nil || (len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil)) {
				return ErrTLSConfig
			}
		default:
			return fmt.Errorf("%w: transport %q", ErrBadListener, l.Transport)
		}
	}
	if c.Realm == "" {
		c.Realm = "punchline"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MinExpires <= 0 {
		c.MinExpires = DefaultMinExpires
	}
	if c.MaxExpires <= 0 {
		c.MaxExpires = DefaultMaxExpires
	}
	if c.MaxExpires < c.MinExpires {
		c.MaxExpires = c.MinExpires
	}
	if c.DefaultExpires <= 0 {
		c.DefaultExpires = DefaultExpires
	}
	c.DefaultExpires = min(max(c.DefaultExpires, c.MinExpires), c.MaxExpires)
	if c.MaxContacts <= 0 {
		c.MaxContacts = DefaultMaxContacts
	}
	if c.NonceLifetime <= 0 {
		c.NonceLifetime = DefaultNonceLifetime
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"MD5", "SHA-256"}
	}
	for _, a := range c.Algorithms {
		if a != "MD5" && a != "SHA-256" {
			return fmt.Errorf("sip: digest algorithm %q: want MD5 or SHA-256", a)
		}
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.RateLimit.PerSecond == 0 {
		c.RateLimit.PerSecond = DefaultRatePerSecond
	}
	if c.RateLimit.Burst <= 0 {
		c.RateLimit.Burst = 2 * c.RateLimit.PerSecond
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.RoomPrefix == "" {
		c.RoomPrefix = DefaultRoomPrefix
	}
	if c.UserAgent == "" {
		c.UserAgent = "punchline"
	}
	return nil
}

// Aliases so that room handlers need not import sipgo's packages just to
// name the types of the HandleRoom arguments.
type (
	// SIPRequest is a parsed SIP request.
	SIPRequest = siplib.Request
	// ServerTransaction is the server transaction a request arrived in.
	ServerTransaction = siplib.ServerTransaction
)

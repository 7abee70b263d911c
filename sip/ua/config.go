package ua

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5"
)

// Defaults for the zero values of Config.
const (
	// DefaultExpires is the registration lifetime we ask for. Five minutes is
	// what most softphones ask; the registrar may grant less.
	DefaultExpires = 300 * time.Second
	// DefaultKeepAlive is the NAT keepalive period. UDP bindings in home
	// routers commonly expire after 30–60 s; RFC 5626 §4.4.1 suggests
	// 95–120 s for TCP and less for UDP, and 25 s is what most softphones use.
	DefaultKeepAlive = 25 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the re-register backoff.
	DefaultRetryMin = time.Second
	DefaultRetryMax = 60 * time.Second
	// DefaultMaxCalls is how many calls may be up at once before a new
	// INVITE is answered 486 Busy Here.
	DefaultMaxCalls = 1
)

// Config configures a UA. Only Server and User are required.
type Config struct {
	// Server is the registrar and outbound proxy, "host:port" or "host"
	// (port 5060).
	Server string
	// Transport is "udp" (default) or "tcp".
	Transport string
	// User and Password are the SIP account's credentials.
	User     string
	Password string
	// Domain is the host part of our address-of-record, sip:User@Domain.
	// Empty means the host of Server.
	Domain string
	// DisplayName goes into From. Empty means none.
	DisplayName string
	// LocalAddr is the local address to send from, "ip" or "ip:port".
	// Empty means the address the kernel would use to reach Server, on an
	// ephemeral port.
	LocalAddr string
	// Net opens the UDP socket. Nil means the operating system's network
	// (pion's stdnet); a vnet.Net puts the UA inside a simulated network.
	// TCP always uses the operating system's network.
	Net transport.Net
	// Expires is the registration lifetime to ask for. Zero means
	// DefaultExpires.
	Expires time.Duration
	// KeepAlive is the NAT keepalive period towards the server. Zero means
	// DefaultKeepAlive; negative disables keepalives.
	KeepAlive time.Duration
	// KeepAliveCRLF makes UDP keepalives a CRLF pair instead of a STUN
	// binding request, for registrars that do not answer STUN on their SIP
	// port. TCP keepalives are always CRLF pairs.
	KeepAliveCRLF bool
	// RetryMin and RetryMax bound the backoff between failed registration
	// attempts. Zero means DefaultRetryMin / DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// MaxCalls is how many calls may exist at once; an INVITE beyond that
	// is answered 486. Zero means DefaultMaxCalls.
	MaxCalls int
	// UserAgent is the User-Agent header. Empty means "punchline".
	UserAgent string
	// Logger receives the UA's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Server == "" {
		return errors.New("no server given")
	}
	if c.User == "" {
		return errors.New("no user given")
	}
	switch strings.ToLower(c.Transport) {
	case "":
		c.Transport = "udp"
	case "udp", "tcp":
		c.Transport = strings.ToLower(c.Transport)
	default:
		return fmt.Errorf("transport %q: want udp or tcp", c.Transport)
	}
	host, port, err := splitHostPortDefault(c.Server, 5060)
	if err != nil {
		return fmt.Errorf("server %q: %w", c.Server, err)
	}
	c.Server = net.JoinHostPort(host, strconv.Itoa(port))
	if c.Domain == "" {
		c.Domain = host
	}
	if c.Expires == 0 {
		c.Expires = DefaultExpires
	}
	if c.Expires < 0 {
		return errors.New("expires must be positive")
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	if c.UserAgent == "" {
		c.UserAgent = "punchline"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// splitHostPortDefault splits "host:port", "host", "[v6]:port" or "v6".
func splitHostPortDefault(s string, defPort int) (string, int, error) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return "", 0, fmt.Errorf("bad port %q", p)
		}
		if h == "" {
			return "", 0, errors.New("empty host")
		}
		return h, n, nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if h == "" || strings.ContainsAny(h, "/ ") {
		return "", 0, fmt.Errorf("bad address %q", s)
	}
	return h, defPort, nil
}

package ice

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	pice "github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
)

// Policy says which candidates a session may use (the WebRTC
// iceTransportPolicy).
type Policy int

const (
	// PolicyAll uses host, server-reflexive and relayed candidates: direct
	// where the NATs allow it, the relay otherwise.
	PolicyAll Policy = iota
	// PolicyRelay gathers and offers only relayed candidates, so media
	// always goes through the TURN server (privacy, or testing the relay).
	PolicyRelay
)

// String returns "all" or "relay", the names the CLI uses.
func (p Policy) String() string {
	if p == PolicyRelay {
		return "relay"
	}
	return "all"
}

// ParsePolicy reads "all" (or "") and "relay".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "all":
		return PolicyAll, nil
	case "relay":
		return PolicyRelay, nil
	}
	return 0, fmt.Errorf("ice: unknown policy %q (want all or relay)", s)
}

// Server is one STUN or TURN server.
type Server struct {
	// URL is a RFC 7064/7065 URI: "stun:host:port", "turn:host:port",
	// "turn:host:port?transport=tcp" or "turns:host:port".
	URL string
	// Username and Password are the TURN long-term credentials; STUN
	// servers ignore them.
	Username, Password string
}

// Defaults for the timing knobs. They are chosen for voice calls: setup
// must be quick, a relayed pair must only win when no direct pair works,
// and a dead path must be noticed within seconds so the phone can restart
// ICE onto the relay.
const (
	// DefaultCheckInterval paces connectivity checks while connecting;
	// pion's 200 ms costs whole seconds when a NAT opens late.
	DefaultCheckInterval = 20 * time.Millisecond
	// DefaultRelayAcceptanceWait is how long a succeeded relayed pair waits
	// before it may be nominated, giving direct pairs the chance to win;
	// only calls that end up relayed pay it. A direct pair validates a few
	// round trips after the caller starts its checks (50-60 ms in the
	// in-process lab with 10 ms WAN hops), so 300 ms suffices on an idle
	// machine with short paths. Real paths are longer (200-300 ms round
	// trips between continents, a first check lost while a NAT opens), and
	// on a loaded 2-core runner the real-time lab once saw a direct pair
	// through a symmetric NAT validate after 760 ms (before relay.go took
	// the TURN permission stalls out of the check loop). A call that goes
	// through the relay although a direct path exists is the worse
	// failure, so 1 s.
	DefaultRelayAcceptanceWait = time.Second
	// DefaultMaxBindingRequests is how many unanswered checks fail a pair.
	// At 20 ms pacing, 100 checks keep a pair alive for 2 s, long enough
	// for the far side to start its checks and open its NAT.
	DefaultMaxBindingRequests = 100
	// DefaultKeepaliveInterval is the pace of consent/keepalive checks on
	// the selected pair; it also keeps NAT mappings open while on hold
	// (home routers forget idle UDP mappings after as little as 30 s, some
	// sooner). pion pings at least every 2 s whatever this says; a negative
	// value switches keepalives off.
	DefaultKeepaliveInterval = time.Second
	// DefaultDisconnectedTimeout: nothing heard for this long marks the
	// session disconnected (a phone may then restart ICE).
	DefaultDisconnectedTimeout = 3 * time.Second
	// DefaultFailedTimeout: disconnected for this much longer marks it failed.
	DefaultFailedTimeout = 10 * time.Second
	// DefaultGatherTimeout bounds Gather: a STUN or TURN server that does
	// not answer must not hold up the call.
	DefaultGatherTimeout = 3 * time.Second
)

// Config configures a Session. The zero value gathers host candidates only
// (no servers) on the real network, with call-tuned timing.
type Config struct {
	// Net is the network to gather on. Nil means the host's network
	// (pion's stdnet); tests pass a vnet.Net to run behind simulated NATs.
	Net transport.Net
	// Servers are the STUN and TURN servers. Empty means host candidates
	// only.
	Servers []Server
	// Policy selects all candidates (default) or relayed ones only.
	Policy Policy
	// Lite makes this an ICE-lite agent (RFC 8445 §2.5): host candidates
	// only, no checks of its own. Only for hosts with a public address.
	Lite bool
	// Logger receives pion's ICE log lines; nil discards them.
	Logger *slog.Logger

	// IncludeLoopback gathers host candidates on loopback interfaces
	// (pion skips them by default). Tests on one machine set it.
	IncludeLoopback bool
	// IPFilter, if set, keeps only host addresses for which it returns
	// true (for instance loopback only, in tests).
	IPFilter func(net.IP) bool
	// InterfaceFilter, if set, keeps only interfaces whose name it accepts.
	InterfaceFilter func(string) bool
	// IPv6 also gathers IPv6 candidates. Default: IPv4 only.
	IPv6 bool
	// PortMin and PortMax bound local UDP ports; zero means any port.
	PortMin, PortMax uint16
	// BuiltinRelay lets pion's agent allocate relayed candidates on UDP
	// TURN servers itself, as it does for TCP and TLS ones. Default off:
	// this package allocates them, because pion's own relayed candidates
	// stall every connectivity check while a TURN permission is created
	// (see relay.go). Kept for comparison benchmarks.
	BuiltinRelay bool
	// MDNS enables resolving .local host candidates (RFC 8839 with
	// draft-ietf-mmusic-mdns-ice-candidates), as browsers send. Default
	// off: it opens a multicast socket, and browsers' srflx and relayed
	// candidates work without it.
	MDNS bool

	// GatherTimeout bounds Gather. Zero means DefaultGatherTimeout.
	GatherTimeout time.Duration
	// CheckInterval: zero means DefaultCheckInterval.
	CheckInterval time.Duration
	// HostAcceptanceWait, SrflxAcceptanceWait and PrflxAcceptanceWait delay
	// nomination of succeeded pairs of those types; zero (the default)
	// nominates at once.
	HostAcceptanceWait, SrflxAcceptanceWait, PrflxAcceptanceWait time.Duration
	// RelayAcceptanceWait: zero means DefaultRelayAcceptanceWait; negative
	// means no wait.
	RelayAcceptanceWait time.Duration
	// MaxBindingRequests: zero means DefaultMaxBindingRequests.
	MaxBindingRequests uint16
	// KeepaliveInterval: zero means DefaultKeepaliveInterval; negative
	// disables keepalives.
	KeepaliveInterval time.Duration
	// DisconnectedTimeout: zero means DefaultDisconnectedTimeout; negative
	// never declares the session disconnected.
	DisconnectedTimeout time.Duration
	// FailedTimeout: zero means DefaultFailedTimeout; negative never
	// declares it failed.
	FailedTimeout time.Duration
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	if d < 0 {
		return 0
	}
	return d
}

// relayWait is the relayed-pair acceptance wait. With PolicyRelay every
// pair is relayed, so there is nothing to wait for.
func (c *Config) relayWait() time.Duration {
	if c.Policy == PolicyRelay && c.RelayAcceptanceWait == 0 {
		return 0
	}
	return orDefault(c.RelayAcceptanceWait, DefaultRelayAcceptanceWait)
}

// parseServers turns Servers into pion URIs.
func (c *Config) parseServers() ([]*stun.URI, error) {
	var urls []*stun.URI
	for _, s := range c.Servers {
		u, err := stun.ParseURI(s.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadServer, s.URL, err)
		}
		u.Username = s.Username
		u.Password = s.Password
		urls = append(urls, u)
	}
	return urls, nil
}

func (c *Config) validate() error {
	if c.PortMax < c.PortMin {
		return fmt.Errorf("ice: PortMax %d below PortMin %d", c.PortMax, c.PortMin)
	}
	if c.Lite && c.Policy == PolicyRelay {
		return fmt.Errorf("ice: an ICE-lite agent has no relayed candidates, so it cannot use PolicyRelay")
	}
	_, err := c.parseServers()
	return err
}

// agentOptions turns the Config into pion agent options.
func (c *Config) agentOptions() ([]pice.AgentOption, error) {
	urls, err := c.parseServers()
	if err != nil {
		return nil, err
	}
	if !c.BuiltinRelay {
		// UDP TURN servers are ours to allocate on (Session.gatherRelay).
		urls = slices.DeleteFunc(urls, isUDPTURN)
	}
	networks := []pice.NetworkType{pice.NetworkTypeUDP4}
	if c.IPv6 {
		networks = append(networks, pice.NetworkTypeUDP6)
	}
	maxReq := c.MaxBindingRequests
	if maxReq == 0 {
		maxReq = DefaultMaxBindingRequests
	}
	opts := []pice.AgentOption{
		pice.WithNetworkTypes(networks),
		pice.WithUrls(urls),
		pice.WithCheckInterval(orDefault(c.CheckInterval, DefaultCheckInterval)),
		pice.WithHostAcceptanceMinWait(max(c.HostAcceptanceWait, 0)),
		pice.WithSrflxAcceptanceMinWait(max(c.SrflxAcceptanceWait, 0)),
		pice.WithPrflxAcceptanceMinWait(max(c.PrflxAcceptanceWait, 0)),
		pice.WithRelayAcceptanceMinWait(c.relayWait()),
		pice.WithMaxBindingRequests(maxReq),
		pice.WithKeepaliveInterval(orDefault(c.KeepaliveInterval, DefaultKeepaliveInterval)),
		pice.WithDisconnectedTimeout(orDefault(c.DisconnectedTimeout, DefaultDisconnectedTimeout)),
		pice.WithFailedTimeout(orDefault(c.FailedTimeout, DefaultFailedTimeout)),
		pice.WithSTUNGatherTimeout(orDefault(c.GatherTimeout, DefaultGatherTimeout)),
		pice.WithLoggerFactory(newLoggerFactory(c.Logger)),
	}
	if c.Net != nil {
		opts = append(opts, pice.WithNet(c.Net))
	}
	if !c.MDNS {
		opts = append(opts, pice.WithMulticastDNSMode(pice.MulticastDNSModeDisabled))
	}
	if c.IncludeLoopback {
		opts = append(opts, pice.WithIncludeLoopback())
	}
	if c.IPFilter != nil {
		opts = append(opts, pice.WithIPFilter(c.IPFilter))
	}
	if c.InterfaceFilter != nil {
		opts = append(opts, pice.WithInterfaceFilter(c.InterfaceFilter))
	}
	if c.PortMin != 0 || c.PortMax != 0 {
		opts = append(opts, pice.WithPortRange(c.PortMin, c.PortMax))
	}
	if c.Lite {
		opts = append(opts, pice.WithICELite(true),
			pice.WithCandidateTypes([]pice.CandidateType{pice.CandidateTypeHost}))
	}
	if c.Policy == PolicyRelay {
		opts = append(opts, pice.WithCandidateTypes([]pice.CandidateType{pice.CandidateTypeRelay}))
	}
	return opts, nil
}

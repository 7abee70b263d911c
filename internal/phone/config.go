package phone

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/transport/v5"

	"github.com/punchline/punchline/ice"
)

// DefaultRelayPort is where the SIP server's own STUN/TURN relay listens
// unless told otherwise (the IANA port for STUN and TURN).
const DefaultRelayPort = 3478

// DefaultConnectTimeout bounds ICE connectivity checks at call setup.
// Pairs through NATs answer within a second; the relay wait is 300 ms; ten
// seconds leaves room for slow TURN allocations and lossy links.
const DefaultConnectTimeout = 10 * time.Second

// Config configures a Phone. Server and User are required.
type Config struct {
	// Server is the SIP server, "host:port" (port 5060 if omitted).
	Server string
	// User and Password are the account's credentials, for SIP digest and,
	// by default, for TURN.
	User, Password string
	// Realm is the domain of our address-of-record, sip:User@Realm.
	// Empty means the host of Server.
	Realm string
	// Transport is the SIP transport, "udp" (default) or "tcp".
	Transport string
	// STUN and TURN override the ICE servers. Nil means the server's own
	// relay: stun:HOST:3478 and turn:HOST:3478 with the SIP credentials.
	// An empty non-nil slice means none. TURN URIs get the SIP credentials
	// unless TURNUser is set.
	STUN, TURN []string
	// TURNUser and TURNPassword replace the SIP credentials for TURN.
	TURNUser, TURNPassword string
	// ICEPolicy is ice.PolicyAll (default: direct where possible) or
	// ice.PolicyRelay (always through the relay).
	ICEPolicy ice.Policy
	// LocalIP, if set, is the only local address used, for SIP and media
	// (a phone inside a network namespace, a multi-homed host).
	LocalIP net.IP
	// Net is the network for media sockets and ICE; nil means the
	// operating system's.
	Net transport.Net
	// SIPNet is the network for SIP over UDP; nil means Net. (SIP over
	// TCP always uses the operating system's network.) Tests put media in
	// a simulated network while signaling stays on loopback.
	SIPNet transport.Net
	// ICE lets tests and tools tune the ICE sessions; Servers, Policy, Net
	// and the address filters are filled in from the fields above.
	ICE ice.Config
	// SRTP says whether calls encrypt their media (SDES-SRTP); the zero
	// value is SRTPOptional: offer SRTP, fall back to plain RTP for a peer
	// without it.
	SRTP SRTPMode
	// ConnectTimeout bounds ICE checks at setup. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAlive is the SIP NAT keepalive period when idle (ua default 25 s).
	KeepAlive time.Duration
	// KeepAliveInCall is the SIP keepalive period while a call is up. Zero
	// means DefaultKeepAliveInCall.
	KeepAliveInCall time.Duration
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultKeepAliveInCall is the SIP keepalive period during a call. The
// hang-up must reach a phone behind a NAT whose UDP mappings may expire in
// as little as 5 s of silence on the signaling flow (some CGNATs, routers
// with short conntrack timeouts); during a call one small STUN packet every
// 4 s is nothing next to 50 RTP packets a second.
const DefaultKeepAliveInCall = 4 * time.Second

func (c *Config) validate() error {
	if c.Server == "" {
		return errors.New("no --server given")
	}
	if c.User == "" {
		return errors.New("no --user given")
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepAliveInCall <= 0 {
		c.KeepAliveInCall = DefaultKeepAliveInCall
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// serverHost returns the host part of Server.
func (c *Config) serverHost() string {
	if h, _, err := net.SplitHostPort(c.Server); err == nil {
		return h
	}
	return strings.Trim(c.Server, "[]")
}

// iceServers builds the STUN/TURN list: the overrides, or the server's own
// relay with the SIP credentials.
func (c *Config) iceServers() ([]ice.Server, error) {
	host := c.serverHost()
	relay := net.JoinHostPort(host, strconv.Itoa(DefaultRelayPort))
	stuns, turns := c.STUN, c.TURN
	if stuns == nil {
		stuns = []string{"stun:" + relay}
	}
	if turns == nil {
		turns = []string{"turn:" + relay + "?transport=udp"}
	}
	user, pw := c.User, c.Password
	if c.TURNUser != "" {
		user, pw = c.TURNUser, c.TURNPassword
	}
	var out []ice.Server
	for _, s := range stuns {
		if !strings.HasPrefix(s, "stun:") && !strings.HasPrefix(s, "stuns:") {
			s = "stun:" + s
		}
		out = append(out, ice.Server{URL: s})
	}
	for _, s := range turns {
		if !strings.HasPrefix(s, "turn:") && !strings.HasPrefix(s, "turns:") {
			s = "turn:" + s
		}
		out = append(out, ice.Server{URL: s, Username: user, Password: pw})
	}
	if c.ICEPolicy == ice.PolicyRelay && len(turns) == 0 {
		return nil, fmt.Errorf("--ice-policy relay needs a TURN server")
	}
	return out, nil
}

// ICEConfig completes cfg.ICE for one session: the STUN/TURN servers (the
// overrides, or the server's own relay with the SIP credentials), the
// policy, the network and the host-address filter (only LocalIP if set;
// only loopback when the server is reached over loopback on the real
// network, since both phones then run on this host). serverIP is the SIP
// server's resolved address; nil skips the loopback rule.
func (c *Config) ICEConfig(serverIP net.IP) (ice.Config, error) {
	ic := c.ICE
	servers, err := c.iceServers()
	if err != nil {
		return ic, err
	}
	ic.Servers = servers
	ic.Policy = c.ICEPolicy
	if c.Net != nil {
		ic.Net = c.Net
	}
	if ic.Logger == nil {
		ic.Logger = c.Logger.With("subsystem", "ice")
	}
	switch {
	case c.LocalIP != nil && ic.IPFilter == nil:
		want := c.LocalIP
		ic.IPFilter = func(ip net.IP) bool { return ip.Equal(want) }
		ic.IncludeLoopback = ic.IncludeLoopback || want.IsLoopback()
	case c.Net == nil && serverIP != nil && serverIP.IsLoopback() && ic.IPFilter == nil:
		// A server on loopback means both phones run on this host: the
		// loopback address is the one path that surely works between them,
		// and other interfaces would only add candidates to check.
		ic.IncludeLoopback = true
		ic.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
	}
	return ic, nil
}

// TransportOrDefault returns the SIP transport in use, "udp" by default.
func (c *Config) TransportOrDefault() string {
	if c.Transport == "" {
		return "udp"
	}
	return strings.ToLower(c.Transport)
}

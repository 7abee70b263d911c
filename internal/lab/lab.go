package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Addresses of the public segment. TEST-NET-3 (RFC 5737) is reserved for
// documentation, so it cannot clash with anything real, and it exists only
// inside the lab's namespaces anyway.
var (
	wanPrefix = netip.MustParsePrefix("203.0.113.0/24")
	// serverAddr is where punchline serve listens.
	serverAddr = netip.MustParseAddr("203.0.113.1")
	// probeAddrs are the two addresses of the RFC 5780 probe responder.
	probeAddrs = [2]netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("203.0.113.3")}
)

// Probe responder ports: two, so filtering can be probed by port too.
const (
	probePort    = 3478
	probeAltPort = 3479
)

// Config describes a lab topology. The zero value is a public segment with
// the server addresses and nothing else.
type Config struct {
	// LANs are private networks, each behind its own NAT router.
	LANs []LANConfig
	// PublicHosts is the number of hosts with an address on the public
	// segment and no NAT in front of them. Zero means none.
	PublicHosts int
	// Probe is the command line prefix that runs the natprobe tool (see
	// ProbeMain), e.g. {"/path/natprobe"}. It runs inside the namespaces.
	// Empty disables MeasureNAT, VerifyNAT and the other probes.
	Probe []string
	// Logger receives what the lab builds and tears down. Nil discards.
	Logger *slog.Logger
}

// LANConfig is one private network behind a NAT router.
type LANConfig struct {
	// NAT is the behaviour the router emulates. Zero is port-restricted
	// cone (plain masquerade).
	NAT NATType
	// Hosts is the number of hosts on the LAN. Zero means one. Full and
	// restricted cone forward unsolicited inbound UDP to the first host only.
	Hosts int
	// UDPTimeout, when non-zero, sets the router's conntrack UDP timeouts
	// (unreplied and stream), i.e. how long an idle UDP mapping lives. Zero
	// keeps the kernel defaults (30 s unreplied, 120 s stream).
	UDPTimeout time.Duration
	// TCPOnlyTo, when non-empty, turns the router into a strict firewall:
	// it forwards nothing out of the LAN but TCP to these endpoints, so all
	// UDP is blocked.
	TCPOnlyTo []netip.AddrPort
}

func (c *Config) validate() error {
	if len(c.LANs) > 200 || c.PublicHosts > 100 {
		return errors.New("lab: too many LANs or public hosts for the address plan")
	}
	for i, l := range c.LANs {
		if l.Hosts < 0 || l.Hosts > 200 {
			return fmt.Errorf("lab: LAN %d: %d hosts", i+1, l.Hosts)
		}
		if l.NAT < PortRestrictedCone || l.NAT > Symmetric {
			return fmt.Errorf("lab: LAN %d: unknown NAT type %d", i+1, int(l.NAT))
		}
	}
	return nil
}

// Node is one network namespace of the lab.
type Node struct {
	// Role names the node within the lab: "pub", "r1", "l1h1", "p1".
	Role string
	// NS is the network namespace's name.
	NS string
	// Addr is the node's own address: the server address for pub, the WAN
	// address for a router, the LAN address for a LAN host, the public
	// address for a public host.
	Addr netip.Addr
}

// LAN is a private network behind a NAT router.
type LAN struct {
	// Index counts from 1, as in the role names and the 10.0.Index.0/24 net.
	Index int
	// NAT is the emulated behaviour.
	NAT NATType
	// Router is the NAT router; its Addr is the public (WAN) address.
	Router *Node
	// Gateway is the router's LAN-side address.
	Gateway netip.Addr
	// Hosts are the LAN's hosts.
	Hosts []*Node
	// Measured is what the last successful VerifyNAT measured (nil before,
	// and for a TCPOnlyTo firewall, which is checked differently).
	Measured *ProbeReport

	cfg LANConfig
}

// Lab is a running topology. Close tears it down.
type Lab struct {
	// ID is the unique part of every namespace name.
	ID string
	// Public is the public segment's namespace, where the server runs.
	Public *Node
	// LANs are the private networks, in Config order.
	LANs []*LAN
	// PublicHosts have public addresses and no NAT.
	PublicHosts []*Node

	cfg Config
	log *slog.Logger

	mu         sync.Mutex // guards closed, procs, namespaces, probeSrv
	closed     bool
	procs      []*Process
	namespaces []string
	probeSrv   *Process

	wg sync.WaitGroup // process waiters
}

// ServerAddr is the public-segment address for the server under test.
func (l *Lab) ServerAddr() netip.Addr { return serverAddr }

// liveLabs lets CloseAll tear down every lab of this process, e.g. from a
// signal handler, so an interrupted test leaves nothing behind.
var liveLabs struct {
	sync.Mutex
	m map[*Lab]struct{}
	// closing is set by CloseAll: no new lab may start after it, so a
	// test still running while the process shuts down cannot leave one.
	closing bool
}

// CloseAll closes every lab this process has open, and makes New fail
// from then on: it is meant for the way out (a signal, the end of
// TestMain).
func CloseAll() {
	liveLabs.Lock()
	liveLabs.closing = true
	var labs []*Lab
	for l := range liveLabs.m {
		labs = append(labs, l)
	}
	liveLabs.Unlock()
	for _, l := range labs {
		l.Close() //nolint:errcheck // best effort on the way out.
	}
}

// New builds the topology. On error, whatever was built is torn down.
func New(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	l := &Lab{
		ID:  fmt.Sprintf("%s%d-%s", namePrefix, os.Getpid(), hex.EncodeToString(rnd[:])),
		cfg: cfg,
		log: cfg.Logger,
	}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l.log = l.log.With("subsystem", "lab", "lab", l.ID)
	liveLabs.Lock()
	if liveLabs.closing {
		liveLabs.Unlock()
		return nil, ErrClosed
	}
	if liveLabs.m == nil {
		liveLabs.m = map[*Lab]struct{}{}
	}
	liveLabs.m[l] = struct{}{}
	liveLabs.Unlock()
	defer func() {
		if err != nil {
			l.Close() //nolint:errcheck // the build error is the one to report.
		}
	}()
	start := time.Now()
	if err := l.build(ctx); err != nil {
		return nil, fmt.Errorf("build lab %s: %w", l.ID, err)
	}
	l.log.Info("lab built", "lans", len(l.LANs), "public_hosts", len(l.PublicHosts), "took", time.Since(start))
	return l, nil
}

// addNamespace creates a namespace with loopback up and IPv6 off. IPv6 is
// switched off so ICE sees only the addresses the lab plans; link-local v6
// candidates would only add failing checks.
func (l *Lab) addNamespace(ctx context.Context, role string) (*Node, error) {
	n := &Node{Role: role, NS: l.ID + "-" + role}
	// Held across the creation so Close, which may run concurrently (a
	// signal during the build), either sees the namespace or prevents it.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	_, err := run(ctx, "ip", "netns", "add", n.NS)
	if err == nil {
		l.namespaces = append(l.namespaces, n.NS)
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := l.sysctl(ctx, n, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return nil, err
	}
	if _, err := run(ctx, "ip", "-n", n.NS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// sysctl writes /proc/sys entries as seen from inside the namespace (the
// net/ tree there is per namespace).
func (l *Lab) sysctl(ctx context.Context, n *Node, kv map[string]string) error {
	var script []string
	for k, v := range kv {
		script = append(script, fmt.Sprintf("echo %s > /proc/sys/%s", v, k))
	}
	_, err := run(ctx, "ip", "netns", "exec", n.NS, "sh", "-ec", strings.Join(script, "\n"))
	return err
}

// ipn runs "ip -n NS args...".
func ipn(ctx context.Context, n *Node, args ...string) error {
	_, err := run(ctx, "ip", append([]string{"-n", n.NS}, args...)...)
	return err
}

func (l *Lab) build(ctx context.Context) error {
	pub, err := l.addNamespace(ctx, "pub")
	if err != nil {
		return err
	}
	pub.Addr = serverAddr
	l.Public = pub
	if err := ipn(ctx, pub, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	for _, a := range append([]netip.Addr{serverAddr}, probeAddrs[:]...) {
		if err := ipn(ctx, pub, "addr", "add", prefixString(a, wanPrefix), "dev", "br0"); err != nil {
			return err
		}
	}
	if err := ipn(ctx, pub, "link", "set", "br0", "up"); err != nil {
		return err
	}

	for i, lc := range l.cfg.LANs {
		lan, err := l.buildLAN(ctx, i+1, lc)
		if err != nil {
			return err
		}
		l.LANs = append(l.LANs, lan)
	}
	for i := range l.cfg.PublicHosts {
		role := fmt.Sprintf("p%d", i+1)
		h, err := l.addNamespace(ctx, role)
		if err != nil {
			return err
		}
		h.Addr = wanAddr(100 + i)
		if err := l.wire(ctx, h, "eth0", pub, role, "br0"); err != nil {
			return err
		}
		if err := ipn(ctx, h, "addr", "add", prefixString(h.Addr, wanPrefix), "dev", "eth0"); err != nil {
			return err
		}
		l.PublicHosts = append(l.PublicHosts, h)
	}
	return nil
}

// wire creates a veth pair with one end (aName) in a and the other (bName)
// in b, enslaves b's end to bridge (if not empty) and brings both up. The
// pair is created inside a's namespace, so no interface ever exists in the
// root namespace, even for a moment.
func (l *Lab) wire(ctx context.Context, a *Node, aName string, b *Node, bName, bridge string) error {
	if err := ipn(ctx, a, "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.NS); err != nil {
		return err
	}
	if bridge != "" {
		if err := ipn(ctx, b, "link", "set", bName, "master", bridge); err != nil {
			return err
		}
	}
	if err := ipn(ctx, b, "link", "set", bName, "up"); err != nil {
		return err
	}
	return ipn(ctx, a, "link", "set", aName, "up")
}

func (l *Lab) buildLAN(ctx context.Context, idx int, lc LANConfig) (*LAN, error) {
	hosts := lc.Hosts
	if hosts == 0 {
		hosts = 1
	}
	lanPrefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(idx), 0}), 24)
	lan := &LAN{
		Index:   idx,
		NAT:     lc.NAT,
		Gateway: netip.AddrFrom4([4]byte{10, 0, byte(idx), 1}),
		cfg:     lc,
	}
	r, err := l.addNamespace(ctx, fmt.Sprintf("r%d", idx))
	if err != nil {
		return nil, err
	}
	r.Addr = wanAddr(10 + idx)
	lan.Router = r
	if err := l.wire(ctx, r, "wan0", l.Public, r.Role, "br0"); err != nil {
		return nil, err
	}
	if err := ipn(ctx, r, "addr", "add", prefixString(r.Addr, wanPrefix), "dev", "wan0"); err != nil {
		return nil, err
	}
	// lan0 is a bridge so a LAN can hold several hosts on one segment.
	if err := ipn(ctx, r, "link", "add", "lan0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ipn(ctx, r, "addr", "add", prefixString(lan.Gateway, lanPrefix), "dev", "lan0"); err != nil {
		return nil, err
	}
	if err := ipn(ctx, r, "link", "set", "lan0", "up"); err != nil {
		return nil, err
	}
	for j := range hosts {
		h, err := l.addNamespace(ctx, fmt.Sprintf("l%dh%d", idx, j+1))
		if err != nil {
			return nil, err
		}
		h.Addr = netip.AddrFrom4([4]byte{10, 0, byte(idx), byte(2 + j)})
		if err := l.wire(ctx, h, "eth0", r, fmt.Sprintf("h%d", j+1), "lan0"); err != nil {
			return nil, err
		}
		if err := ipn(ctx, h, "addr", "add", prefixString(h.Addr, lanPrefix), "dev", "eth0"); err != nil {
			return nil, err
		}
		if err := ipn(ctx, h, "route", "add", "default", "via", lan.Gateway.String()); err != nil {
			return nil, err
		}
		lan.Hosts = append(lan.Hosts, h)
	}

	rules := ruleset(rulesetParams{nat: lc.NAT, inner: lan.Hosts[0].Addr, udpTimeout: lc.UDPTimeout, tcpOnlyTo: lc.TCPOnlyTo})
	if _, err := runInput(ctx, []byte(rules), "ip", "netns", "exec", r.NS, "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("router %s ruleset: %w\n%s", r.Role, err, rules)
	}
	kv := map[string]string{"net/ipv4/ip_forward": "1"}
	if lc.UDPTimeout > 0 {
		secs := fmt.Sprint(max(1, int(lc.UDPTimeout.Round(time.Second)/time.Second)))
		kv["net/netfilter/nf_conntrack_udp_timeout"] = secs
		kv["net/netfilter/nf_conntrack_udp_timeout_stream"] = secs
	}
	if err := l.sysctl(ctx, r, kv); err != nil {
		return nil, err
	}
	// Where br_netfilter is loaded (Docker hosts load it), bridged frames
	// would go through the router's IP hooks too, and LAN-internal traffic
	// would meet the NAT and firewall rules. Switch that off when present.
	if _, err := run(ctx, "ip", "netns", "exec", r.NS, "sh", "-c",
		"f=/proc/sys/net/bridge/bridge-nf-call-iptables; if [ -e $f ]; then echo 0 > $f; fi"); err != nil {
		return nil, err
	}
	l.log.Debug("router up", "router", r.Role, "nat", lc.NAT, "wan", r.Addr, "hosts", len(lan.Hosts))
	return lan, nil
}

func wanAddr(host int) netip.Addr {
	b := wanPrefix.Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b)
}

func prefixString(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

// Nodes lists every namespace of the lab.
func (l *Lab) Nodes() []*Node {
	nodes := []*Node{l.Public}
	for _, lan := range l.LANs {
		nodes = append(nodes, lan.Router)
		nodes = append(nodes, lan.Hosts...)
	}
	return append(nodes, l.PublicHosts...)
}

// Command returns a command that runs argv inside node's namespace. The
// caller owns it; prefer Start or Run, which the lab tracks and bounds.
func (l *Lab) Command(ctx context.Context, node *Node, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", node.NS}, argv...)...)
}

// Run runs argv inside node's namespace to completion and returns its
// standard output; the error includes everything it printed.
func (l *Lab) Run(ctx context.Context, node *Node, argv ...string) (string, error) {
	p, err := l.Start(ctx, node, argv[0], argv...)
	if err != nil {
		return "", err
	}
	<-p.Done()
	if p.err != nil {
		return p.Stdout(), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), node.Role, p.err, strings.TrimSpace(p.Output()))
	}
	return p.Stdout(), nil
}

// Close stops every process the lab started and deletes its namespaces.
// It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	namespaces := l.namespaces
	l.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
		}()
	}
	wg.Wait()
	l.wg.Wait()

	// Teardown must run even when the test's context is done.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := deleteNamespace(ctx, namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	liveLabs.Lock()
	delete(liveLabs.m, l)
	liveLabs.Unlock()
	l.log.Info("lab closed", "namespaces", len(namespaces))
	return errors.Join(errs...)
}

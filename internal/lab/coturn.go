package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

// CoturnPort is where StartCoturn listens: next to punchline's own relay
// port, so both can run on the server address.
const CoturnPort = 3479

// CoturnConfig says how to run coturn's turnserver in the lab, a
// third-party STUN/TURN server to check the phone's interoperability.
type CoturnConfig struct {
	// Dir is a writable directory for its pid file and user database.
	Dir string
	// Users maps long-term credential names to passwords.
	Users map[string]string
	// Realm is the TURN realm. Empty means "punchline".
	Realm string
}

// Coturn is turnserver running on the lab's public segment.
type Coturn struct {
	*Process
	// Addr is its STUN/TURN endpoint (UDP and TCP).
	Addr netip.AddrPort
}

// StartCoturn starts coturn's turnserver in the public namespace on the
// server address and CoturnPort, relaying to the public segment only.
func (l *Lab) StartCoturn(ctx context.Context, cfg CoturnConfig) (*Coturn, error) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		return nil, fmt.Errorf("%w: turnserver not found (install coturn)", ErrUnavailable)
	}
	if cfg.Dir == "" {
		return nil, errors.New("start coturn: Dir is required")
	}
	realm := cfg.Realm
	if realm == "" {
		realm = "punchline"
	}
	c := &Coturn{Addr: netip.AddrPortFrom(serverAddr, CoturnPort)}
	args := []string{bin, "-n",
		"--listening-ip", serverAddr.String(), "--listening-port", fmt.Sprint(CoturnPort),
		"--relay-ip", serverAddr.String(),
		"--realm", realm, "--lt-cred-mech",
		"--no-tls", "--no-dtls", "--no-cli", "--no-multicast-peers",
		// Peers live on the lab's public segment, which coturn would
		// otherwise judge by its defaults.
		"--allowed-peer-ip", wanPrefix.Addr().String() + "-" + wanAddr(255).String(),
		"--pidfile", filepath.Join(cfg.Dir, "turnserver.pid"),
		"--userdb", filepath.Join(cfg.Dir, "turndb"),
		"--log-file", "stdout", "--simple-log", "--verbose",
	}
	if os.Getenv("PUNCHLINE_LAB_DUMP") != "" {
		args = append(args, "-V")
	}
	names := make([]string, 0, len(cfg.Users))
	for n := range cfg.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		args = append(args, "--user", n+":"+cfg.Users[n])
	}
	p, err := l.Start(ctx, l.Public, "coturn", args...)
	if err != nil {
		return nil, err
	}
	c.Process = p
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.WaitOutput(wctx, "Total General servers"); err != nil {
		return nil, err
	}
	// coturn prints no line once its listeners answer (without
	// --verbose); ask it a STUN question until it answers.
	for {
		ok, err := l.Reaches(wctx, l.Public, "udp", c.Addr)
		if err != nil {
			return nil, fmt.Errorf("coturn: %w\n%s", err, Tail(p.Output(), 20))
		}
		if ok {
			return c, nil
		}
	}
}

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/punchline/punchline/relay"
)

// startRelay starts the STUN/TURN relay of serve from the serve flags.
func startRelay(_ context.Context, env *serveEnv) (subsystem, error) {
	cfg, err := relayConfig(env)
	if err != nil {
		return nil, err
	}
	srv, err := relay.New(cfg)
	if err != nil {
		return nil, err
	}
	env.relay = srv
	for _, e := range srv.Endpoints() {
		env.listeningOn("turn "+e.Network, e.Addr.String())
	}
	return srv, nil
}

// relayConfig turns serve's flags into relay.Config.
func relayConfig(env *serveEnv) (relay.Config, error) {
	c := env.cfg
	var err error
	cfg := relay.Config{
		Realm:   c.Realm,
		Users:   relay.StoreUsers(env.store, c.Realm),
		Secret:  c.TURNSecret,
		Logger:  env.log,
		Metrics: env.metrics,
	}
	if c.TURNQuotaPerUser < 0 || c.TURNQuotaTotal < 0 || c.TURNBandwidthKbps < 0 {
		return cfg, fmt.Errorf("--turn-quota-per-user, --turn-quota-total and --turn-bandwidth-kbps take positive numbers (0 = default)")
	}
	cfg.MaxAllocationsPerUser = c.TURNQuotaPerUser
	cfg.MaxAllocations = c.TURNQuotaTotal
	cfg.BandwidthPerAllocation = int64(c.TURNBandwidthKbps) * 1000 / 8
	needTLS := false
	for _, s := range c.TURN {
		l, err := relay.ParseListener(s)
		if err != nil {
			return cfg, fmt.Errorf("--turn: %w", err)
		}
		needTLS = needTLS || l.Network == "tls"
		cfg.Listeners = append(cfg.Listeners, l)
	}
	if needTLS {
		if c.TLSCert == "" || c.TLSKey == "" {
			return cfg, fmt.Errorf("--turn tls: listener needs --tls-cert and --tls-key")
		}
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return cfg, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if c.PublicIP != "" {
		ip, err := netip.ParseAddr(c.PublicIP)
		if err != nil {
			return cfg, fmt.Errorf("--public-ip %q: not an IP address", c.PublicIP)
		}
		cfg.PublicIP = ip
	}
	if cfg.AllowPeers, err = parsePrefixes("--turn-allow-peer", c.TURNAllowPeer); err != nil {
		return cfg, err
	}
	if cfg.DenyPeers, err = parsePrefixes("--turn-deny-peer", c.TURNDenyPeer); err != nil {
		return cfg, err
	}
	if c.TURNRelayPorts != "" {
		lo, hi, ok := strings.Cut(c.TURNRelayPorts, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil || a == 0 || a > b {
			return cfg, fmt.Errorf("--turn-relay-ports %q: want min-max, e.g. 49152-65535", c.TURNRelayPorts)
		}
		cfg.RelayPortMin, cfg.RelayPortMax = uint16(a), uint16(b)
	}
	return cfg, nil
}

// parsePrefixes parses CIDRs; a bare address means just that address.
func parsePrefixes(flag string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want a CIDR such as 127.0.0.0/8 or an address", flag, s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

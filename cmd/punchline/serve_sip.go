package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/punchline/punchline/sip"
)

// startSIP starts the registrar and proxy on the --sip listeners.
//
// PUNCHLINE_SIP_RATE_LIMIT overrides the per-source request limit
// (requests per second per source IP; "off" disables it). It exists for
// load tests that send everything from one address. PUNCHLINE_SIP_PING
// (a duration, e.g. 25s) turns on keepalive OPTIONS to UDP contacts.
// serve has no flags for these yet.
func startSIP(ctx context.Context, env *serveEnv) (subsystem, error) {
	cfg := sip.Config{
		Realm:   env.cfg.Realm,
		Store:   env.store,
		Logger:  env.log,
		Metrics: env.metrics,
	}
	for _, s := range env.cfg.SIP {
		l, err := sip.ParseListener(s)
		if err != nil {
			return nil, err
		}
		cfg.Listeners = append(cfg.Listeners, l)
		if l.Transport == "tls" && cfg.TLS == nil {
			if env.cfg.TLSCert == "" || env.cfg.TLSKey == "" {
				return nil, fmt.Errorf("listener %s: tls needs --tls-cert and --tls-key", s)
			}
			cert, err := tls.LoadX509KeyPair(env.cfg.TLSCert, env.cfg.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", s, err)
			}
			cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
	}
	if v := os.Getenv("PUNCHLINE_SIP_RATE_LIMIT"); v != "" {
		if strings.EqualFold(v, "off") {
			cfg.RateLimit.PerSecond = -1
		} else {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("PUNCHLINE_SIP_RATE_LIMIT=%q: want a positive number or off", v)
			}
			cfg.RateLimit.PerSecond = n
		}
	}
	if v := os.Getenv("PUNCHLINE_SIP_PING"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("PUNCHLINE_SIP_PING=%q: want a duration such as 25s", v)
		}
		cfg.PingInterval = d
	}
	srv, err := sip.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	for _, b := range srv.Addrs() {
		env.listeningOn("sip "+b.Transport, b.Addr.String())
	}
	return srv, nil
}

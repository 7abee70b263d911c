package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/punchline/punchline/sip"
)

// startSIP starts the registrar and proxy on the --sip listeners.
//
// The per-source request limit comes from --sip-rate-limit (sip_rate_limit
// in YAML; negative turns it off, as load tests from one address need);
// PUNCHLINE_SIP_RATE_LIMIT ("off" or requests/s) overrides it. PUNCHLINE_SIP_PING
// (a duration, e.g. 25s) turns on keepalive OPTIONS to UDP contacts.
//
// Requests for room-NAME users go to the conference focus (sip/focus).
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
	for _, a := range env.cfg.SIPDigest {
		// Accept the algorithm names in any case; sip.Config wants RFC 8760's.
		cfg.Algorithms = append(cfg.Algorithms, strings.ToUpper(a))
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("--sip-digest: no algorithm given (MD5, SHA-256)")
	}
	switch n := env.cfg.SIPRateLimit; {
	case n < 0:
		cfg.RateLimit.PerSecond = -1
	case n > 0:
		cfg.RateLimit.PerSecond = float64(n)
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
	f, err := newRoomFocus(env)
	if err != nil {
		return nil, err
	}
	cfg.RoomHandler = f
	srv, err := sip.New(cfg)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		f.Close()
		srv.Close()
		return nil, err
	}
	for _, b := range srv.Addrs() {
		env.listeningOn("sip "+b.Transport, b.Addr.String())
	}
	return attachRoomFocus(srv, f)
}

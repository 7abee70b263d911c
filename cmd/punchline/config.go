package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// serveConfig is everything `punchline serve` can be told, from flags or
// from the YAML file given with --config. Flags win over the file, and the
// file wins over the defaults below.
type serveConfig struct {
	// Data is the directory holding the embedded store (users and
	// registrations).
	Data string `yaml:"data"`
	// Realm is the SIP digest and TURN long-term-credential realm.
	Realm string `yaml:"realm"`
	// SIP lists the SIP listeners as transport:host:port (udp, tcp, tls, ws).
	// Empty disables SIP.
	SIP []string `yaml:"sip"`
	// HTTP is the listener for /metrics and /healthz. Empty disables it.
	HTTP string `yaml:"http"`
	// TLSCert and TLSKey are PEM files for tls: SIP and TURN listeners.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`

	// TURN lists the STUN/TURN listeners as transport:host:port (udp, tcp,
	// tls). Empty disables the relay.
	TURN []string `yaml:"turn"`
	// PublicIP is the address written into relayed candidates when the
	// server sits behind a 1:1 NAT.
	PublicIP string `yaml:"public_ip"`
	// TURNSecret enables TURN REST ephemeral credentials.
	TURNSecret string `yaml:"turn_secret"`
	// TURNAllowPeer opens peer ranges that are refused by default.
	TURNAllowPeer []string `yaml:"turn_allow_peer"`
	// TURNDenyPeer closes further peer ranges.
	TURNDenyPeer []string `yaml:"turn_deny_peer"`
	// TURNRelayPorts is the relay port range, "min-max"; empty lets the
	// kernel choose.
	TURNRelayPorts string `yaml:"turn_relay_ports"`

	// TURNQuotaPerUser and TURNQuotaTotal cap allocations per user and in
	// all (486 and 508 beyond them); 0 means the relay's defaults (64, 10000).
	TURNQuotaPerUser int `yaml:"turn_quota_per_user"`
	TURNQuotaTotal   int `yaml:"turn_quota_total"`
	// TURNBandwidthKbps caps each allocation's relayed rate each way;
	// 0 means the relay's default (4 MB/s, far above any voice call).
	TURNBandwidthKbps int `yaml:"turn_bandwidth_kbps"`

	// SIPRateLimit is the per-source-IP SIP request rate (requests/s) above
	// which a source is answered 503. 0 means the default; negative turns
	// the limiter off (benchmarks from one source address need that).
	SIPRateLimit int `yaml:"sip_rate_limit"`
	// SIPDigest lists the digest algorithms the registrar and proxy
	// challenge with, one challenge each, in order of preference (MD5,
	// SHA-256). The default is MD5 alone: some deployed phones (baresip
	// 1.0, as Debian 12 ships it) give up on a 401 that carries a SHA-256
	// challenge at all, even next to an MD5 one.
	SIPDigest []string `yaml:"sip_digest"`

	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Pprof mounts net/http/pprof on the HTTP listener.
	Pprof bool `yaml:"pprof"`
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Data:      defaultDataDir(),
		Realm:     "punchline",
		SIP:       []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"},
		HTTP:      "127.0.0.1:8088",
		TURN:      []string{"udp:127.0.0.1:3478", "tcp:127.0.0.1:3478"},
		SIPDigest: []string{"MD5"},
		LogLevel:  "info",
	}
}

// defaultDataDir is $PUNCHLINE_DATA, else the user's data directory
// ($XDG_DATA_HOME/punchline or ~/.local/share/punchline), else ./punchline-data.
func defaultDataDir() string {
	if d := os.Getenv("PUNCHLINE_DATA"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "punchline")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "punchline")
	}
	return "punchline-data"
}

// listFlag is a comma-separated list flag ("udp:1.2.3.4:5060,tcp:...").
// An explicitly empty value ("") means an empty list.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = splitList(s)
	return nil
}

// repeatFlag is a flag that may be given several times; each value may
// itself be a comma-separated list.
type repeatFlag struct{ v *[]string }

func (r repeatFlag) String() string {
	if r.v == nil {
		return ""
	}
	return strings.Join(*r.v, ",")
}

func (r repeatFlag) Set(s string) error {
	*r.v = append(*r.v, splitList(s)...)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// bindServeFlags registers serve's flags on fs, writing into cfg.
func bindServeFlags(fs *flag.FlagSet, cfg *serveConfig) *string {
	configFile := fs.String("config", "", "YAML file with the same settings as the flags")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory (users, registrations)")
	fs.StringVar(&cfg.Realm, "realm", cfg.Realm, "SIP and TURN realm")
	fs.Var(listFlag{&cfg.SIP}, "sip", "SIP listeners, transport:host:port,... (udp, tcp, tls, ws); \"\" disables SIP")
	fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "HTTP listener for /metrics; \"\" disables it")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "PEM certificate for tls: listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "PEM key for tls: listeners")
	fs.Var(listFlag{&cfg.TURN}, "turn", "STUN/TURN listeners, transport:host:port,... (udp, tcp, tls); \"\" disables the relay")
	fs.StringVar(&cfg.PublicIP, "public-ip", cfg.PublicIP, "public address advertised in relayed candidates (server behind 1:1 NAT)")
	fs.StringVar(&cfg.TURNSecret, "turn-secret", cfg.TURNSecret, "shared secret for TURN REST ephemeral credentials")
	fs.Var(repeatFlag{&cfg.TURNAllowPeer}, "turn-allow-peer", "CIDR of peers the relay may reach although refused by default (repeatable)")
	fs.Var(repeatFlag{&cfg.TURNDenyPeer}, "turn-deny-peer", "CIDR of further peers the relay must refuse (repeatable)")
	fs.StringVar(&cfg.TURNRelayPorts, "turn-relay-ports", cfg.TURNRelayPorts, "relay port range min-max")
	fs.IntVar(&cfg.TURNQuotaPerUser, "turn-quota-per-user", cfg.TURNQuotaPerUser, "TURN allocations per user (0 = default 64)")
	fs.IntVar(&cfg.TURNQuotaTotal, "turn-quota-total", cfg.TURNQuotaTotal, "TURN allocations in all (0 = default 10000)")
	fs.IntVar(&cfg.TURNBandwidthKbps, "turn-bandwidth-kbps", cfg.TURNBandwidthKbps, "relayed kbit/s per allocation each way (0 = default, 32 Mbit/s)")
	fs.IntVar(&cfg.SIPRateLimit, "sip-rate-limit", cfg.SIPRateLimit, "SIP requests/s allowed per source IP before 503 (0 = default, negative = off)")
	fs.Var(listFlag{&cfg.SIPDigest}, "sip-digest", "digest algorithms to challenge with, in order of preference: MD5, SHA-256 (e.g. SHA-256,MD5)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve net/http/pprof on the --http listener (for profiling)")
	return configFile
}

// loadServeConfig applies defaults, then the YAML file, then the flags
// that were set explicitly.
func loadServeConfig(fs *flag.FlagSet, args []string) (serveConfig, error) {
	cfg := defaultServeConfig()
	configFile := bindServeFlags(fs, &cfg)
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if *configFile == "" {
		return cfg, nil
	}
	fromFile := defaultServeConfig()
	raw, err := os.ReadFile(*configFile)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&fromFile); err != nil {
		return cfg, fmt.Errorf("config %s: %w", *configFile, err)
	}
	// Re-apply the explicit flags on top of the file.
	final := fromFile
	var replay []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		replay = append(replay, "--"+f.Name+"="+f.Value.String())
	})
	fs2 := flag.NewFlagSet("", flag.ContinueOnError)
	bindServeFlags(fs2, &final)
	// Repeatable flags accumulate: start them from the file's value only
	// when the flag was not given.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "turn-allow-peer":
			final.TURNAllowPeer = nil
		case "turn-deny-peer":
			final.TURNDenyPeer = nil
		}
	})
	if err := fs2.Parse(replay); err != nil {
		return cfg, err
	}
	return final, nil
}

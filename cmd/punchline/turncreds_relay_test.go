package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/punchline/punchline/relay"
)

func TestTURNCredentialsCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	before := time.Now()
	if err := runTURNCredentials(context.Background(), []string{"--secret", "s3", "--user", "alice", "--ttl", "2h", "--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Username, Password, Expires string
		TTL                         int64
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	expiry, user, ok := strings.Cut(got.Username, ":")
	if !ok || user != "alice" || got.TTL != 7200 {
		t.Fatalf("got %+v", got)
	}
	ts, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || ts < before.Add(2*time.Hour).Unix()-1 || ts > time.Now().Add(2*time.Hour).Unix() {
		t.Fatalf("expiry %q not two hours from now", expiry)
	}
	if got.Password != relay.RESTPassword("s3", got.Username) {
		t.Fatal("password is not base64(HMAC-SHA1(secret, username))")
	}

	out.Reset()
	if err := runTURNCredentials(context.Background(), []string{"--secret", "s3", "--user", "bob"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "username: ") || !strings.Contains(out.String(), ":bob\npassword: ") {
		t.Fatalf("plain output %q", out.String())
	}

	for _, args := range [][]string{
		{"--user", "bob"},
		{"--secret", "s3"},
		{"--secret", "s3", "--user", "bob", "--ttl", "-1h"},
	} {
		if err := runTURNCredentials(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestRelayConfigFromServeFlags(t *testing.T) {
	env := &serveEnv{cfg: defaultServeConfig()}
	env.cfg.TURNAllowPeer = []string{"127.0.0.0/8", "10.1.2.3"}
	env.cfg.TURNDenyPeer = []string{"127.0.0.2/32"}
	env.cfg.PublicIP = "203.0.113.9"
	env.cfg.TURNRelayPorts = "49152-49200"
	cfg, err := relayConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 2 || cfg.Listeners[0].Network != "udp" || cfg.Listeners[1].Network != "tcp" {
		t.Errorf("default listeners %+v", cfg.Listeners)
	}
	if len(cfg.AllowPeers) != 2 || cfg.AllowPeers[1].String() != "10.1.2.3/32" || cfg.DenyPeers[0].String() != "127.0.0.2/32" {
		t.Errorf("allow %v deny %v", cfg.AllowPeers, cfg.DenyPeers)
	}
	if cfg.PublicIP.String() != "203.0.113.9" || cfg.RelayPortMin != 49152 || cfg.RelayPortMax != 49200 {
		t.Errorf("public %v ports %d-%d", cfg.PublicIP, cfg.RelayPortMin, cfg.RelayPortMax)
	}
	for _, bad := range []func(c *serveConfig){
		func(c *serveConfig) { c.TURN = []string{"sctp:1.2.3.4:5"} },
		func(c *serveConfig) { c.TURN = []string{"tls:127.0.0.1:5349"} },
		func(c *serveConfig) { c.PublicIP = "example" },
		func(c *serveConfig) { c.TURNAllowPeer = []string{"10.0.0.0/33"} },
		func(c *serveConfig) { c.TURNRelayPorts = "5000" },
	} {
		e := &serveEnv{cfg: defaultServeConfig()}
		bad(&e.cfg)
		if _, err := relayConfig(e); err == nil {
			t.Errorf("config %+v accepted", e.cfg)
		}
	}
}

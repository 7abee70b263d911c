package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func loadForTest(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadServeConfig(fs, args)
}

func TestServeConfigDefaultsNeedNoFlags(t *testing.T) {
	cfg, err := loadForTest(t)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"}
	if !reflect.DeepEqual(cfg.SIP, want) {
		t.Errorf("SIP = %v, want %v", cfg.SIP, want)
	}
	if len(cfg.TURN) != 2 || cfg.HTTP != "127.0.0.1:8088" || cfg.Realm != "punchline" || cfg.Data == "" {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
}

func TestServeConfigFlagsWinOverFileAndFileOverDefaults(t *testing.T) {
	file := filepath.Join(t.TempDir(), "punchline.yaml")
	yaml := `realm: example.org
sip: [udp:127.0.0.1:5070]
turn_allow_peer: [10.0.0.0/8]
turn_quota_per_user: 3
http: ""
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadForTest(t, "--config", file, "--realm", "flag.example", "--turn-allow-peer", "127.0.0.0/8", "--turn-allow-peer", "::1/128")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Realm != "flag.example" {
		t.Errorf("realm = %q: the flag must win over the file", cfg.Realm)
	}
	if !reflect.DeepEqual(cfg.SIP, []string{"udp:127.0.0.1:5070"}) {
		t.Errorf("sip = %v: the file must win over the default", cfg.SIP)
	}
	if !reflect.DeepEqual(cfg.TURNAllowPeer, []string{"127.0.0.0/8", "::1/128"}) {
		t.Errorf("turn-allow-peer = %v: repeated flags replace the file's list", cfg.TURNAllowPeer)
	}
	if cfg.HTTP != "" || cfg.TURNQuotaPerUser != 3 {
		t.Errorf("file settings lost: http %q, quota %d", cfg.HTTP, cfg.TURNQuotaPerUser)
	}
	if len(cfg.TURN) != 2 {
		t.Errorf("turn = %v: a key absent from the file keeps its default", cfg.TURN)
	}
}

func TestServeConfigEmptyListDisables(t *testing.T) {
	cfg, err := loadForTest(t, "--sip", "", "--turn=udp:127.0.0.1:3479")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.SIP) != 0 || !reflect.DeepEqual(cfg.TURN, []string{"udp:127.0.0.1:3479"}) {
		t.Errorf("sip %v turn %v", cfg.SIP, cfg.TURN)
	}
}

func TestServeConfigRefusesUnknownYAMLKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("realm: x\nsip_listen: [udp:1.2.3.4:5060]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadForTest(t, "--config", file)
	if err == nil || !strings.Contains(err.Error(), "sip_listen") {
		t.Fatalf("err = %v, want one naming the unknown key", err)
	}
}

func TestRelayQuotaFlagsReachTheRelayConfig(t *testing.T) {
	cfg, err := loadForTest(t, "--turn-quota-per-user", "2", "--turn-quota-total", "50", "--turn-bandwidth-kbps", "256")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := relayConfig(&serveEnv{cfg: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if rc.MaxAllocationsPerUser != 2 || rc.MaxAllocations != 50 || rc.BandwidthPerAllocation != 32000 {
		t.Errorf("relay config: per user %d, total %d, bandwidth %d B/s", rc.MaxAllocationsPerUser, rc.MaxAllocations, rc.BandwidthPerAllocation)
	}
	cfg.TURNBandwidthKbps = -1
	if _, err := relayConfig(&serveEnv{cfg: cfg}); err == nil {
		t.Error("a negative bandwidth was accepted")
	}
}

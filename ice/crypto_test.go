package ice_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/punchline/punchline/ice"
)

func TestParseCrypto(t *testing.T) {
	key30 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 30))
	key28 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 28))
	for _, tc := range []struct {
		name   string
		value  string
		ok     bool
		usable bool
		check  func(t *testing.T, c ice.Crypto)
	}{
		{"RFC 4568 example with lifetime and MKI",
			"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4", true, true,
			func(t *testing.T, c ice.Crypto) {
				if c.Tag != 1 || c.Lifetime != 1<<20 || c.MKI != 1 || c.MKILen != 4 || len(c.Key) != 30 {
					t.Errorf("%+v", c)
				}
				if !bytes.Equal(c.MKIBytes(), []byte{0, 0, 0, 1}) {
					t.Errorf("MKI bytes %x", c.MKIBytes())
				}
				if len(c.MasterKey()) != 16 || len(c.MasterSalt()) != 14 {
					t.Errorf("key %d salt %d", len(c.MasterKey()), len(c.MasterSalt()))
				}
			}},
		{"GCM without padding", "2 AEAD_AES_128_GCM inline:" + strings.TrimRight(key28, "="), true, true,
			func(t *testing.T, c ice.Crypto) {
				if len(c.MasterKey()) != 16 || len(c.MasterSalt()) != 12 {
					t.Errorf("key %d salt %d", len(c.MasterKey()), len(c.MasterSalt()))
				}
			}},
		{"decimal lifetime and window hint", "3 AES_CM_128_HMAC_SHA1_32 inline:" + key30 + "|1048576 WSH=256", true, true,
			func(t *testing.T, c ice.Crypto) {
				if c.Lifetime != 1<<20 || c.ReplayWindow() != 256 {
					t.Errorf("lifetime %d window %d", c.Lifetime, c.ReplayWindow())
				}
			}},
		{"ignorable extension", "4 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " -X_FOO=1", true, true, nil},
		{"unknown suite parses, unusable", "5 F8_128_HMAC_SHA1_80 inline:" + key30, true, false, nil},
		{"unencrypted SRTP unusable", "6 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNENCRYPTED_SRTP", true, false, nil},
		{"key derivation rate unusable", "7 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=10", true, false, nil},
		{"short lifetime unusable", "8 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^10", true, false, nil},
		{"two keys unusable", "9 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:1;inline:" + key30 + "|2^20|2:1", true, false, nil},
		{"key too short for the suite", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key28, false, false, nil},
		{"bad base64", "1 AES_CM_128_HMAC_SHA1_80 inline:@@@@", false, false, nil},
		{"not inline", "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.org/key", false, false, nil},
		{"no key", "1 AES_CM_128_HMAC_SHA1_80", false, false, nil},
		{"negative tag", "-1 AES_CM_128_HMAC_SHA1_80 inline:" + key30, false, false, nil},
		{"ten-digit tag", "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key30, false, false, nil},
		{"MKI too big for its length", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|300:1", false, false, nil},
		{"lifetime after MKI", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:1|2^20", false, false, nil},
		{"bad exponent", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|3^20", false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ice.ParseCrypto(tc.value)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseCrypto(%q) err = %v, want ok=%v", tc.value, err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ice.ErrBadCrypto) {
					t.Errorf("error %v is not ErrBadCrypto", err)
				}
				return
			}
			if u := c.Usable(); (u == nil) != tc.usable {
				t.Errorf("Usable() = %v, want usable=%v", u, tc.usable)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			if strings.Contains(c.String(), base64.StdEncoding.EncodeToString(c.Key)[:8]) {
				t.Error("String shows the key")
			}
			back, err := ice.ParseCrypto(c.Value())
			if err != nil || back.Value() != c.Value() {
				t.Errorf("round trip: %v, %q -> %q", err, c.Value(), back.Value())
			}
		})
	}
}

// The SDES offers of softphones in testdata/sdp are answered with one
// line: the first offered suite we run, under its tag, with our key; and
// without keys of our own we answer best-effort offers plain and refuse
// RTP/SAVP ones.
func TestSRTPSamplesAreAnswered(t *testing.T) {
	all := []string{ice.SuiteAES128SHA1_80, ice.SuiteAES128SHA1_32, ice.SuiteAES256SHA1_80,
		ice.SuiteAES256SHA1_32, ice.SuiteAEADAES128GCM, ice.SuiteAEADAES256GCM}
	ours := func(suites ...string) []ice.Crypto {
		var out []ice.Crypto
		for i, s := range suites {
			c, err := ice.NewCrypto(i+1, s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	for _, tc := range []struct {
		file      string
		ours      []string
		proto     string
		lines     int
		wantTag   int
		wantSuite string
		wantErr   error
		feedback  bool // offer RTP/SAVPF instead (baresip srtp-mandf)
	}{
		{"baresip-srtp-offer.sdp", all, "RTP/AVP", 4, 1, ice.SuiteAES128SHA1_32, nil, false},
		{"baresip-srtp-mand-offer.sdp", all, "RTP/SAVP", 3, 1, ice.SuiteAEADAES256GCM, nil, false},
		{"baresip-srtp-mand-offer.sdp", all[:1], "RTP/SAVP", 3, 3, ice.SuiteAES128SHA1_80, nil, false},
		{"linphone-srtp-offer.sdp", all, "RTP/SAVP", 4, 1, ice.SuiteAES128SHA1_80, nil, false},
		{"baresip-srtp-mand-offer.sdp", all[:2], "RTP/SAVPF", 3, 3, ice.SuiteAES128SHA1_80, nil, true},
		{"pjsip-srtp-optional-offer.sdp", all, "RTP/AVP", 6, 1, ice.SuiteAEADAES256GCM, nil, false},
		{"pjsip-srtp-optional-offer.sdp", all[:2], "RTP/AVP", 6, 5, ice.SuiteAES128SHA1_80, nil, false},
		// F8 unknown, UNENCRYPTED_SRTCP refused, MKI with a window hint taken.
		{"sdes-offer-unusual-lines.sdp", all, "RTP/AVP", 4, 3, ice.SuiteAES128SHA1_80, nil, false},
		// No keys of ours: plain answer to best effort, 488 to RTP/SAVP.
		{"baresip-srtp-offer.sdp", nil, "RTP/AVP", 4, 0, "", nil, false},
		{"linphone-srtp-offer.sdp", nil, "RTP/SAVP", 4, 0, "", ice.ErrUnsupportedTransport, false},
		{"baresip-srtp-mand-offer.sdp", []string{ice.SuiteAES256SHA1_32}, "RTP/SAVP", 3, 0, "", ice.ErrNoCommonCrypto, false},
	} {
		t.Run(tc.file+"/"+tc.proto+"/"+strings.Join(tc.ours, ","), func(t *testing.T) {
			body := readSample(t, tc.file)
			if tc.feedback {
				body = bytes.Replace(body, []byte("RTP/SAVP"), []byte("RTP/SAVPF"), 1)
			}
			offer, err := ice.Parse(body)
			if err != nil {
				t.Fatal(err)
			}
			if offer.Proto != tc.proto || len(offer.Crypto) != tc.lines {
				t.Fatalf("offer %s with %d a=crypto, want %s with %d", offer.Proto, len(offer.Crypto), tc.proto, tc.lines)
			}
			local := ice.NewAudio()
			local.Address, local.Port = "192.0.2.1", 5004
			local.Crypto = ours(tc.ours...)
			ans, err := ice.NewAnswer(offer, local)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("NewAnswer: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := ans.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ice.Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			if back.Proto != tc.proto {
				t.Errorf("answer m= %s, want the offer's %s", back.Proto, tc.proto)
			}
			if tc.wantSuite == "" {
				if len(back.Crypto) != 0 {
					t.Errorf("plain answer carries %d a=crypto", len(back.Crypto))
				}
				return
			}
			if len(back.Crypto) != 1 {
				t.Fatalf("answer has %d a=crypto lines, want 1\n%s", len(back.Crypto), out)
			}
			got := back.Crypto[0]
			if got.Tag != tc.wantTag || got.Suite != tc.wantSuite {
				t.Errorf("answered %d %s, want %d %s", got.Tag, got.Suite, tc.wantTag, tc.wantSuite)
			}
			idx := slices.IndexFunc(local.Crypto, func(c ice.Crypto) bool { return c.Suite == tc.wantSuite })
			if idx < 0 || !bytes.Equal(got.Key, local.Crypto[idx].Key) {
				t.Error("the answer does not carry our key for the suite")
			}
			for _, o := range offer.Crypto {
				if bytes.Equal(o.Key, got.Key) {
					t.Error("the answer echoes the offerer's key")
				}
			}
		})
	}
}

func TestNewCryptoIsFreshAndWellFormed(t *testing.T) {
	a, err := ice.NewCrypto(1, ice.SuiteAES128SHA1_80)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ice.NewCrypto(1, ice.SuiteAES128SHA1_80)
	if bytes.Equal(a.Key, b.Key) || len(a.Key) != 30 {
		t.Fatalf("keys %d bytes, equal=%v", len(a.Key), bytes.Equal(a.Key, b.Key))
	}
	if a.Usable() != nil {
		t.Error(a.Usable())
	}
	if _, err := ice.NewCrypto(1, "NULL_HMAC_SHA1_80"); err == nil {
		t.Error("a NULL cipher suite was keyed")
	}
}

// FuzzParseCrypto feeds arbitrary a=crypto values to the parser: whatever
// parses must write back (Value) to a line that parses to the same values,
// String must never show the key, and Usable and the key accessors must
// not panic.
func FuzzParseCrypto(f *testing.F) {
	for _, name := range []string{"baresip-srtp-offer.sdp", "baresip-srtp-mand-offer.sdp", "linphone-srtp-offer.sdp",
		"pjsip-srtp-optional-offer.sdp", "sdes-offer-unusual-lines.sdp"} {
		for _, line := range strings.Split(string(readSample(f, name)), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=crypto:"); ok {
				f.Add(v)
			}
		}
	}
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4")
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0|2^20|2:4 FEC_ORDER=FEC_SRTP")
	f.Add("2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4 UNENCRYPTED_SRTP KDR=0 WSH=64 -ext")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ice.ParseCrypto(v)
		if err != nil {
			return
		}
		_ = c.Usable()
		_, _, _ = c.MasterKey(), c.MasterSalt(), c.ReplayWindow()
		if m := c.MKIBytes(); len(m) != c.MKILen {
			t.Fatalf("MKI bytes %d, length %d", len(m), c.MKILen)
		}
		if strings.Contains(c.String(), "inline:"+base64.StdEncoding.EncodeToString(c.Key)) {
			t.Fatal("String shows the key")
		}
		back, err := ice.ParseCrypto(c.Value())
		if err != nil {
			t.Fatalf("our own value %q does not parse: %v (from %q)", c.Value(), err, v)
		}
		if back.Tag != c.Tag || back.Suite != c.Suite || !bytes.Equal(back.Key, c.Key) || back.Lifetime != c.Lifetime ||
			back.MKI != c.MKI || back.MKILen != c.MKILen || !slices.Equal(back.Params, c.Params) {
			t.Fatalf("round trip changed the line:\n%+v\n%+v", c, back)
		}
	})
}

package ice

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
)

// SDES keying for SRTP (RFC 4568): the a=crypto attribute of an RTP/SAVP
// (or best-effort RTP/AVP) audio stream. Its value is
//
//	tag SP crypto-suite SP key-params *(SP session-param)
//	key-params = "inline:" base64(master key || master salt) ["|" lifetime] ["|" MKI ":" length]
//
// Each side sends the key it encrypts with: the offer lists one line per
// suite it can do, each with its own tag and fresh key; the answer picks
// one line, keeps its tag and suite and carries the answerer's own key
// (RFC 4568 §5.1.2). This file only reads and writes the attribute and
// knows the suites' key sizes; package media does the SRTP transform.

// SDES crypto-suite names (RFC 4568 §6.2, RFC 6188 for AES-256, RFC 7714
// §12 for AES-GCM).
const (
	SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
	SuiteAES256SHA1_80 = "AES_256_CM_HMAC_SHA1_80"
	SuiteAES256SHA1_32 = "AES_256_CM_HMAC_SHA1_32"
	SuiteAEADAES128GCM = "AEAD_AES_128_GCM"
	SuiteAEADAES256GCM = "AEAD_AES_256_GCM"
)

// suiteSizes are the master key and master salt lengths in bytes.
var suiteSizes = map[string][2]int{
	SuiteAES128SHA1_80: {16, 14},
	SuiteAES128SHA1_32: {16, 14},
	SuiteAES256SHA1_80: {32, 14},
	SuiteAES256SHA1_32: {32, 14},
	SuiteAEADAES128GCM: {16, 12},
	SuiteAEADAES256GCM: {32, 12},
}

// KnownSuite reports whether suite is one we can key, and its master key
// and salt lengths.
func KnownSuite(suite string) (keyLen, saltLen int, ok bool) {
	s, ok := suiteSizes[suite]
	return s[0], s[1], ok
}

// Crypto is one a=crypto line. Its String and LogValue never show the key:
// a call's keys must not end up in logs.
type Crypto struct {
	// Tag identifies the line within the m-line (1 to 999999999); the
	// answer echoes the tag of the offered line it accepts.
	Tag int
	// Suite is the crypto-suite name, e.g. AES_CM_128_HMAC_SHA1_80.
	Suite string
	// Key is the master key followed by the master salt.
	Key []byte
	// Lifetime is the key's lifetime in packets, 0 when not given.
	Lifetime uint64
	// MKI and MKILen are the master key identifier and its length in
	// bytes as sent in every packet; MKILen 0 means no MKI.
	MKI    uint64
	MKILen int
	// Keys counts the key-params of the line; more than one is only
	// usable with MKIs, which we do not switch between.
	Keys int
	// Params are the session parameters as written (KDR=, WSH=, ...).
	Params []string
}

// maxTag is the largest tag RFC 4568 §9.1 allows (1*9DIGIT).
const maxTag = 999999999

var (
	// ErrBadCrypto is returned by ParseCrypto for a malformed a=crypto value.
	ErrBadCrypto = errors.New("sdp: malformed a=crypto")
	// ErrNoCommonCrypto is returned by NewAnswer for an RTP/SAVP offer
	// whose a=crypto lines name no suite we run (answer 488).
	ErrNoCommonCrypto = errors.New("sdp: no common SRTP crypto suite (we do AES_CM_128_HMAC_SHA1_80/32, AES_256_CM_HMAC_SHA1_80/32, AEAD_AES_128_GCM, AEAD_AES_256_GCM)")
)

// ParseCrypto reads an a=crypto value (without "crypto:"). Unknown suites
// and session parameters parse (the line is then not Usable); broken
// syntax, bad base64 or a key of the wrong length for a known suite do
// not.
func ParseCrypto(v string) (Crypto, error) {
	var c Crypto
	if !noControl(v) {
		return c, fmt.Errorf("%w: control characters", ErrBadCrypto)
	}
	f := strings.Fields(v)
	if len(f) < 3 {
		return c, fmt.Errorf("%w: want tag, suite and key params", ErrBadCrypto)
	}
	if len(f[0]) > 9 {
		return c, fmt.Errorf("%w: tag %q", ErrBadCrypto, f[0])
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > maxTag || strings.ContainsAny(f[0], "+-") {
		return c, fmt.Errorf("%w: tag %q", ErrBadCrypto, f[0])
	}
	c.Tag, c.Suite = tag, f[1]
	if !iceToken(c.Suite) {
		return c, fmt.Errorf("%w: suite %q", ErrBadCrypto, c.Suite)
	}
	keys := strings.Split(f[2], ";")
	c.Keys = len(keys)
	for i, kp := range keys {
		method, info, ok := strings.Cut(kp, ":")
		if !ok || !strings.EqualFold(method, "inline") {
			return c, fmt.Errorf("%w: key method %q (only inline)", ErrBadCrypto, method)
		}
		if i > 0 {
			continue // extra keys are only counted; see Usable
		}
		if err := c.readKeyInfo(info); err != nil {
			return c, err
		}
	}
	c.Params = append(c.Params, f[3:]...)
	return c, nil
}

// readKeyInfo reads "base64[|lifetime][|mki:len]".
func (c *Crypto) readKeyInfo(info string) error {
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return fmt.Errorf("%w: key info has %d fields", ErrBadCrypto, len(parts))
	}
	key, err := decodeKey(parts[0])
	if err != nil {
		return fmt.Errorf("%w: key: %v", ErrBadCrypto, err)
	}
	if kl, sl, ok := KnownSuite(c.Suite); ok && len(key) != kl+sl {
		return fmt.Errorf("%w: %s wants a %d-byte key and salt, got %d", ErrBadCrypto, c.Suite, kl+sl, len(key))
	}
	if len(key) == 0 || len(key) > 64 {
		return fmt.Errorf("%w: key of %d bytes", ErrBadCrypto, len(key))
	}
	c.Key = key
	for _, p := range parts[1:] {
		if mki, l, ok := strings.Cut(p, ":"); ok {
			if c.MKILen != 0 {
				return fmt.Errorf("%w: two MKIs", ErrBadCrypto)
			}
			n, err1 := strconv.ParseUint(mki, 10, 64)
			ln, err2 := strconv.Atoi(l)
			if err1 != nil || err2 != nil || ln < 1 || ln > 128 || strings.ContainsAny(l, "+-") {
				return fmt.Errorf("%w: MKI %q", ErrBadCrypto, p)
			}
			if ln < 8 && n>>(8*ln) != 0 {
				return fmt.Errorf("%w: MKI %d does not fit in %d bytes", ErrBadCrypto, n, ln)
			}
			c.MKI, c.MKILen = n, ln
			continue
		}
		if c.Lifetime != 0 || c.MKILen != 0 {
			return fmt.Errorf("%w: lifetime %q out of place", ErrBadCrypto, p)
		}
		lt, err := parseLifetime(p)
		if err != nil {
			return err
		}
		c.Lifetime = lt
	}
	return nil
}

// decodeKey reads base64 with or without padding (some phones drop it).
func decodeKey(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// parseLifetime reads a decimal count or "2^N".
func parseLifetime(s string) (uint64, error) {
	if b, e, ok := strings.Cut(s, "^"); ok {
		n, err := strconv.Atoi(e)
		if b != "2" || err != nil || n < 1 || n > 63 || strings.ContainsAny(e, "+-") {
			return 0, fmt.Errorf("%w: lifetime %q", ErrBadCrypto, s)
		}
		return 1 << n, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: lifetime %q", ErrBadCrypto, s)
	}
	return n, nil
}

// minLifetime is the shortest key lifetime we accept: a call at 50
// packets a second would need 2^20 packets for almost six hours, and we
// do not rekey when a lifetime runs out.
const minLifetime = 1 << 20

// Usable reports, with the reason when not, whether we can run SRTP with
// this line: a known suite, one key without an MKI switch, a lifetime
// we will not outlive, and only session parameters we honour (WSH,
// FEC_ORDER, KDR=0, and "-" ones, the grammar's extensions a receiver
// may ignore). UNENCRYPTED_SRTP and the like are refused: this phone does
// SRTP to encrypt.
func (c Crypto) Usable() error {
	if _, _, ok := KnownSuite(c.Suite); !ok {
		return fmt.Errorf("unknown crypto suite %s", c.Suite)
	}
	if c.Keys != 1 {
		return fmt.Errorf("%d keys in one line", c.Keys)
	}
	if c.Lifetime != 0 && c.Lifetime < minLifetime {
		return fmt.Errorf("key lifetime of %d packets", c.Lifetime)
	}
	if c.MKILen > 8 {
		return fmt.Errorf("MKI of %d bytes", c.MKILen)
	}
	for _, p := range c.Params {
		name, val, _ := strings.Cut(p, "=")
		switch {
		case strings.HasPrefix(p, "-"):
		case name == "WSH":
			if n, err := strconv.Atoi(val); err != nil || n < 64 {
				return fmt.Errorf("session parameter %s", p)
			}
		case name == "FEC_ORDER":
		case name == "KDR":
			if val != "0" {
				return fmt.Errorf("session parameter %s (no key derivation rate)", p)
			}
		default:
			return fmt.Errorf("session parameter %s not supported", p)
		}
	}
	return nil
}

// ReplayWindow returns the WSH window size hint, 0 when absent.
func (c Crypto) ReplayWindow() int {
	for _, p := range c.Params {
		if v, ok := strings.CutPrefix(p, "WSH="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// MasterKey and MasterSalt split Key by the suite's sizes; both are nil
// for an unknown suite or a key of the wrong length.
func (c Crypto) MasterKey() []byte {
	kl, sl, ok := KnownSuite(c.Suite)
	if !ok || len(c.Key) != kl+sl {
		return nil
	}
	return c.Key[:kl]
}

// MasterSalt: see MasterKey.
func (c Crypto) MasterSalt() []byte {
	kl, sl, ok := KnownSuite(c.Suite)
	if !ok || len(c.Key) != kl+sl {
		return nil
	}
	return c.Key[kl:]
}

// MKIBytes returns the MKI as it appears in packets (big-endian, MKILen
// bytes), nil without one.
func (c Crypto) MKIBytes() []byte {
	if c.MKILen == 0 {
		return nil
	}
	b := new(big.Int).SetUint64(c.MKI).Bytes()
	out := make([]byte, c.MKILen)
	copy(out[len(out)-min(len(b), len(out)):], b[max(0, len(b)-len(out)):])
	return out
}

// Value writes the attribute value, key included, for the SDP body.
func (c Crypto) Value() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(c.Tag))
	b.WriteByte(' ')
	b.WriteString(c.Suite)
	b.WriteString(" inline:")
	b.WriteString(base64.StdEncoding.EncodeToString(c.Key))
	if c.Lifetime != 0 {
		b.WriteByte('|')
		b.WriteString(formatLifetime(c.Lifetime))
	}
	if c.MKILen != 0 {
		fmt.Fprintf(&b, "|%d:%d", c.MKI, c.MKILen)
	}
	for _, p := range c.Params {
		b.WriteByte(' ')
		b.WriteString(p)
	}
	return b.String()
}

func formatLifetime(n uint64) string {
	if n&(n-1) == 0 {
		for e := 1; e < 64; e++ {
			if n == 1<<e {
				return "2^" + strconv.Itoa(e)
			}
		}
	}
	return strconv.FormatUint(n, 10)
}

// String describes the line without its key.
func (c Crypto) String() string {
	return fmt.Sprintf("%d %s inline:<key withheld>", c.Tag, c.Suite)
}

// LogValue keeps the key out of structured logs.
func (c Crypto) LogValue() slog.Value { return slog.StringValue(c.String()) }

// NewCrypto returns a line for suite with a fresh random master key and
// salt (RFC 3711 §8.1: never reuse a key across sessions).
func NewCrypto(tag int, suite string) (Crypto, error) {
	kl, sl, ok := KnownSuite(suite)
	if !ok {
		return Crypto{}, fmt.Errorf("unknown crypto suite %s", suite)
	}
	key := make([]byte, kl+sl)
	if _, err := rand.Read(key); err != nil {
		return Crypto{}, err
	}
	return Crypto{Tag: tag, Suite: suite, Key: key, Keys: 1}, nil
}

// SelectCrypto picks the line an answer carries: the first offered line
// that is Usable and whose suite we have a line for in ours (our keys,
// one per suite we do). The result is our line under the offer's tag,
// and the offered line it answers.
func SelectCrypto(offered, ours []Crypto) (answer, theirs Crypto, ok bool) {
	for _, o := range offered {
		if o.Usable() != nil {
			continue
		}
		for _, l := range ours {
			if l.Suite == o.Suite {
				a := l
				a.Tag, a.Params = o.Tag, nil
				// WSH is a hint about the sender's own window; echo
				// nothing we do not mean.
				return a, o, true
			}
		}
	}
	return Crypto{}, Crypto{}, false
}

// SDESProto reports whether an m= profile is SRTP keyed in the SDP:
// RTP/SAVP, or RTP/SAVPF (RFC 5124). UDP/TLS/RTP/SAVP(F) is DTLS-SRTP,
// which we do not do.
func SDESProto(proto string) bool {
	switch strings.ToUpper(proto) {
	case "RTP/SAVP", "RTP/SAVPF":
		return true
	}
	return false
}

// SRTPProto returns the SRTP profile matching a plain one: RTP/SAVPF for
// RTP/AVPF, else RTP/SAVP.
func SRTPProto(plain string) string {
	if strings.EqualFold(plain, "RTP/AVPF") {
		return "RTP/SAVPF"
	}
	return "RTP/SAVP"
}

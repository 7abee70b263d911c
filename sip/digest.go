package sip

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Credentials are the parameters of an Authorization or
// Proxy-Authorization header using the Digest scheme (RFC 2617 §3.2.2,
// RFC 8760 for SHA-256).
type Credentials struct {
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // "MD5" (default when absent) or "SHA-256"
	CNonce    string
	Opaque    string
	QOP       string // "" or "auth"
	NC        uint32 // nonce count; 0 when absent
	hasNC     bool
}

// ParseCredentials parses a Digest credentials header value. It is strict
// about structure (quoted strings must close, names are tokens) and
// lenient about unknown parameters, which it ignores.
func ParseCredentials(v string) (Credentials, error) {
	var c Credentials
	v = strings.TrimSpace(v)
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, fmt.Errorf("%w: scheme is not Digest", ErrMalformedDigest)
	}
	// Duplicates are refused: a second username or nonce could make the
	// check and the log name different accounts. seen has a bit per
	// known name; unknown ones are rare and kept in a slice.
	var seen uint16
	var others []string
	err := eachAuthParam(rest, func(name, val string) error {
		bit := uint16(0)
		switch name {
		case "username":
			bit, c.Username = 1<<0, val
		case "realm":
			bit, c.Realm = 1<<1, val
		case "nonce":
			bit, c.Nonce = 1<<2, val
		case "uri":
			bit, c.URI = 1<<3, val
		case "response":
			bit, c.Response = 1<<4, strings.ToLower(val)
		case "algorithm":
			bit, c.Algorithm = 1<<5, strings.ToUpper(val)
		case "cnonce":
			bit, c.CNonce = 1<<6, val
		case "opaque":
			bit, c.Opaque = 1<<7, val
		case "qop":
			bit, c.QOP = 1<<8, strings.ToLower(val)
		case "nc":
			n, err := strconv.ParseUint(val, 16, 32)
			if err != nil || len(val) != 8 {
				return fmt.Errorf("%w: nc %q is not 8 hex digits", ErrMalformedDigest, val)
			}
			bit, c.NC, c.hasNC = 1<<9, uint32(n), true
		default:
			for _, o := range others {
				if o == name {
					return fmt.Errorf("%w: duplicate parameter %q", ErrMalformedDigest, name)
				}
			}
			others = append(others, name)
			return nil
		}
		if seen&bit != 0 {
			return fmt.Errorf("%w: duplicate parameter %q", ErrMalformedDigest, name)
		}
		seen |= bit
		return nil
	})
	if err != nil {
		return Credentials{}, err
	}
	if c.Algorithm == "" {
		c.Algorithm = "MD5"
	}
	switch {
	case c.Username == "":
		return c, fmt.Errorf("%w: no username", ErrMalformedDigest)
	case c.Nonce == "":
		return c, fmt.Errorf("%w: no nonce", ErrMalformedDigest)
	case c.Response == "":
		return c, fmt.Errorf("%w: no response", ErrMalformedDigest)
	case c.URI == "":
		return c, fmt.Errorf("%w: no uri", ErrMalformedDigest)
	}
	if c.QOP != "" && c.QOP != "auth" {
		return c, fmt.Errorf("%w: qop %q not offered", ErrMalformedDigest, c.QOP)
	}
	if c.QOP == "auth" && (!c.hasNC || c.CNonce == "") {
		return c, fmt.Errorf("%w: qop=auth needs nc and cnonce", ErrMalformedDigest)
	}
	return c, nil
}

// parseAuthParams parses a comma-separated list of name=value pairs where
// values are tokens or quoted strings (RFC 7235 auth-param) into a map of
// lower-case names.
func parseAuthParams(s string) (map[string]string, error) {
	out := make(map[string]string, 10)
	err := eachAuthParam(s, func(name, val string) error {
		if _, dup := out[name]; dup {
			return fmt.Errorf("%w: duplicate parameter %q", ErrMalformedDigest, name)
		}
		out[name] = val
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachAuthParam calls fn with each name (in lower case) and value (quotes
// removed, escapes resolved) of an auth-param list, in order, and stops at
// the first error. Values without escapes are substrings of s, so a usual
// header costs no allocations.
func eachAuthParam(s string, fn func(name, val string) error) error {
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',' || s[i] == '\r' || s[i] == '\n') {
			i++
		}
		if i >= len(s) {
			return nil
		}
		start := i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		name := lowerASCII(s[start:i])
		if name == "" {
			return fmt.Errorf("%w: expected parameter name at %d", ErrMalformedDigest, i)
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return fmt.Errorf("%w: parameter %q has no value", ErrMalformedDigest, name)
		}
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var val string
		if i < len(s) && s[i] == '"' {
			i++
			start := i
			escaped := false
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					escaped = true
					i++
				}
				i++
			}
			if i >= len(s) {
				return fmt.Errorf("%w: unterminated quoted value for %q", ErrMalformedDigest, name)
			}
			val = s[start:i]
			i++
			if escaped {
				val = unescapeQuoted(val)
			}
		} else {
			start := i
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			val = s[start:i]
		}
		if err := fn(name, val); err != nil {
			return err
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i < len(s) && s[i] != ',' {
			return fmt.Errorf("%w: junk after %q", ErrMalformedDigest, name)
		}
	}
}

// unescapeQuoted resolves the quoted-pairs of a quoted string's content.
func unescapeQuoted(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// lowerASCII is strings.ToLower for tokens, without allocating when the
// token is already lower case (the usual case).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~/:@[]", c) >= 0
}

// digestResponse computes the expected response (RFC 2617 §3.2.2.1,
// RFC 8760 §2) from the stored HA1 in hex.
func digestResponse(alg, ha1, method string, c *Credentials) string {
	return string(appendDigestResponse(nil, alg, []byte(ha1), method, c))
}

// appendDigestResponse appends the expected response in lower-case hex
// to dst. It hashes from buffers on the stack, so checking credentials
// costs no garbage for usual lengths.
func appendDigestResponse(dst []byte, alg string, ha1 []byte, method string, c *Credentials) []byte {
	sha := alg == "SHA-256"
	var buf [512]byte
	a2 := append(append(append(buf[:0], method...), ':'), c.URI...)
	var ha2 [64]byte
	h2 := hashHex(ha2[:0], sha, a2)
	b := append(append(append(buf[:0], ha1...), ':'), c.Nonce...)
	b = append(b, ':')
	if c.QOP == "auth" {
		var nc [4]byte
		binary.BigEndian.PutUint32(nc[:], c.NC)
		b = hex.AppendEncode(b, nc[:])
		b = append(append(b, ':'), c.CNonce...)
		b = append(b, ":auth:"...)
	}
	b = append(b, h2...)
	return hashHex(dst, sha, b)
}

// hashHex appends the hex MD5 or SHA-256 of b to dst.
func hashHex(dst []byte, sha bool, b []byte) []byte {
	if sha {
		s := sha256.Sum256(b)
		return hex.AppendEncode(dst, s[:])
	}
	s := md5.Sum(b)
	return hex.AppendEncode(dst, s[:])
}

// nonceResult is the verdict on a nonce presented by a client.
type nonceResult int

const (
	nonceOK nonceResult = iota
	nonceBad
	nonceStale
	nonceReplay
)

// nonceKeeper issues server-signed nonces and refuses replays, in the way
// Kamailio's auth module does with its nc array: a nonce is
// base64url(issued unix-nano | sequence number | HMAC-SHA256 of both,
// truncated to 12 bytes), so validity and age are checked without state,
// and the replay state is a fixed table indexed by the sequence number
// modulo its size. Sequence numbers only grow, so a nonce owns its slot
// while it is among the last nonceSlots issued; an older one is treated as
// stale, and the client simply retries with a fresh nonce.
//
// A slot is 12 bytes (the highest count accepted and which transaction
// sent it when), 6 MB for the whole table at most. The table is allocated
// in chunks as the sequence reaches them, so a server that has issued few
// nonces holds little of it; a fully allocated table also enlarges the
// garbage collector's heap goal by its size only once, rather than
// growing with the number of registrations.
type nonceKeeper struct {
	secret   []byte
	lifetime time.Duration
	now      func() time.Time
	// macs pools HMAC-SHA256 states keyed with secret.
	macs sync.Pool

	mu sync.Mutex
	// seq and chunks are guarded by mu. seq is the last sequence number
	// issued; chunks[i] holds slots i*nonceChunk up to the next chunk,
	// nil until a nonce first lands there.
	seq    uint64
	chunks [nonceSlots / nonceChunk]*[nonceChunk]nonceSlot
}

// nonceSlot is the replay state of one nonce: nc is the highest count
// accepted (0: not used yet; ncNoQOP: used once without qop); txh a hash
// of the transaction (Via branch and sent-by) that used that count and
// txAt when (unix seconds), so that a retransmission of that very request
// is recognised as one rather than as a replay.
type nonceSlot struct {
	nc, txh, txAt uint32
}

// retransWindow is how long after its first use a request may come again
// as a retransmission: RFC 3261 Timer F, 64*T1.
const retransWindow = 32 * time.Second

const (
	// nonceSlots is how many of the latest nonces keep their replay
	// state: at 1,000 challenges a second, more than the 5-minute
	// default nonce lifetime.
	nonceSlots = 1 << 19
	nonceChunk = 1 << 12
	ncNoQOP    = ^uint32(0)
)

func newNonceKeeper(secret []byte, lifetime time.Duration) *nonceKeeper {
	// Sequence numbers start from the clock (in nanoseconds) so that they
	// never repeat across restarts: the clock advances far faster than
	// nonces can be issued, so a nonce from before a restart has a number
	// below the window of live ones (unless the restart took less than
	// nonceSlots nanoseconds, 0.5 ms) and reads as stale, rather than
	// finding a fresh slot that would let it be replayed.
	return &nonceKeeper{secret: secret, lifetime: lifetime, now: time.Now, seq: uint64(time.Now().UnixNano())}
}

// slotLocked returns the slot of sequence number seq, allocating its
// chunk on first use. k.mu must be held.
func (k *nonceKeeper) slotLocked(seq uint64) *nonceSlot {
	i := seq % nonceSlots
	c := k.chunks[i/nonceChunk]
	if c == nil {
		c = new([nonceChunk]nonceSlot)
		k.chunks[i/nonceChunk] = c
	}
	return &c[i%nonceChunk]
}

func (k *nonceKeeper) issue() string {
	var b [nonceLen]byte
	return string(k.appendNonce(b[:0]))
}

// nonceLen is the length of a nonce: 28 bytes in unpadded base64.
const nonceLen = 38

// appendNonce issues a nonce and appends it to dst.
func (k *nonceKeeper) appendNonce(dst []byte) []byte {
	k.mu.Lock()
	k.seq++
	seq := k.seq
	*k.slotLocked(seq) = nonceSlot{}
	k.mu.Unlock()
	var b [8 + 8 + 12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(k.now().UnixNano()))
	binary.BigEndian.PutUint64(b[8:16], seq)
	k.sign(b[:16], b[16:])
	return base64.RawURLEncoding.AppendEncode(dst, b[:])
}

// sign writes the first 12 bytes of HMAC-SHA256(secret, msg) to out.
// Keyed HMAC states are pooled: setting one up is two SHA-256 blocks and
// about 500 bytes of garbage, for every challenge and every check.
func (k *nonceKeeper) sign(msg, out []byte) {
	m, _ := k.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, k.secret)
	}
	m.Reset()
	m.Write(msg)
	var sum [sha256.Size]byte
	copy(out, m.Sum(sum[:0]))
	k.macs.Put(m)
}

// check verifies a nonce and its count. The count is recorded by commit,
// which the caller runs only once the digest response itself is found
// correct, so a wrong password cannot burn a client's nonce count.
//
// txID identifies the request's transaction (Via branch and sent-by): the
// same count coming again from the same transaction within retransWindow
// is a retransmission, accepted again (REGISTER and the proxy's
// authentication are idempotent), while from any other transaction it is
// a replay.
func (k *nonceKeeper) check(nonce string, c *Credentials, txID string) (nonceResult, nonceUse) {
	return k.checkTx(nonce, c, fnv32(txID), txID != "")
}

// checkTx is check with the transaction given by its hash (txHash), and
// hasTx false when the request has no transaction identity.
func (k *nonceKeeper) checkTx(nonce string, c *Credentials, h uint32, hasTx bool) (nonceResult, nonceUse) {
	var raw [28]byte
	if base64.RawURLEncoding.DecodedLen(len(nonce)) != len(raw) {
		return nonceBad, nonceUse{}
	}
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce)); err != nil || n != len(raw) {
		return nonceBad, nonceUse{}
	}
	var mac [12]byte
	k.sign(raw[:16], mac[:])
	if subtle.ConstantTimeCompare(mac[:], raw[16:]) != 1 {
		return nonceBad, nonceUse{}
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	if k.now().Sub(issued) > k.lifetime {
		return nonceStale, nonceUse{}
	}
	seq := binary.BigEndian.Uint64(raw[8:16])
	want := c.NC
	if c.QOP != "auth" {
		want = ncNoQOP
	}
	nowS := uint32(k.now().Unix())
	k.mu.Lock()
	live := seq <= k.seq && k.seq-seq < nonceSlots
	var st nonceSlot
	if live {
		st = *k.slotLocked(seq)
	}
	k.mu.Unlock()
	retransmission := hasTx && st.nc != 0 && want == st.nc && st.txh == h &&
		time.Duration(nowS-st.txAt)*time.Second <= retransWindow
	switch {
	case !live:
		// Issued before a restart (the table is not persisted) or pushed
		// out by half a million newer nonces: ask for a fresh one.
		return nonceStale, nonceUse{}
	case retransmission:
	case (st.nc != 0 && want <= st.nc) || want == 0:
		return nonceReplay, nonceUse{}
	}
	return nonceOK, nonceUse{k: k, seq: seq, st: nonceSlot{nc: want, txh: h, txAt: nowS}}
}

// nonceUse is an accepted nonce count, to be recorded by commit once the
// credentials are found correct.
type nonceUse struct {
	k   *nonceKeeper
	seq uint64
	st  nonceSlot
}

// commit records the count as used, unless the nonce has left the window
// or a higher count was recorded meanwhile.
func (u nonceUse) commit() {
	k := u.k
	if k == nil {
		return
	}
	k.mu.Lock()
	if k.seq-u.seq < nonceSlots {
		if sl := k.slotLocked(u.seq); u.st.nc > sl.nc {
			*sl = u.st
		}
	}
	k.mu.Unlock()
}

// fnv32 is FNV-1a, enough to tell transactions apart in a nonce slot.
func fnv32(s string) uint32 {
	return fnv32Add(2166136261, s)
}

func fnv32Add(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// txHash is fnv32(branch + "|" + host + ":" + port) without building
// that string.
func txHash(branch, host string, port int) uint32 {
	var p [20]byte
	h := fnv32Add(2166136261, branch)
	h = fnv32Add(h, "|")
	h = fnv32Add(h, host)
	h = fnv32Add(h, ":")
	return fnv32Add(h, string(strconv.AppendInt(p[:0], int64(port), 10)))
}

// appendChallenge appends one WWW-Authenticate/Proxy-Authenticate value.
func appendChallenge(b []byte, realm string, nonce []byte, alg string, stale bool) []byte {
	b = append(b, `Digest realm="`...)
	b = append(b, realm...)
	b = append(b, `", nonce="`...)
	b = append(b, nonce...)
	b = append(b, `", algorithm=`...)
	b = append(b, alg...)
	b = append(b, `, qop="auth"`...)
	if stale {
		b = append(b, ", stale=true"...)
	}
	return b
}

// challenge renders one WWW-Authenticate/Proxy-Authenticate value.
func challenge(realm, nonce, alg string, stale bool) string {
	var b strings.Builder
	b.WriteString(`Digest realm="`)
	b.WriteString(realm)
	b.WriteString(`", nonce="`)
	b.WriteString(nonce)
	b.WriteString(`", algorithm=`)
	b.WriteString(alg)
	b.WriteString(`, qop="auth"`)
	if stale {
		b.WriteString(", stale=true")
	}
	return b.String()
}

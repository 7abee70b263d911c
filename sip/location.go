package sip

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// Flow is the path a contact's requests arrived over (RFC 5626 §3): the
// transport and the packet source. Requests for the contact go back over it,
// whatever address its Contact header names: behind a NAT that address is
// private and unreachable, while the source is the NAT's public mapping
// that the contact keeps open by registering and sending keepalives. For
// connection-oriented transports sipgo's connection pool is keyed by the
// same source address, so sending to it reuses the registered connection.
type Flow struct {
	// Transport is "udp", "tcp", "tls" or "ws".
	Transport string `json:"t"`
	// Source is the ip:port the contact's packets came from.
	Source string `json:"s"`
	// Local is the ip:port of our listener the flow arrived on; replies
	// must leave from it for a NAT to let them in.
	Local string `json:"l,omitempty"`
}

// Binding is one registered contact of an address-of-record.
type Binding struct {
	// Contact is the Contact URI as the UA wrote it.
	Contact string `json:"c"`
	// Q is the q-value, 0..1 (1 when absent).
	Q float64 `json:"q"`
	// Expires is when the binding lapses.
	Expires time.Time `json:"e"`
	// CallID and CSeq order REGISTERs for this binding (RFC 3261 §10.3
	// step 7).
	CallID string `json:"i"`
	CSeq   uint32 `json:"n"`
	// Flow is how to reach the contact.
	Flow Flow `json:"f"`
	// Instance is the +sip.instance parameter (RFC 5626), if any.
	Instance string `json:"in,omitempty"`
	// UserAgent is the registering UA's User-Agent header, for operators.
	UserAgent string `json:"ua,omitempty"`
}

// uri parses the binding's Contact.
func (b *Binding) uri() (siplib.Uri, error) {
	var u siplib.Uri
	err := siplib.ParseUri(b.Contact, &u)
	return u, err
}

// location is the in-memory location service. Registrations are served
// from here; changes are marked dirty and written to the store in batches
// by the flusher.
type location struct {
	mu sync.RWMutex
	// aors maps an AOR (the user name) to its bindings; guarded by mu.
	aors map[string][]Binding
	// dirty holds AORs changed since the last flush; guarded by mu.
	dirty map[string]struct{}
	// count is the total number of bindings; guarded by mu.
	count int
	// strs interns the binding fields many bindings share.
	strs interner
}

func newLocation() *location {
	return &location{aors: make(map[string][]Binding), dirty: make(map[string]struct{}),
		strs: interner{m: make(map[string]string)}}
}

// interner shares one copy of strings that many bindings hold equal: the
// listener a flow arrived on, the User-Agent of a fleet of phones of one
// model. It holds at most internMax strings and starts over when full, so
// a client sending random User-Agents cannot grow it.
type interner struct {
	mu sync.Mutex
	// m maps a string to its shared copy; guarded by mu.
	m map[string]string
}

const internMax = 4096

func (in *interner) intern(s string) string {
	if s == "" || len(s) > 256 {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) >= internMax {
		clear(in.m)
	}
	s = strings.Clone(s)
	in.m[s] = s
	return s
}

// contactKey is the comparison form of a Contact URI for matching
// refreshes to bindings (RFC 3261 §19.1.4 in its common subset: scheme,
// user, host, port and transport, case-insensitive host).
func contactKey(u *siplib.Uri) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(u.Scheme))
	b.WriteByte(':')
	b.WriteString(u.User)
	b.WriteByte('@')
	b.WriteString(strings.ToLower(u.Host))
	b.WriteByte(':')
	port := u.Port
	if port == 0 {
		port = 5060
	}
	b.WriteString(itoa(port))
	if t, ok := u.UriParams.Get("transport"); ok {
		b.WriteString(";transport=")
		b.WriteString(strings.ToLower(t))
	}
	return b.String()
}

// get returns a copy of the unexpired bindings of aor, highest q first.
func (l *location) get(aor string, now time.Time) []Binding {
	l.mu.RLock()
	bs := l.aors[aor]
	out := make([]Binding, 0, len(bs))
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	l.mu.RUnlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Q > out[j].Q })
	return out
}

// update applies fn to aor's bindings under the write lock and marks aor
// dirty when fn reports a change.
func (l *location) update(aor string, fn func(bs []Binding) ([]Binding, bool)) []Binding {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.aors[aor]
	bs, changed := fn(old)
	if changed {
		l.count += len(bs) - len(old)
		if len(bs) == 0 {
			delete(l.aors, aor)
		} else {
			if old == nil {
				// The key outlives the request: give it its own bytes
				// rather than keep the request's header text alive.
				aor = strings.Clone(aor)
			}
			l.aors[aor] = bs
		}
		l.dirty[aor] = struct{}{}
	}
	out := make([]Binding, len(bs))
	copy(out, bs)
	return out
}

// expire drops lapsed bindings.
func (l *location) expire(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for aor, bs := range l.aors {
		keep := bs[:0]
		for _, b := range bs {
			if b.Expires.After(now) {
				keep = append(keep, b)
			}
		}
		if len(keep) != len(bs) {
			l.count -= len(bs) - len(keep)
			l.dirty[aor] = struct{}{}
			if len(keep) == 0 {
				delete(l.aors, aor)
			} else {
				l.aors[aor] = keep
			}
		}
	}
}

// takeDirty returns the encoded state of every changed AOR (nil for an
// AOR without bindings, which deletes it from the store) and clears the
// dirty set. Under the lock it only copies the changed AORs' bindings
// (their strings are shared, not copied); encoding happens after the lock
// is released, so REGISTERs are not held up by a large flush.
func (l *location) takeDirty() map[string][]byte {
	l.mu.Lock()
	if len(l.dirty) == 0 {
		l.mu.Unlock()
		return nil
	}
	snap := make(map[string][]Binding, len(l.dirty))
	for aor := range l.dirty {
		// expire filters slices in place, so a snapshot needs its own.
		snap[aor] = append([]Binding(nil), l.aors[aor]...)
	}
	if len(l.dirty) > 1024 {
		// clear keeps a map's buckets: after a burst of registrations
		// that would hold tens of bytes per AOR until the next burst.
		l.dirty = make(map[string]struct{})
	} else {
		clear(l.dirty)
	}
	l.mu.Unlock()
	out := make(map[string][]byte, len(snap))
	for aor, bs := range snap {
		if len(bs) == 0 {
			out[aor] = nil
			continue
		}
		out[aor] = encodeBindings(nil, bs)
	}
	return out
}

// markDirty puts AORs back after a failed write so the next flush retries.
func (l *location) markDirty(batch map[string][]byte) {
	l.mu.Lock()
	for aor := range batch {
		l.dirty[aor] = struct{}{}
	}
	l.mu.Unlock()
}

// load fills the location service from stored blobs, dropping expired
// bindings and unreadable blobs. It returns how many bindings it kept.
func (l *location) load(stored map[string][]byte, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for aor, raw := range stored {
		bs, err := decodeBindings(raw)
		if err != nil {
			l.dirty[aor] = struct{}{}
			continue
		}
		if len(raw) > 0 && raw[0] != bindingsV1 {
			// Written by an older version as JSON: rewrite it in the
			// current format at the first flush.
			l.dirty[aor] = struct{}{}
		}
		keep := bs[:0]
		for _, b := range bs {
			if b.Expires.After(now) {
				keep = append(keep, b)
			}
		}
		if len(keep) != len(bs) {
			l.dirty[aor] = struct{}{}
		}
		if len(keep) > 0 {
			l.aors[aor] = keep
			l.count += len(keep)
		}
	}
	return l.count
}

// total is the number of bindings held.
func (l *location) total() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.count
}

// findByContact returns the binding whose Contact matches u, searching all
// AORs. It serves in-dialog requests that arrive without a usable flow
// token: their Request-URI is the remote party's Contact.
func (l *location) findByContact(u *siplib.Uri, now time.Time) (Binding, bool) {
	key := contactKey(u)
	l.mu.RLock()
	defer l.mu.RUnlock()
	if u.User != "" {
		// Most UAs put their account name in the Contact user part: try
		// that AOR first before scanning.
		for _, b := range l.aors[u.User] {
			if bu, err := b.uri(); err == nil && contactKey(&bu) == key && b.Expires.After(now) {
				return b, true
			}
		}
	}
	for _, bs := range l.aors {
		for _, b := range bs {
			if bu, err := b.uri(); err == nil && contactKey(&bu) == key && b.Expires.After(now) {
				return b, true
			}
		}
	}
	return Binding{}, false
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// The registrar stores each address-of-record's bindings as one blob in
// the store (internal/store leaves the format to us). The format is
// binary, versioned by its first byte:
//
//	blob    = 0x01 count:uvarint binding*count
//	binding = contact:str q:float64 expires:int64 call-id:str cseq:uvarint
//	          transport:str source:str local:str instance:str user-agent:str
//	str     = length:uvarint bytes
//
// float64 and int64 (Unix nanoseconds) are 8 bytes big-endian. Versions
// before it wrote a JSON array of Binding, which always starts with '['
// (or is "null"); decodeBindings still reads that, and the location
// service rewrites such blobs in the binary form at its next flush.
// Binary encoding is about ten times cheaper than JSON and the blobs are
// about half the size.
const bindingsV1 = 0x01

// maxBindingField bounds one string in a blob: far above any real
// Contact or User-Agent, low enough that a corrupt length cannot make the
// decoder allocate much.
const maxBindingField = 64 << 10

var errBadBindings = errors.New("unreadable bindings blob")

// encodeBindings appends the binary form of bs to dst.
func encodeBindings(dst []byte, bs []Binding) []byte {
	n := 1 + binary.MaxVarintLen64
	for i := range bs {
		b := &bs[i]
		n += 16 + 6*binary.MaxVarintLen64 + len(b.Contact) + len(b.CallID) + len(b.Flow.Transport) +
			len(b.Flow.Source) + len(b.Flow.Local) + len(b.Instance) + len(b.UserAgent) + binary.MaxVarintLen32
	}
	if dst == nil {
		dst = make([]byte, 0, n)
	}
	dst = append(dst, bindingsV1)
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	str := func(s string) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	for i := range bs {
		b := &bs[i]
		str(b.Contact)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(b.Q))
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.Expires.UnixNano()))
		str(b.CallID)
		dst = binary.AppendUvarint(dst, uint64(b.CSeq))
		str(b.Flow.Transport)
		str(b.Flow.Source)
		str(b.Flow.Local)
		str(b.Instance)
		str(b.UserAgent)
	}
	return dst
}

// decodeBindings reads a blob in the binary form or the older JSON one.
// It never panics on corrupt input: it returns errBadBindings (wrapped).
func decodeBindings(raw []byte) ([]Binding, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty", errBadBindings)
	}
	if raw[0] != bindingsV1 {
		var bs []Binding
		if err := json.Unmarshal(raw, &bs); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadBindings, err)
		}
		return bs, nil
	}
	d := bindingDecoder{b: raw[1:]}
	count := d.uvarint()
	// Every binding takes at least 23 bytes (16 fixed, 7 lengths), so a
	// count beyond that is corrupt, not a reason to allocate.
	if d.err != nil || count > uint64(len(d.b))/23 {
		return nil, fmt.Errorf("%w: bad count", errBadBindings)
	}
	bs := make([]Binding, count)
	for i := range bs {
		b := &bs[i]
		b.Contact = d.str()
		b.Q = math.Float64frombits(d.u64())
		b.Expires = time.Unix(0, int64(d.u64()))
		b.CallID = d.str()
		cseq := d.uvarint()
		if cseq > math.MaxUint32 {
			d.fail()
		}
		b.CSeq = uint32(cseq)
		b.Flow.Transport = d.str()
		b.Flow.Source = d.str()
		b.Flow.Local = d.str()
		b.Instance = d.str()
		b.UserAgent = d.str()
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last binding", errBadBindings, len(d.b))
	}
	return bs, nil
}

// bindingDecoder reads the binary form; after the first error every read
// returns zero values and err stays set.
type bindingDecoder struct {
	b   []byte
	err error
}

func (d *bindingDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or corrupt", errBadBindings)
	}
	d.b = nil
}

func (d *bindingDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	// Only the shortest encoding is accepted, so that a blob has one
	// reading and one writing.
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *bindingDecoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *bindingDecoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > maxBindingField || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

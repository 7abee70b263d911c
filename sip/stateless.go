package sip

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	siplib "github.com/emiago/sipgo/sip"
)

// The registrar answers REGISTERs over UDP statelessly, straight from the
// front door, the way Kamailio's registrar does (sl replies): REGISTER
// needs no transaction machinery, and a retransmission is simply handled
// again (see registerStateless). This keeps sipgo's per-transaction
// goroutines, timers and retained messages off the registrar's hot path,
// which at thousands of registrations per second is most of the cost.
// replyCache, which resends a stored final response to a retransmitted
// request, serves the proxy's stateless paths.

// replyLinger is how long a final response is kept for retransmitted
// requests: RFC 3261 Timer J is 32 s, but retransmissions of a request
// come T1-doubling apart and nearly all within the first few seconds;
// Kamailio keeps transactions 5 s (wt_timer).
const replyLinger = 5 * time.Second

// replyCache maps a request's transaction key to the final response sent.
type replyCache struct {
	// linger is how long answers are kept; zero means replyLinger.
	// Tests shorten it.
	linger time.Duration

	mu sync.Mutex
	// m, order and head are guarded by mu; order[head:] lists the live
	// keys oldest first.
	m     map[string][]byte
	order []cachedKey
	head  int
	// sweep is the timer that expires answers when no new put comes to
	// do it, so that a burst's answers do not stay once traffic stops;
	// nil while the cache is empty. Guarded by mu.
	sweep *time.Timer
}

type cachedKey struct {
	key string
	at  time.Time
}

func newReplyCache() *replyCache {
	return &replyCache{linger: replyLinger, m: make(map[string][]byte)}
}

func (c *replyCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[key]
	return b, ok
}

func (c *replyCache) put(key string, b []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		c.order = append(c.order, cachedKey{key, now})
	}
	c.m[key] = b
	// Expire from the front while we hold the lock; the slice is
	// compacted only when the expired head is most of it, so each put is
	// amortised O(1).
	c.expireLocked(now)
	if c.sweep == nil {
		c.sweep = time.AfterFunc(c.lingerTime(), c.tick)
	}
}

// tick is the sweep timer's function: it expires what is due and re-arms
// while answers remain.
func (c *replyCache) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(time.Now())
	if len(c.m) == 0 {
		c.sweep = nil
		return
	}
	c.sweep.Reset(c.lingerTime())
}

func (c *replyCache) lingerTime() time.Duration {
	if c.linger == 0 {
		return replyLinger
	}
	return c.linger
}

// expire drops answers older than the linger time.
func (c *replyCache) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
}

// expireLocked drops expired answers from the front of the order; c.mu
// must be held.
func (c *replyCache) expireLocked(now time.Time) {
	for linger := c.lingerTime(); c.head < len(c.order) && now.Sub(c.order[c.head].at) > linger; {
		delete(c.m, c.order[c.head].key)
		c.order[c.head] = cachedKey{}
		c.head++
	}
	switch {
	case c.head == len(c.order):
		// Empty: let go of the backing array too, which a burst may
		// have grown large.
		c.order, c.head = nil, 0
	case c.head > 1024 && c.head > len(c.order)/2:
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// len is the number of answers held.
func (c *replyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// txKey is the RFC 3261 §17.2.3 matching key of a request: branch,
// sent-by and method; "" when the branch is not RFC 3261 style (then
// there is no reliable way to recognise a retransmission).
func txKey(req *siplib.Request) string {
	via := req.Via()
	if via == nil {
		return ""
	}
	br, _ := via.Params.Get("branch")
	if !strings.HasPrefix(br, siplib.RFC3261BranchMagicCookie) || len(br) <= len(siplib.RFC3261BranchMagicCookie) {
		return ""
	}
	return br + "|" + via.Host + "|" + strconv.Itoa(via.Port) + "|" + string(req.Method)
}

// statelessTx is the ServerTransaction handed to the registrar for a UDP
// REGISTER taken by the front door: responses are written directly to
// the request's source (RFC 3581: the source port when rport was asked
// for, else the Via port) and the final one is cached for
// retransmissions.
type statelessTx struct {
	fd   *frontDoor
	key  string
	dest net.Addr
	done chan struct{}
	once sync.Once
}

func (t *statelessTx) Respond(res *siplib.Response) error {
	b := []byte(res.String())
	if !res.IsProvisional() {
		// Cache before sending: the client may retransmit the moment the
		// answer arrives, and another worker may take that copy.
		if t.key != "" {
			t.fd.s.replies.put(t.key, b, time.Now())
		}
		t.Terminate()
	}
	_, err := t.fd.PacketConn.WriteTo(b, t.dest)
	return err
}

func (t *statelessTx) Terminate()                            { t.once.Do(func() { close(t.done) }) }
func (t *statelessTx) OnTerminate(siplib.FnTxTerminate) bool { return false }
func (t *statelessTx) Done() <-chan struct{}                 { return t.done }
func (t *statelessTx) Err() error                            { return nil }
func (t *statelessTx) Acks() <-chan *siplib.Request          { return nil }
func (t *statelessTx) OnCancel(siplib.FnTxCancel) bool       { return false }

// responseAddr is where a response to a UDP request from src goes.
func responseAddr(req *siplib.Request, src *net.UDPAddr) net.Addr {
	via := req.Via()
	if via == nil {
		return src
	}
	if _, ok := via.Params.Get("rport"); ok {
		return src
	}
	port := via.Port
	if port == 0 {
		port = 5060
	}
	return &net.UDPAddr{IP: src.IP, Port: port, Zone: src.Zone}
}

// registerStateless runs the registrar for a parsed UDP REGISTER.
//
// Its answers are not kept for retransmissions, as Kamailio's sl replies
// are not: a retransmitted REGISTER is simply handled again. Without
// credentials it gets a fresh challenge, as good as the first; with them,
// the nonce keeper recognises the same transaction's count as a
// retransmission rather than a replay, and the registrar leaves bindings
// alone for a CSeq it has seen (RFC 3261 §10.3 step 7), so the answer is
// the same 200 with the current bindings. Keeping every answer for 5 s
// instead would hold about a kilobyte per registration in memory at any
// moment of a burst, to save work on the rare retransmission.
func (f *frontDoor) registerStateless(req *siplib.Request, addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	req.SetSource(addr.String())
	req.SetTransport("UDP")
	tx := &statelessTx{fd: f, dest: responseAddr(req, ua), done: make(chan struct{})}
	if req.Via() == nil || req.CSeq() == nil {
		f.s.metrics.malformed.Inc()
		f.s.reply(req, tx, 400, "Bad Request", "missing Via or CSeq")
		return
	}
	f.s.register(req, tx)
}

// registerDatagram parses and answers one UDP REGISTER in the calling
// goroutine, the front door's reader, which saves handing the datagram to
// another goroutine (at a thousand REGISTERs a second, waking a worker's
// thread costs about as much as parsing the request). data may be reused once it returns: nothing kept
// refers to it.
func (f *frontDoor) registerDatagram(parser *siplib.Parser, data []byte, addr net.Addr) {
	msg, err := parser.ParseSIP(data)
	if err != nil {
		f.s.metrics.malformed.Inc()
		f.rawReply(data, addr, 400, "Bad Request", err.Error(), "")
		return
	}
	if req, ok := msg.(*siplib.Request); ok {
		f.registerStateless(req, addr)
	}
}

// rawAnswer is a response written straight into a byte buffer from the
// request's parsed headers, for answers sent on a statelessTx: the
// registrar's 401s and 200s are most of its output, and building sipgo
// Response objects (header clones, a random To tag, then rendering) cost
// more than the rest of the answer together.
type rawAnswer struct {
	b []byte
}

// WriteString lets sipgo's header writers render into the buffer.
func (a *rawAnswer) WriteString(s string) (int, error) {
	a.b = append(a.b, s...)
	return len(s), nil
}

var rawAnswers = sync.Pool{New: func() any { return &rawAnswer{b: make([]byte, 0, 1024)} }}

// startRawAnswer begins a response to req: status line, the Vias, From,
// To (with a tag when the request had none), Call-ID and CSeq (RFC 3261
// §8.2.6.2). The caller appends further header lines and ends it with
// finish.
func startRawAnswer(req *siplib.Request, code int, phrase string) *rawAnswer {
	a := rawAnswers.Get().(*rawAnswer)
	a.b = append(a.b[:0], "SIP/2.0 "...)
	a.b = strconv.AppendInt(a.b, int64(code), 10)
	a.b = append(a.b, ' ')
	a.b = append(a.b, phrase...)
	a.b = append(a.b, "\r\n"...)
	for _, h := range req.Headers() {
		if v, ok := h.(*siplib.ViaHeader); ok {
			a.via(v)
		}
	}
	if h := req.From(); h != nil {
		h.StringWrite(a)
		a.b = append(a.b, "\r\n"...)
	}
	if h := req.To(); h != nil {
		h.StringWrite(a)
		if !h.Params.Has("tag") {
			// Stateless answers carry a tag derived from the request, as
			// Kamailio's sl does, so that a retransmission's answer has
			// the same one (RFC 3261 §8.2.6.2).
			a.b = append(a.b, ";tag=pl"...)
			a.b = strconv.AppendUint(a.b, uint64(statelessTag(req)), 36)
		}
		a.b = append(a.b, "\r\n"...)
	}
	if h := req.CallID(); h != nil {
		h.StringWrite(a)
		a.b = append(a.b, "\r\n"...)
	}
	if h := req.CSeq(); h != nil {
		h.StringWrite(a)
		a.b = append(a.b, "\r\n"...)
	}
	return a
}

// via appends a Via header line as sipgo renders it, without the
// intermediate string sipgo's ViaHeader.StringWrite builds.
func (a *rawAnswer) via(v *siplib.ViaHeader) {
	a.b = append(a.b, "Via: "...)
	a.b = append(a.b, v.ProtocolName...)
	a.b = append(a.b, '/')
	a.b = append(a.b, v.ProtocolVersion...)
	a.b = append(a.b, '/')
	a.b = append(a.b, v.Transport...)
	a.b = append(a.b, ' ')
	if strings.IndexByte(v.Host, ':') >= 0 && !strings.HasPrefix(v.Host, "[") {
		a.b = append(a.b, '[')
		a.b = append(a.b, v.Host...)
		a.b = append(a.b, ']')
	} else {
		a.b = append(a.b, v.Host...)
	}
	if v.Port > 0 {
		a.b = append(a.b, ':')
		a.b = strconv.AppendInt(a.b, int64(v.Port), 10)
	}
	if len(v.Params) > 0 {
		a.b = append(a.b, ';')
		v.Params.ToStringWrite(';', a)
	}
	a.b = append(a.b, "\r\n"...)
}

// statelessTag is a hash of what identifies a request's transaction.
func statelessTag(req *siplib.Request) uint32 {
	h := uint32(2166136261)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint32(s[i])
			h *= 16777619
		}
		h ^= '|'
		h *= 16777619
	}
	if c := req.CallID(); c != nil {
		mix(string(*c))
	}
	if f := req.From(); f != nil {
		tag, _ := f.Params.Get("tag")
		mix(tag)
	}
	if v := req.Via(); v != nil {
		br, _ := v.Params.Get("branch")
		mix(br)
	}
	return h
}

// header appends one header line.
func (a *rawAnswer) header(name, value string) {
	a.b = append(a.b, name...)
	a.b = append(a.b, ": "...)
	a.b = append(a.b, value...)
	a.b = append(a.b, "\r\n"...)
}

// finish adds the Warning (when why is set), Server and Content-Length
// headers and the empty line.
func (a *rawAnswer) finish(why, server string) []byte {
	if why != "" {
		a.b = append(a.b, `Warning: 399 punchline "`...)
		a.b = append(a.b, sanitizeWarning(why)...)
		a.b = append(a.b, "\"\r\n"...)
	}
	a.b = append(a.b, "Server: "...)
	a.b = append(a.b, server...)
	a.b = append(a.b, "\r\nContent-Length: 0\r\n\r\n"...)
	return a.b
}

// release returns the buffer to the pool.
func (a *rawAnswer) release() {
	if cap(a.b) <= 8192 {
		rawAnswers.Put(a)
	}
}

// sendRaw sends a complete final or provisional answer, as Respond does
// for a sipgo Response.
func (t *statelessTx) sendRaw(b []byte, final bool) error {
	if final {
		if t.key != "" {
			t.fd.s.replies.put(t.key, append([]byte(nil), b...), time.Now())
		}
		t.Terminate()
	}
	_, err := t.fd.PacketConn.WriteTo(b, t.dest)
	return err
}

package sip

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	siplib "github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// frontDoor wraps the UDP socket handed to sipgo. Every datagram passes
// here before sipgo's parser: STUN keepalives (RFC 5626 §4.4.2: a client
// multiplexes STUN binding requests on its SIP flow) are answered and
// consumed; oversize and flooding sources are refused; messages the SIP
// parser cannot read are answered 400 with the reason (when enough of the
// request is legible to address a response) or dropped. The messages of a
// call that need no transaction are handled right here on this parse (see
// fastpath.go). Only clean SIP messages reach sipgo, which also means
// sipgo never logs parse errors.
type frontDoor struct {
	net.PacketConn
	s      *Server
	parser *siplib.Parser
	// toSipgo carries the datagrams that need sipgo's transaction layer
	// from the readers to sipgo's read loop (ReadFrom). It is closed, and
	// readErr set, once every reader has stopped.
	toSipgo chan datagram
	readErr error
	// wake starts a helper reader (see serve); helped counts the starts.
	wake   chan struct{}
	helped atomic.Int64
}

// datagram is one admitted message on its way to sipgo.
type datagram struct {
	data *[]byte
	addr net.Addr
}

// datagramPool recycles the copies handed to sipgo.
var datagramPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// toSipgoLen bounds the datagrams waiting for sipgo's read loop; beyond
// it readers wait, and the socket's own buffer queues.
const toSipgoLen = 1024

// serve runs the socket's readers until it is closed; sipgo's read loop
// then ends too. Several readers let the fast paths (and the parse every
// datagram gets here) use every CPU under load, as Kamailio's UDP workers
// do; like theirs, two datagrams from one source may then be handled out
// of order, which UDP allows anyway. Under light load a second reader
// costs more than it gives: readers of one socket take turns on its read
// lock, so every datagram wakes two goroutines instead of one (about 12 %
// more CPU per call at 200 calls/s). So one reader always runs and the n-1
// helpers only while datagrams come fast (see readerWindow).
func (f *frontDoor) serve(ctx context.Context, wg *sync.WaitGroup, n int) {
	f.toSipgo = make(chan datagram, toSipgoLen)
	f.wake = make(chan struct{}, max(n-1, 1))
	var readers sync.WaitGroup
	var once sync.Once
	for i := range n {
		readers.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer readers.Done()
			if err := f.read(ctx, i > 0); err != nil {
				once.Do(func() { f.readErr = err })
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		readers.Wait()
		close(f.toSipgo)
	}()
}

// readerWindow is how many datagrams a reader handles between looks at
// the clock. When the primary reader gets that many within helpAfter
// (4,000 datagrams/s, some 500 calls/s) it wakes a helper; a helper that
// takes longer than restAfter over that many (under 2,000/s) goes back to
// waiting.
const (
	readerWindow = 64
	helpAfter    = 16 * time.Millisecond
	restAfter    = 32 * time.Millisecond
)

// read is one reader: it admits datagrams (answering or forwarding what
// the front door handles itself) and passes the rest on to sipgo. A
// helper reads only between a wake-up from the primary and a slack
// window.
func (f *frontDoor) read(ctx context.Context, helper bool) error {
	buf := make([]byte, siplib.TransportBufferReadSize)
	for {
		if helper {
			select {
			case <-f.wake:
				f.helped.Add(1)
			case <-ctx.Done():
				return nil
			}
		}
		if err := f.readWhileBusy(ctx, buf, helper); err != nil {
			return err
		}
	}
}

// readWhileBusy reads until the socket fails, or, for a helper, until
// the traffic slows down (then it returns nil).
func (f *frontDoor) readWhileBusy(ctx context.Context, buf []byte, helper bool) error {
	count, since := 0, time.Now()
	for {
		n, addr, err := f.PacketConn.ReadFrom(buf)
		if err != nil {
			return err
		}
		if f.admit(buf[:n], addr) {
			d := datagramPool.Get().(*[]byte)
			*d = append((*d)[:0], buf[:n]...)
			select {
			case f.toSipgo <- datagram{data: d, addr: addr}:
			case <-ctx.Done():
				// sipgo's loop may be gone already; the socket closes next.
				return ctx.Err()
			}
		}
		if count++; count < readerWindow {
			continue
		}
		now := time.Now()
		took := now.Sub(since)
		count, since = 0, now
		switch {
		case helper && took > restAfter:
			return nil
		case !helper && took < helpAfter:
			select {
			case f.wake <- struct{}{}:
			default: // every helper is awake or about to be
			}
		}
	}
}

// ReadFrom is sipgo's read loop's view of the socket: only the admitted
// datagrams that need its transaction layer.
func (f *frontDoor) ReadFrom(b []byte) (int, net.Addr, error) {
	d, ok := <-f.toSipgo
	if !ok {
		err := f.readErr
		if err == nil {
			err = net.ErrClosed
		}
		return 0, nil, err
	}
	n := copy(b, *d.data)
	datagramPool.Put(d.data)
	return n, d.addr, nil
}

// admit decides whether a datagram goes on to sipgo.
func (f *frontDoor) admit(data []byte, addr net.Addr) bool {
	if len(bytes.Trim(data, "\r\n\x00")) == 0 {
		// RFC 5626 CRLF keepalives over UDP need no answer.
		return false
	}
	if isSTUN(data) {
		f.answerSTUN(data, addr)
		return false
	}
	isRequest := !bytes.HasPrefix(data, []byte("SIP/"))
	if isRequest {
		ip := addrIP(addr)
		switch f.s.limit.check(ip) {
		case reject:
			f.s.metrics.rateLimited.Inc()
			f.rawReply(data, addr, 503, "Service Unavailable", "too many requests from "+ip.String(), "Retry-After: 5\r\n")
			return false
		case drop:
			f.s.metrics.rateLimited.Inc()
			return false
		}
	}
	if len(data) > f.s.cfg.MaxMessageSize {
		f.s.metrics.malformed.Inc()
		if isRequest {
			f.rawReply(data, addr, 513, "Message Too Large", "message exceeds "+itoa(f.s.cfg.MaxMessageSize)+" bytes", "")
		}
		return false
	}
	if !isRequest && toStatefulBranch(data) {
		// A response to a request forwarded through sipgo's transaction
		// layer (INVITE, re-INVITE, CANCEL): only that layer can use it,
		// and its parse is the only one it needs. There is nobody to
		// answer if it is malformed; sipgo drops it (see udpParseFilter).
		return true
	}
	if bytes.HasPrefix(data, []byte("REGISTER ")) {
		// REGISTERs are parsed and answered right here, in the reader
		// that read them: handing each one to a worker cost a copy of the
		// datagram and a thread wake-up, a quarter of the CPU of a
		// registration at 1,000/s. The answer is written before this
		// returns, so parsing the read buffer without a copy is safe; when
		// REGISTERs come faster than one reader answers them, the helper
		// readers join in.
		f.registerDatagram(f.parser, data, addr)
		return false
	}
	// sipgo's parser keeps slices of its input; the read buffer is reused
	// for the next datagram, so parse a copy.
	msg, err := f.parser.ParseSIP(append([]byte(nil), data...))
	if err != nil {
		f.s.metrics.malformed.Inc()
		f.s.log.Debug("unparseable message", "from", addr.String(), "err", err)
		if isRequest {
			f.rawReply(data, addr, 400, "Bad Request", err.Error(), "")
		}
		return false
	}
	if req, ok := msg.(*siplib.Request); ok && req.Method == siplib.REGISTER {
		// A REGISTER with leading whitespace or a lower-case method
		// token: rare, handle it here.
		f.registerStateless(req, addr)
		return false
	}
	if f.fastPath(msg, addr) {
		return false
	}
	return true
}

func addrIP(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		ip, _ := netip.AddrFromSlice(u.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// isSTUN reports whether a datagram is a STUN message: SIP starts with a
// letter, STUN with two zero bits and carries the magic cookie at bytes
// 4..7 (RFC 5389 §6, RFC 7983 demultiplexing).
func isSTUN(b []byte) bool {
	return len(b) >= 20 && b[0] < 2 && stun.IsMessage(b)
}

func (f *frontDoor) answerSTUN(data []byte, addr net.Addr) {
	m := &stun.Message{Raw: append([]byte(nil), data...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port}, stun.Fingerprint)
	if err != nil {
		return
	}
	f.s.metrics.stun.Inc()
	f.PacketConn.WriteTo(resp.Raw, addr) //nolint:errcheck // a lost answer is retried by the client.
}

// rawReply answers a request that will not be (or could not be) parsed,
// copying the headers a response needs (RFC 3261 §8.2.6.2) straight from
// the text. Without a Via, CSeq and Call-ID there is nothing a client could
// match the response to, so nothing is sent.
func (f *frontDoor) rawReply(data []byte, addr net.Addr, code int, phrase, why, extra string) {
	resp := rawResponse(data, code, phrase, why, extra)
	if resp == nil {
		return
	}
	f.PacketConn.WriteTo(resp, addr) //nolint:errcheck // best effort, as for any UDP reply.
}

// rawResponse builds a stateless response from the header lines of a
// request it does not parse; nil when the mandatory headers are missing.
func rawResponse(data []byte, code int, phrase, why, extra string) []byte {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) < 2 {
		return nil
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 ")
	b.WriteString(itoa(code))
	b.WriteByte(' ')
	b.WriteString(phrase)
	b.WriteString("\r\n")
	var have struct{ via, cseq, callid bool }
	toTag := false
	for _, ln := range lines[1:] {
		ln = strings.TrimRight(ln, "\r")
		name, val, ok := strings.Cut(ln, ":")
		if !ok || strings.ContainsAny(ln, "\x00") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			have.via = true
			b.WriteString("Via:" + val + "\r\n")
		case "from", "f":
			b.WriteString("From:" + val + "\r\n")
		case "to", "t":
			b.WriteString("To:" + val)
			if !strings.Contains(strings.ToLower(val), "tag=") && !toTag {
				b.WriteString(";tag=pl-stateless")
			}
			toTag = true
			b.WriteString("\r\n")
		case "call-id", "i":
			have.callid = true
			b.WriteString("Call-ID:" + val + "\r\n")
		case "cseq":
			have.cseq = true
			b.WriteString("CSeq:" + val + "\r\n")
		}
	}
	if !have.via || !have.cseq || !have.callid {
		return nil
	}
	b.WriteString(extra)
	b.WriteString(`Warning: 399 punchline "`)
	b.WriteString(sanitizeWarning(why))
	b.WriteString("\"\r\nContent-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func sanitizeWarning(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
			return ' '
		}
		return r
	}, s)
}

// toStatefulBranch reports a response whose top Via carries a branch of a
// client transaction of ours (not a stateless forward, not a keepalive
// ping), looking at the raw text only.
func toStatefulBranch(data []byte) bool {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	for len(head) > 0 {
		var line []byte
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			line, head = head, nil
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("Via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		// The first Via line; its first hop's branch decides.
		if i := bytes.IndexByte(val, ','); i >= 0 {
			val = val[:i]
		}
		i := bytes.Index(val, []byte(";branch="))
		if i < 0 {
			return false
		}
		br := val[i+len(";branch="):]
		if j := bytes.IndexAny(br, "; \t\r"); j >= 0 {
			br = br[:j]
		}
		return bytes.HasPrefix(br, []byte(branchPrefix)) &&
			!bytes.HasPrefix(br, []byte(statelessBranchPrefix)) &&
			!bytes.HasPrefix(br, []byte(branchPrefix+"ping"))
	}
	return false
}

// udpParseFilter is the log handler of sipgo's UDP transport. The front
// door hands it some responses unparsed (toStatefulBranch); sipgo logs a
// datagram it cannot parse at error level with its whole text, which a
// peer could use to flood the log, so that record becomes a count of
// malformed messages, as the front door keeps for everything else.
type udpParseFilter struct {
	slog.Handler
	malformed prometheus.Counter
	// udp is set on the handler sipgo derives for its UDP transport.
	udp bool
}

func (h udpParseFilter) Handle(ctx context.Context, r slog.Record) error {
	if h.udp && r.Message == "failed to parse" {
		h.malformed.Inc()
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h udpParseFilter) WithAttrs(as []slog.Attr) slog.Handler {
	udp := h.udp
	for _, a := range as {
		if a.Key == "caller" && a.Value.String() == "Transport<UDP>" {
			udp = true
		}
	}
	return udpParseFilter{Handler: h.Handler.WithAttrs(as), malformed: h.malformed, udp: udp}
}

func (h udpParseFilter) WithGroup(name string) slog.Handler {
	return udpParseFilter{Handler: h.Handler.WithGroup(name), malformed: h.malformed, udp: h.udp}
}

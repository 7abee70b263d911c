package sip

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	siplib "github.com/emiago/sipgo/sip"
)

func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="punchline", nonce="abc", uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="x", qop=auth, nc=00000001`,
		`Digest username="a\"b", realm="r", nonce="n", uri="u", response="r"`,
		`Digest username=alice,realm=r,nonce=n,uri=u,response=r,algorithm=SHA-256`,
		`Digest username="alice", nc=0000000g`,
		`Basic YWxhZGRpbjpvcGVuc2VzYW1l`,
		`Digest username="unterminated`,
		`Digest ,,,, username = "x" ,`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCredentials(s)
		if err != nil {
			return
		}
		// Whatever parses has what verification needs.
		if c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "" {
			t.Fatalf("accepted credentials missing a field: %+v", c)
		}
		if c.QOP == "auth" && (!c.hasNC || c.CNonce == "") {
			t.Fatalf("qop=auth accepted without nc/cnonce: %+v", c)
		}
		_ = digestResponse(c.Algorithm, "00", "REGISTER", &c)
	})
}

func FuzzDialogToken(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	good := dialogToken{FromTag: "abc", Caller: Flow{"udp", "127.0.0.1:5062", "127.0.0.1:5060"}, Callee: Flow{"tcp", "10.0.0.1:40000", ""}}
	f.Add(good.encode(key))
	f.Add("")
	f.Add("x.y")
	f.Add("YWJj.AAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeDialogToken(s, key)
		if err != nil {
			return
		}
		// Only what we signed decodes; it must round-trip.
		if again, err := decodeDialogToken(tok.encode(key), key); err != nil || again != tok {
			t.Fatalf("round trip of %+v: %+v, %v", tok, again, err)
		}
		if _, err := decodeDialogToken(s, []byte("another key, another server 0000")); err == nil {
			t.Fatal("token accepted under a different key")
		}
	})
}

func FuzzRawResponse(f *testing.F) {
	f.Add([]byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n\r\n"))
	f.Add([]byte("INVITE\r\n\r\n"))
	f.Add([]byte("X\nv: SIP/2.0/UDP h\ni: c\nCSeq: 1 X\nt: <sip:a@b>\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := rawResponse(data, 400, "Bad Request", string(data), "")
		if res == nil {
			return
		}
		if !bytes.HasPrefix(res, []byte("SIP/2.0 400 Bad Request\r\n")) || !bytes.HasSuffix(res, []byte("Content-Length: 0\r\n\r\n")) {
			t.Fatalf("malformed stateless response:\n%q", res)
		}
		// The Warning reason never breaks out of its quoted string.
		for _, ln := range strings.Split(string(res), "\r\n") {
			if strings.HasPrefix(ln, "Warning:") && strings.Count(ln, `"`) != 2 {
				t.Fatalf("Warning line %q", ln)
			}
		}
	})
}

// fakeTx is a server transaction that records responses, so that the
// request handlers can be fuzzed without sockets.
type fakeTx struct {
	mu    sync.Mutex
	resps []*siplib.Response
	done  chan struct{}
}

func (f *fakeTx) Terminate()                            {}
func (f *fakeTx) OnTerminate(siplib.FnTxTerminate) bool { return true }
func (f *fakeTx) Done() <-chan struct{}                 { return f.done }
func (f *fakeTx) Err() error                            { return nil }
func (f *fakeTx) Acks() <-chan *siplib.Request          { return nil }
func (f *fakeTx) OnCancel(siplib.FnTxCancel) bool       { return true }
func (f *fakeTx) Respond(r *siplib.Response) error {
	f.mu.Lock()
	f.resps = append(f.resps, r)
	f.mu.Unlock()
	return nil
}

// FuzzRequestHandler feeds arbitrary datagrams through the front door
// checks and, when they parse, through the request handlers with a fake
// transaction. Handlers must never panic and must answer every request
// except ACK (and what they forward, which cannot happen here: nothing
// can authenticate).
func FuzzRequestHandler(f *testing.F) {
	for _, s := range []string{
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:alice@b>;tag=1\r\nTo: <sip:alice@b>\r\nCall-ID: c2\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"alice\", realm=\"punchline\", nonce=\"x\", uri=\"sip:127.0.0.1\", response=\"00\"\r\nContent-Length: 0\r\n\r\n",
		"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK3\r\nFrom: <sip:alice@b>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: c3\r\nCSeq: 1 INVITE\r\nRoute: <sip:tok.sig@127.0.0.1:5060;lr>\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:bob@10.1.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK4\r\nFrom: <sip:alice@b>;tag=1\r\nTo: <sip:bob@b>;tag=2\r\nCall-ID: c4\r\nCSeq: 2 BYE\r\nRoute: <sip:YWJj.AAAAAAAAAAAAAAAA@127.0.0.1:5060;lr>\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	ts := startServer(f, map[string]string{"alice": "apw", "bob": "bpw"}, nil)
	fd := &frontDoor{PacketConn: discardConn{}, s: ts.Server, parser: siplib.NewParser()}
	src := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5060}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !fd.admit(data, src) {
			return
		}
		m, err := siplib.ParseMessage(data)
		if err != nil {
			t.Fatalf("front door admitted what sipgo cannot parse: %v", err)
		}
		req, ok := m.(*siplib.Request)
		if !ok {
			return
		}
		req.SetSource(src.String())
		req.SetTransport("UDP")
		if req.Via() == nil || req.CSeq() == nil {
			return // sipgo's transaction layer answers these itself.
		}
		tx := &fakeTx{done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_ = ctx
		ts.handlerFor(req.Method)(req, tx)
	})
}

// discardConn is a PacketConn that drops writes (the fuzzed front door
// answers malformed input on it).
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

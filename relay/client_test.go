package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// rawClient is a minimal TURN client written for tests, which sends
// exactly the requests a test asks for (pion's client hides the channel
// bind and refresh timing that the tests below need to control).
type rawClient struct {
	t      testing.TB
	conn   net.PacketConn
	server net.Addr
	user   string
	realm  string
	key    []byte
	nonce  string
	// seen records the error codes that led to a retry with a new nonce.
	seen []stun.ErrorCode
}

func newRawClient(t testing.TB, server net.Addr, user, realm, password string) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, server: server, user: user, realm: realm, key: LongTermKey(user, realm, password)}
}

// errResponse is a STUN error response.
type errResponse struct{ code stun.ErrorCode }

func (e errResponse) Error() string { return "stun error " + strconv.Itoa(int(e.code)) }

// do sends an authenticated request and returns the success response, or
// an errResponse. A 401 or 438 carrying a fresh nonce is retried once, as
// a real client does.
func (c *rawClient) do(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if c.nonce != "" {
			setters = append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), stun.MessageIntegrity(c.key))
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			c.t.Fatal(err)
		}
		res, err := c.roundTrip(req)
		if err != nil {
			return nil, err
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			return res, nil
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(res); err != nil {
			return nil, err
		}
		var nonce stun.Nonce
		if (code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) && nonce.GetFrom(res) == nil && attempt == 0 {
			c.seen = append(c.seen, code.Code)
			c.nonce = nonce.String()
			var realm stun.Realm
			if realm.GetFrom(res) == nil && c.realm == "" {
				c.realm = realm.String()
			}
			continue
		}
		return res, errResponse{code.Code}
	}
}

// roundTrip sends req and waits for its response, retransmitting every
// 500 ms for up to 3 s as a STUN client over UDP would (RFC 8489 §6.2.1).
func (c *rawClient) roundTrip(req *stun.Message) (*stun.Message, error) {
	buf := make([]byte, 2048)
	var err error
	for range 6 {
		if _, err := c.conn.WriteTo(req.Raw, c.server); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for {
			c.conn.SetReadDeadline(deadline)
			var n int
			n, _, err = c.conn.ReadFrom(buf)
			if err != nil {
				break // retransmit
			}
			if !stun.IsMessage(buf[:n]) {
				continue // ChannelData meant for a later read
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
				continue
			}
			return res, nil
		}
	}
	return nil, err
}

func peerAttr(a net.Addr) stun.Setter {
	u := a.(*net.UDPAddr)
	return setterFunc(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: u.IP, Port: u.Port}.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func lifetimeAttr(d time.Duration) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(d/time.Second))
		m.Add(stun.AttrLifetime, v[:])
		return nil
	})
}

func udpTransport() stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
		return nil
	})
}

func lifetimeOf(t *testing.T, m *stun.Message) time.Duration {
	t.Helper()
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		t.Fatalf("response has no LIFETIME: %v", m)
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
}

// allocate makes a UDP allocation and returns the relayed address.
func (c *rawClient) allocate(extra ...stun.Setter) (*net.UDPAddr, *stun.Message, error) {
	c.t.Helper()
	res, err := c.do(stun.MethodAllocate, append([]stun.Setter{udpTransport()}, extra...)...)
	if err != nil {
		return nil, res, err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatalf("allocate response without XOR-RELAYED-ADDRESS: %v", err)
	}
	return &net.UDPAddr{IP: relayed.IP, Port: relayed.Port}, res, nil
}

// allocateBound allocates a relay and binds channel ch to peer, failing
// the test if either is refused; it returns the relayed address.
func (c *rawClient) allocateBound(ch uint16, peer net.Addr) *net.UDPAddr {
	c.t.Helper()
	relayed, _, err := c.allocate()
	if err != nil {
		c.t.Fatalf("allocate: %v", err)
	}
	if err := c.channelBind(ch, peer); err != nil {
		c.t.Fatalf("channel bind: %v", err)
	}
	return relayed
}

func (c *rawClient) channelBind(ch uint16, peer net.Addr) error {
	_, err := c.do(stun.MethodChannelBind, setterFunc(func(m *stun.Message) error {
		m.Add(stun.AttrChannelNumber, []byte{byte(ch >> 8), byte(ch), 0, 0})
		return nil
	}), peerAttr(peer))
	return err
}

func (c *rawClient) sendChannelData(ch uint16, data []byte) {
	c.t.Helper()
	b := make([]byte, 4+len(data))
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(data)))
	copy(b[4:], data)
	if _, err := c.conn.WriteTo(b, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// readChannelData returns the payload of the next ChannelData for ch.
func (c *rawClient) readChannelData(ch uint16, timeout time.Duration) ([]byte, error) {
	buf := make([]byte, 2048)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		if n >= 4 && binary.BigEndian.Uint16(buf[0:2]) == ch {
			l := int(binary.BigEndian.Uint16(buf[2:4]))
			if 4+l <= n {
				return append([]byte(nil), buf[4:4+l]...), nil
			}
		}
	}
}

func codeOf(err error) stun.ErrorCode {
	var e errResponse
	if errors.As(err, &e) {
		return e.code
	}
	return 0
}

// metric returns the value of a counter or gauge with the given labels.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// eventually polls cond until it holds or the deadline passes. It waits on
// a condition, not for a fixed time.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

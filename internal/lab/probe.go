package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
)

// The probe speaks STUN (RFC 8489) Binding with the RFC 5780 NAT behaviour
// discovery extensions: CHANGE-REQUEST asks the responder to answer from its
// other address and/or port, RESPONSE-ORIGIN and OTHER-ADDRESS say where it
// answered from and where its alternate is. attrResponseDelay is the lab's
// own comprehension-optional attribute (a 32-bit millisecond count): the
// responder waits that long before answering, which measures how long an
// idle NAT mapping lives.
const attrResponseDelay stun.AttrType = 0x8f01

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// maxResponseDelay bounds the delay a request may ask for, so a responder
// never holds more than a bounded number of timers for long.
const maxResponseDelay = 60 * time.Second

// probeTimeout is how long a probe waits for an answer that may be
// filtered: answers in the lab come back in well under a millisecond, so
// 1.5 s with retransmissions leaves room for a machine under heavy load
// while keeping negative probes cheap.
const probeTimeout = 1500 * time.Millisecond

// answerTimeout is how long a probe waits for an answer that must come
// (the mapping test): a missing one is an error, not a measurement, so it
// may take longer.
const answerTimeout = 5 * time.Second

// probeRequest is a decoded Binding request as the responder sees it.
type probeRequest struct {
	txID  [stun.TransactionIDSize]byte
	flags uint32
	delay time.Duration
}

// errNotBinding marks a datagram that is not a Binding request.
var errNotBinding = errors.New("not a stun binding request")

// parseProbeRequest decodes a datagram sent to the responder. Malformed
// input returns an error and is ignored by the responder.
func parseProbeRequest(b []byte) (probeRequest, error) {
	var req probeRequest
	if !stun.IsMessage(b) {
		return req, errNotBinding
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return req, err
	}
	if m.Type != stun.BindingRequest {
		return req, errNotBinding
	}
	req.txID = m.TransactionID
	if v, err := m.Get(stun.AttrChangeRequest); err == nil {
		if len(v) != 4 {
			return req, fmt.Errorf("change-request: %d bytes, want 4", len(v))
		}
		req.flags = binary.BigEndian.Uint32(v)
	}
	if v, err := m.Get(attrResponseDelay); err == nil {
		if len(v) != 4 {
			return req, fmt.Errorf("response-delay: %d bytes, want 4", len(v))
		}
		req.delay = time.Duration(binary.BigEndian.Uint32(v)) * time.Millisecond
		if req.delay > maxResponseDelay {
			return req, fmt.Errorf("response-delay %v above %v", req.delay, maxResponseDelay)
		}
	}
	return req, nil
}

// ProbeServer is the RFC 5780 responder: four sockets on two addresses and
// two ports.
type ProbeServer struct {
	primary, alt netip.AddrPort
	conns        map[netip.AddrPort]*net.UDPConn

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewProbeServer listens on primary and alt's address and port combined
// (primary, primary IP with alt port, alt IP with primary port, alt).
func NewProbeServer(primary, alt netip.AddrPort) (*ProbeServer, error) {
	if primary.Addr() == alt.Addr() || primary.Port() == alt.Port() {
		return nil, errors.New("probe server: primary and alternate must differ in address and in port")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &ProbeServer{primary: primary, alt: alt, conns: map[netip.AddrPort]*net.UDPConn{}, ctx: ctx, cancel: cancel}
	for _, ip := range []netip.Addr{primary.Addr(), alt.Addr()} {
		for _, port := range []uint16{primary.Port(), alt.Port()} {
			ap := netip.AddrPortFrom(ip, port)
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("probe server: %w", err)
			}
			s.conns[ap] = c
		}
	}
	for ap, c := range s.conns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(ap, c)
		}()
	}
	return s, nil
}

func (s *ProbeServer) serve(local netip.AddrPort, c *net.UDPConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req, err := parseProbeRequest(buf[:n])
		if err != nil {
			continue
		}
		ip, port := local.Addr(), local.Port()
		if req.flags&changeIP != 0 {
			ip = s.other(ip, s.primary.Addr(), s.alt.Addr())
		}
		if req.flags&changePort != 0 {
			port = s.otherPort(port)
		}
		origin := netip.AddrPortFrom(ip, port)
		resp, err := stun.Build(
			stun.NewTransactionIDSetter(req.txID),
			stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			&stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())},
			&stun.OtherAddress{IP: s.alt.Addr().AsSlice(), Port: int(s.alt.Port())},
			stun.Fingerprint,
		)
		if err != nil {
			continue
		}
		out := s.conns[origin]
		if req.delay == 0 {
			out.WriteToUDPAddrPort(resp.Raw, from) //nolint:errcheck // UDP: a lost answer is a failed probe.
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-time.After(req.delay):
				out.WriteToUDPAddrPort(resp.Raw, from) //nolint:errcheck // as above.
			case <-s.ctx.Done():
			}
		}()
	}
}

func (s *ProbeServer) other(ip, a, b netip.Addr) netip.Addr {
	if ip == a {
		return b
	}
	return a
}

func (s *ProbeServer) otherPort(p uint16) uint16 {
	if p == s.primary.Port() {
		return s.alt.Port()
	}
	return s.primary.Port()
}

// Close stops the responder and waits for its goroutines. Idempotent.
func (s *ProbeServer) Close() error {
	s.once.Do(func() {
		s.cancel()
		for _, c := range s.conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return nil
}

// answer is one Binding response as the client saw it.
type answer struct {
	mapped, origin netip.AddrPort
}

// transact sends a Binding request from c to dst and waits up to timeout
// for the answer, retransmitting (unless once) so a lost packet does not
// read as filtering. ok is false when nothing arrived.
func transact(ctx context.Context, c *net.UDPConn, dst netip.AddrPort, flags uint32, delay, timeout time.Duration, once bool) (a answer, ok bool, err error) {
	req, err := buildProbeRequest(flags, delay)
	if err != nil {
		return a, false, err
	}
	deadline := time.Now().Add(timeout)
	if d, has := ctx.Deadline(); has && d.Before(deadline) {
		deadline = d
	}
	const rto = 300 * time.Millisecond
	buf := make([]byte, 1500)
	// nextSend is when to (re)transmit; zero once no more sends are due.
	nextSend := time.Now()
	for {
		now := time.Now()
		if !now.Before(deadline) {
			return a, false, nil
		}
		if !nextSend.IsZero() && !now.Before(nextSend) {
			if _, err := c.WriteToUDPAddrPort(req.Raw, dst); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return a, false, err
			}
			nextSend = now.Add(rto)
			if once {
				nextSend = time.Time{}
			}
		}
		wait := deadline
		if !nextSend.IsZero() && nextSend.Before(wait) {
			wait = nextSend
		}
		c.SetReadDeadline(wait) //nolint:errcheck // a socket we own.
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNREFUSED) {
				if ctx.Err() != nil {
					return a, false, ctx.Err()
				}
				continue
			}
			return a, false, err
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.TransactionID != req.TransactionID || m.Type != stun.BindingSuccess {
			continue
		}
		var xor stun.XORMappedAddress
		if err := xor.GetFrom(m); err != nil {
			return a, false, fmt.Errorf("answer without xor-mapped-address: %w", err)
		}
		mip, _ := netip.AddrFromSlice(xor.IP)
		// Where the answer really came from, rather than what its
		// RESPONSE-ORIGIN claims: that also works with any STUN server.
		return answer{
			mapped: netip.AddrPortFrom(mip.Unmap(), uint16(xor.Port)),
			origin: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()),
		}, true, nil
	}
}

// buildProbeRequest builds a Binding request with the given CHANGE-REQUEST
// flags and response delay (either may be zero).
func buildProbeRequest(flags uint32, delay time.Duration) (*stun.Message, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	if flags != 0 {
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, flags)
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: v})
	}
	if delay > 0 {
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, uint32(delay/time.Millisecond))
		setters = append(setters, stun.RawAttribute{Type: attrResponseDelay, Value: v})
	}
	setters = append(setters, stun.Fingerprint)
	return stun.Build(setters...)
}

// ProbeReport is what a NAT behaviour discovery measured.
type ProbeReport struct {
	Behavior NATBehavior `json:"behavior"`
	// Local is the probing socket's address in the mapping test.
	Local string `json:"local"`
	// Mapped are the mappings seen by the primary, the alternate address,
	// and (when it ran) the alternate address and port.
	Mapped []string `json:"mapped"`
	// PortPreserved says whether the first mapping kept the local port.
	PortPreserved bool `json:"port_preserved"`
}

func listenProbe() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{})
}

// Discover runs the RFC 5780 §4.3 mapping and §4.4 filtering tests against
// a ProbeServer whose primary and alternate endpoints are given.
func Discover(ctx context.Context, primary, alt netip.AddrPort) (ProbeReport, error) {
	var rep ProbeReport
	c, err := listenProbe()
	if err != nil {
		return rep, err
	}
	defer c.Close()
	rep.Local = c.LocalAddr().String()
	localPort := uint16(c.LocalAddr().(*net.UDPAddr).Port)

	// Mapping: the same socket towards primary, alt IP, then alt IP+port.
	m1, ok, err := transact(ctx, c, primary, 0, 0, answerTimeout, false)
	if err != nil {
		return rep, err
	}
	if !ok {
		return rep, fmt.Errorf("no answer from %s: no UDP path to the probe server", primary)
	}
	rep.PortPreserved = m1.mapped.Port() == localPort
	m2, ok, err := transact(ctx, c, netip.AddrPortFrom(alt.Addr(), primary.Port()), 0, 0, answerTimeout, false)
	if err != nil || !ok {
		return rep, fmt.Errorf("no answer from the alternate address %s: %v", alt.Addr(), err)
	}
	rep.Mapped = []string{m1.mapped.String(), m2.mapped.String()}
	switch {
	case m1.mapped == m2.mapped:
		rep.Behavior.Mapping = EndpointIndependent
	default:
		m3, ok, err := transact(ctx, c, alt, 0, 0, answerTimeout, false)
		if err != nil || !ok {
			return rep, fmt.Errorf("no answer from the alternate endpoint %s: %v", alt, err)
		}
		rep.Mapped = append(rep.Mapped, m3.mapped.String())
		if m3.mapped == m2.mapped {
			rep.Behavior.Mapping = AddressDependent
		} else {
			rep.Behavior.Mapping = AddressAndPortDependent
		}
	}

	// Filtering: a fresh socket per probe, so each starts from a mapping
	// that has only ever sent to the primary endpoint.
	filtered := func(flags uint32) (bool, error) {
		c, err := listenProbe()
		if err != nil {
			return false, err
		}
		defer c.Close()
		a, ok, err := transact(ctx, c, primary, flags, 0, probeTimeout, false)
		if ok && a.origin == primary {
			return false, errors.New("responder ignored CHANGE-REQUEST")
		}
		return !ok, err
	}
	blocked, err := filtered(changeIP | changePort)
	if err != nil {
		return rep, err
	}
	if !blocked {
		rep.Behavior.Filtering = EndpointIndependent
		return rep, nil
	}
	blocked, err = filtered(changePort)
	if err != nil {
		return rep, err
	}
	if !blocked {
		rep.Behavior.Filtering = AddressDependent
	} else {
		rep.Behavior.Filtering = AddressAndPortDependent
	}
	return rep, nil
}

// MappingLives reports whether a mapping that has been idle for idle still
// passes an answer: a fresh socket sends one request (never retransmitted,
// which would refresh the mapping) asking the responder to wait idle.
func MappingLives(ctx context.Context, primary netip.AddrPort, idle time.Duration) (bool, error) {
	c, err := listenProbe()
	if err != nil {
		return false, err
	}
	defer c.Close()
	_, ok, err := transact(ctx, c, primary, 0, idle, idle+probeTimeout, true)
	return ok, err
}

// UDPReaches reports whether a Binding request to dst is answered, and the
// mapped address the answer carried.
func UDPReaches(ctx context.Context, dst netip.AddrPort) (bool, netip.AddrPort, error) {
	c, err := listenProbe()
	if err != nil {
		return false, netip.AddrPort{}, err
	}
	defer c.Close()
	a, ok, err := transact(ctx, c, dst, 0, 0, probeTimeout, false)
	return ok, a.mapped, err
}

// TCPReaches reports whether a TCP handshake with dst gets any answer: a
// connection or a refusal both prove packets pass; silence means a drop.
func TCPReaches(ctx context.Context, dst netip.AddrPort) (bool, error) {
	d := net.Dialer{Timeout: 2 * probeTimeout}
	c, err := d.DialContext(ctx, "tcp4", dst.String())
	if err == nil {
		c.Close()
		return true, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, nil
	}
	return false, err
}

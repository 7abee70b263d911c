package ua

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/stun/v4"
)

// stunKeepalive tracks the STUN keepalives on UDP (RFC 5626 §4.4.2): the
// mapped address the server sees, so that a NAT rebinding is noticed.
type stunKeepalive struct {
	mapped  string
	pending map[[stun.TransactionIDSize]byte]struct{}
	lastOK  time.Time
}

// SetKeepAlive changes the keepalive period from now on; zero restores
// Config.KeepAlive. A phone shortens it during calls so that the hang-up
// can reach it through NATs with short UDP timeouts.
func (u *UA) SetKeepAlive(d time.Duration) {
	u.mu.Lock()
	u.kaPeriod = d
	u.mu.Unlock()
	select {
	case u.kaReset <- struct{}{}:
	default:
	}
}

func (u *UA) keepalivePeriod() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.kaPeriod > 0 {
		return u.kaPeriod
	}
	return u.cfg.KeepAlive
}

// keepaliveLoop sends a keepalive to the server every keepalive period.
func (u *UA) keepaliveLoop() {
	t := time.NewTimer(u.keepalivePeriod())
	defer t.Stop()
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-u.kaReset:
			t.Reset(u.keepalivePeriod())
			continue
		case <-t.C:
			t.Reset(u.keepalivePeriod())
		}
		if err := u.sendKeepalive(); err != nil {
			u.log.Warn("keepalive failed; registering again", "err", err)
			u.flowLost()
		}
	}
}

// flowLost asks the refresh loop to register again at once.
func (u *UA) flowLost() {
	select {
	case u.keepaliveC <- struct{}{}:
	default:
	}
}

func (u *UA) sendKeepalive() error {
	if u.cfg.Transport == "tcp" {
		c, err := u.sua.TransportLayer().GetConnection("tcp", u.dest)
		if err != nil {
			return err
		}
		if c == nil {
			// sipgo drops a connection the server closed: the flow our
			// registration rides on is gone.
			return errors.New("the TCP connection to the server is gone")
		}
		defer c.TryClose() // GetConnection took a reference
		w, ok := c.(io.Writer)
		if !ok {
			return nil
		}
		// RFC 5626 §4.4.1: a double CRLF ping; the server answers a CRLF pong.
		_, err = w.Write([]byte("\r\n\r\n"))
		return err
	}
	raddr, err := net.ResolveUDPAddr("udp", u.dest)
	if err != nil {
		return err
	}
	if u.cfg.KeepAliveCRLF {
		_, err = u.pc.WriteTo([]byte("\r\n\r\n"), raddr)
		return err
	}
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	u.mu.Lock()
	if u.stunState.pending == nil || len(u.stunState.pending) > 8 {
		u.stunState.pending = map[[stun.TransactionIDSize]byte]struct{}{}
	}
	u.stunState.pending[msg.TransactionID] = struct{}{}
	u.mu.Unlock()
	_, err = u.pc.WriteTo(msg.Raw, raddr)
	return err
}

// readFilter sees every datagram before sipgo parses it. STUN responses to
// our keepalives are consumed here (sipgo would log them as bad SIP), and
// a change of the mapped address triggers a re-registration.
func (u *UA) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if !stun.IsMessage(data) {
		return data, nil
	}
	m := &stun.Message{Raw: append([]byte(nil), data...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		return nil, nil
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err != nil {
		return nil, nil
	}
	u.mu.Lock()
	_, ours := u.stunState.pending[m.TransactionID]
	delete(u.stunState.pending, m.TransactionID)
	changed := false
	if ours {
		mapped := xor.String()
		changed = u.stunState.mapped != "" && u.stunState.mapped != mapped
		u.stunState.mapped = mapped
		u.stunState.lastOK = time.Now()
	}
	u.mu.Unlock()
	if changed {
		u.log.Info("public address changed; registering again", "mapped", xor.String())
		u.flowLost()
	}
	return nil, nil
}

// MappedAddr returns our address as the server last saw it through the
// STUN keepalives ("" before the first answer).
func (u *UA) MappedAddr() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.stunState.mapped
}

package sip

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultPingInterval is a good Config.PingInterval: how often UDP
// contacts are sent an OPTIONS request. A NAT keeps a UDP mapping alive only while packets flow, and
// many home routers drop idle ones after 30 to 60 seconds; the phone's
// answer to the ping is an outbound packet that refreshes its mapping, so
// calls can reach it between its own REGISTER refreshes (Kamailio's
// nathelper "sipping" does the same).
const DefaultPingInterval = 25 * time.Second

// pinger sends stateless OPTIONS to every UDP flow with a binding, from
// the listener the flow came in on, until ctx is done. The answers match
// no transaction and are dropped by the transaction layer.
func (s *Server) pinger(ctx context.Context) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	var n uint64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n++
			s.pingOnce(now, n)
		}
	}
}

func (s *Server) pingOnce(now time.Time, round uint64) {
	type dest struct{ local, source string }
	seen := map[dest]struct{}{}
	var targets []dest
	s.loc.mu.RLock()
	for _, bs := range s.loc.aors {
		for _, b := range bs {
			if b.Flow.Transport != "udp" || !b.Expires.After(now) {
				continue
			}
			d := dest{b.Flow.Local, b.Flow.Source}
			if _, ok := seen[d]; !ok {
				seen[d] = struct{}{}
				targets = append(targets, d)
			}
		}
	}
	s.loc.mu.RUnlock()
	for i, d := range targets {
		s.mu.Lock()
		pc := s.udpConns[d.local]
		if pc == nil {
			for _, c := range s.udpConns {
				pc = c
				break
			}
		}
		hp := s.local["udp"]
		s.mu.Unlock()
		to, err := net.ResolveUDPAddr("udp", d.source)
		if pc == nil || err != nil {
			continue
		}
		msg := pingMessage(hp, d.source, round, i)
		pc.WriteTo(msg, to) //nolint:errcheck // a lost ping is retried next round.
		s.metrics.pings.Inc()
	}
}

// pingMessage renders a keepalive OPTIONS. It is built by hand rather than
// through sipgo because it is sent outside any transaction, and its
// answer is meant to be dropped.
func pingMessage(hp hostPort, to string, round uint64, i int) []byte {
	hostport := net.JoinHostPort(hp.host, strconv.Itoa(hp.port))
	id := strconv.FormatUint(round, 36) + "-" + strconv.Itoa(i)
	var b strings.Builder
	b.WriteString("OPTIONS sip:" + to + " SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/UDP " + hostport + ";branch=" + branchPrefix + "ping" + id + ";rport\r\n")
	b.WriteString("From: <sip:ping@" + hostport + ">;tag=pl" + id + "\r\n")
	b.WriteString("To: <sip:" + to + ">\r\n")
	b.WriteString("Call-ID: ping-" + id + "@" + hostport + "\r\n")
	b.WriteString("CSeq: 1 OPTIONS\r\nMax-Forwards: 1\r\nContent-Length: 0\r\n\r\n")
	return []byte(b.String())
}

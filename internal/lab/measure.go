package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// probeServerLifetime bounds the responder like any lab process, but long
// enough for a lab that lives through several calls.
const probeServerLifetime = 30 * time.Minute

// ProbePrimary and ProbeAlternate are the responder's two endpoints on the
// public segment.
func (l *Lab) ProbePrimary() netip.AddrPort { return netip.AddrPortFrom(probeAddrs[0], probePort) }

// ProbeAlternate is the responder's other address and port.
func (l *Lab) ProbeAlternate() netip.AddrPort {
	return netip.AddrPortFrom(probeAddrs[1], probeAltPort)
}

// ensureProbeServer starts the responder in the public namespace once.
func (l *Lab) ensureProbeServer(ctx context.Context) error {
	if len(l.cfg.Probe) == 0 {
		return ErrNoProbe
	}
	l.mu.Lock()
	srv := l.probeSrv
	l.mu.Unlock()
	if srv == nil {
		// The lab owns the responder's lifetime; Close stops it.
		life, cancel := context.WithTimeout(context.Background(), probeServerLifetime)
		argv := append(append([]string{}, l.cfg.Probe...), "serve",
			"-primary", l.ProbePrimary().String(), "-alt", l.ProbeAlternate().String())
		p, err := l.Start(life, l.Public, "natprobe serve", argv...)
		if err != nil {
			cancel()
			return err
		}
		go func() { <-p.Done(); cancel() }()
		l.mu.Lock()
		if l.probeSrv == nil {
			l.probeSrv = p
			srv = p
		} else {
			// Another caller won the race; keep theirs.
			srv = l.probeSrv
			l.mu.Unlock()
			p.Stop()
			l.mu.Lock()
		}
		l.mu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return srv.WaitOutput(wctx, ProbeReady)
}

// probe runs one natprobe subcommand in node and decodes its JSON answer.
func (l *Lab) probe(ctx context.Context, node *Node, v any, args ...string) error {
	if err := l.ensureProbeServer(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, maxResponseDelay+30*time.Second)
	defer cancel()
	out, err := l.Run(ctx, node, append(append([]string{}, l.cfg.Probe...), args...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("natprobe %s in %s: %w: %q", args[0], node.Role, err, out)
	}
	return nil
}

// MeasureNAT runs the RFC 5780 behaviour discovery from node (a LAN host
// or a public host) against the lab's responder.
func (l *Lab) MeasureNAT(ctx context.Context, node *Node) (ProbeReport, error) {
	var rep ProbeReport
	err := l.probe(ctx, node, &rep, "discover",
		"-primary", l.ProbePrimary().String(), "-alt", l.ProbeAlternate().String())
	return rep, err
}

// MappingLives reports whether a UDP mapping made from node survives idle
// seconds without traffic (see the package function of the same name).
func (l *Lab) MappingLives(ctx context.Context, node *Node, idle time.Duration) (bool, error) {
	var r struct{ Alive bool }
	err := l.probe(ctx, node, &r, "lives", "-primary", l.ProbePrimary().String(), "-idle", idle.String())
	return r.Alive, err
}

// Reaches reports whether node gets an answer from dst over "udp" (a STUN
// Binding; dst must be a STUN server) or "tcp" (a handshake or a refusal).
func (l *Lab) Reaches(ctx context.Context, node *Node, network string, dst netip.AddrPort) (bool, error) {
	var r reachResult
	err := l.probe(ctx, node, &r, network, "-dst", dst.String())
	return r.Reaches, err
}

// STUNMapped sends a STUN Binding request from node to dst (any STUN
// server) and returns the mapped address it answers with.
func (l *Lab) STUNMapped(ctx context.Context, node *Node, dst netip.AddrPort) (netip.AddrPort, error) {
	var r reachResult
	if err := l.probe(ctx, node, &r, "udp", "-dst", dst.String()); err != nil {
		return netip.AddrPort{}, err
	}
	if !r.Reaches {
		return netip.AddrPort{}, fmt.Errorf("no STUN answer from %s to %s", dst, node.Role)
	}
	return netip.ParseAddrPort(r.Mapped)
}

// VerifyNAT measures the LAN's router from its first host and returns an
// error wrapping ErrNATMismatch unless it behaves as its configuration
// says: the NAT type's mapping and filtering, port preservation where the
// type keeps ports, the mapping lifetime when UDPTimeout is set, and for a
// TCPOnlyTo firewall that UDP is blocked and only the allowed TCP passes.
func (l *Lab) VerifyNAT(ctx context.Context, lan *LAN) error {
	host := lan.Hosts[0]
	if len(lan.cfg.TCPOnlyTo) > 0 {
		return l.verifyFirewall(ctx, lan)
	}
	rep, err := l.MeasureNAT(ctx, host)
	if err != nil {
		return fmt.Errorf("measure %s NAT of %s: %w", lan.NAT, lan.Router.Role, err)
	}
	if want := lan.NAT.Expected(); rep.Behavior != want {
		return fmt.Errorf("%w: %s router %s measured %s, want %s (mapped %v)",
			ErrNATMismatch, lan.NAT, lan.Router.Role, rep.Behavior, want, rep.Mapped)
	}
	if lan.NAT != Symmetric && !rep.PortPreserved {
		// The cone emulations rely on the inner port being the outer one.
		return fmt.Errorf("%w: %s router %s did not preserve the port (local %s, mapped %v)",
			ErrNATMismatch, lan.NAT, lan.Router.Role, rep.Local, rep.Mapped)
	}
	if t := lan.cfg.UDPTimeout; t > 0 {
		if err := l.verifyLifetime(ctx, lan, t); err != nil {
			return err
		}
	}
	lan.Measured = &rep
	l.log.Info("nat verified", "router", lan.Router.Role, "nat", lan.NAT, "behavior", rep.Behavior.String())
	return nil
}

// verifyLifetime checks that an idle mapping lives through half the
// configured timeout and is gone a little after it.
func (l *Lab) verifyLifetime(ctx context.Context, lan *LAN, t time.Duration) error {
	host := lan.Hosts[0]
	var wg sync.WaitGroup
	var short, long bool
	var errShort, errLong error
	wg.Add(2)
	go func() { defer wg.Done(); short, errShort = l.MappingLives(ctx, host, t/2) }()
	go func() { defer wg.Done(); long, errLong = l.MappingLives(ctx, host, t+2*time.Second) }()
	wg.Wait()
	if err := errors.Join(errShort, errLong); err != nil {
		return err
	}
	if !short {
		return fmt.Errorf("%w: router %s dropped a mapping idle for %v (timeout %v)", ErrNATMismatch, lan.Router.Role, t/2, t)
	}
	if long {
		return fmt.Errorf("%w: router %s kept a mapping idle for %v (timeout %v)", ErrNATMismatch, lan.Router.Role, t+2*time.Second, t)
	}
	return nil
}

// verifyFirewall checks a TCPOnlyTo LAN: UDP to the responder gets no
// answer, TCP to every allowed endpoint passes, TCP elsewhere is dropped.
func (l *Lab) verifyFirewall(ctx context.Context, lan *LAN) error {
	host := lan.Hosts[0]
	udp, err := l.Reaches(ctx, host, "udp", l.ProbePrimary())
	if err != nil {
		return err
	}
	if udp {
		return fmt.Errorf("%w: firewall %s let UDP through", ErrNATMismatch, lan.Router.Role)
	}
	for _, ap := range lan.cfg.TCPOnlyTo {
		ok, err := l.Reaches(ctx, host, "tcp", ap)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: firewall %s blocked TCP to the allowed %s", ErrNATMismatch, lan.Router.Role, ap)
		}
	}
	ok, err := l.Reaches(ctx, host, "tcp", l.ProbePrimary())
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%w: firewall %s let TCP to %s through", ErrNATMismatch, lan.Router.Role, l.ProbePrimary())
	}
	l.log.Info("firewall verified", "router", lan.Router.Role, "tcp_only_to", lan.cfg.TCPOnlyTo)
	return nil
}

// VerifyAll verifies every LAN's router, in parallel, and that public
// hosts really are unNATed.
func (l *Lab) VerifyAll(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(l.LANs)+len(l.PublicHosts))
	for i, lan := range l.LANs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.VerifyNAT(ctx, lan) }()
	}
	for i, h := range l.PublicHosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := l.MeasureNAT(ctx, h)
			switch {
			case err != nil:
				errs[len(l.LANs)+i] = err
			case len(rep.Mapped) == 0 || !rep.PortPreserved || rep.Behavior != FullCone.Expected() ||
				!strings.HasPrefix(rep.Mapped[0], h.Addr.String()+":"):
				errs[len(l.LANs)+i] = fmt.Errorf("%w: public host %s is not reached as is: %+v", ErrNATMismatch, h.Role, rep)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

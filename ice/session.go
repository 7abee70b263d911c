package ice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pice "github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Local is what a session tells the peer about itself: the values for
// a=ice-ufrag, a=ice-pwd, a=ice-lite and one a=candidate per candidate.
type Local struct {
	Ufrag, Pwd string
	// Candidates are a=candidate values ("foundation 1 udp prio addr port
	// typ host ..."), highest priority first.
	Candidates []string
	// Lite is true for an ICE-lite session (a=ice-lite).
	Lite bool
}

// State is the session's connection state (RFC 8445 with the WebRTC
// refinements pion implements).
type State int

// Session states.
const (
	StateNew          State = iota // nothing started
	StateChecking                  // connectivity checks running
	StateConnected                 // a pair is selected and alive
	StateDisconnected              // nothing heard for DisconnectedTimeout; may recover
	StateFailed                    // every pair failed; restart or hang up
	StateClosed                    // Close was called
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateChecking:
		return "checking"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

func stateFromPion(s pice.ConnectionState) State {
	switch s {
	case pice.ConnectionStateChecking:
		return StateChecking
	case pice.ConnectionStateConnected, pice.ConnectionStateCompleted:
		return StateConnected
	case pice.ConnectionStateDisconnected:
		return StateDisconnected
	case pice.ConnectionStateFailed:
		return StateFailed
	case pice.ConnectionStateClosed:
		return StateClosed
	}
	return StateNew
}

// Session is one ICE media stream with a single component (rtcp-mux).
// Methods are safe for concurrent use. Callbacks (OnRouteChange,
// OnStateChange) run on the session's notification goroutines; they must
// not block for long.
type Session struct {
	cfg         Config
	controlling bool
	agent       *pice.Agent
	log         *slog.Logger
	created     time.Time
	// net is Config.Net or the host's network.
	net transport.Net
	// turn are the UDP TURN servers this package allocates relays on.
	turn []*stun.URI
	// ctx ends at Close; relay allocations run under it.
	ctx    context.Context
	cancel context.CancelFunc
	// relayWG counts relay allocation and permission goroutines.
	relayWG sync.WaitGroup

	// inCallback counts user callbacks running, so Close called from one
	// does not wait for the goroutine it runs on.
	inCallback atomic.Int32
	closed     atomic.Bool
	closeOnce  sync.Once
	closedCh   chan struct{}

	mu sync.Mutex // guards the fields below
	// gatherDone is closed when the current gathering generation is
	// complete; Restart replaces it.
	gatherDone    chan struct{}
	gatherStarted bool
	// relayDone is closed when this generation's relay allocations are
	// done; relayGen counts generations (Restart starts a new one).
	relayDone     chan struct{}
	relayGen      uint64
	remoteSet     bool
	connectCalled bool
	conn          *pice.Conn
	state         State
	route         RouteInfo
	routeOK       bool
	routeCbs      []func(RouteInfo)
	stateCbs      []func(State)
	// connectedCh is closed at the first selected pair; failedCh each
	// time the state becomes failed (replaced on Restart).
	connectedCh chan struct{}
	failedCh    chan struct{}
}

// NewSession creates a session. The caller of a call (the SDP offerer) is
// controlling, the callee controlled (RFC 8445 §6.1.1).
// A full agent facing an ICE-lite peer must be controlling; call
// SetRemoteLite in that case.
func NewSession(cfg Config, controlling bool) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.agentOptions()
	if err != nil {
		return nil, err
	}
	nw := cfg.Net
	if nw == nil {
		if nw, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("ice: host network: %w", err)
		}
		opts = append(opts, pice.WithNet(nw))
	}
	var turnURLs []*stun.URI
	if !cfg.BuiltinRelay && !cfg.Lite {
		all, _ := cfg.parseServers()
		for _, u := range all {
			if isUDPTURN(u) {
				turnURLs = append(turnURLs, u)
			}
		}
	}
	agent, err := pice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("ice: create agent: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		cfg:         cfg,
		controlling: controlling,
		agent:       agent,
		log:         log.With("subsystem", "ice"),
		created:     time.Now(),
		net:         nw,
		turn:        turnURLs,
		closedCh:    make(chan struct{}),
		gatherDone:  make(chan struct{}),
		connectedCh: make(chan struct{}),
		failedCh:    make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, set := range []func() error{
		func() error { return agent.OnCandidate(s.onCandidate) },
		func() error { return agent.OnConnectionStateChange(s.onState) },
		func() error { return agent.OnSelectedCandidatePairChange(s.onPair) },
	} {
		if err := set(); err != nil {
			s.cancel()
			_ = agent.Close()
			return nil, err
		}
	}
	return s, nil
}

// Controlling reports the session's ICE role.
func (s *Session) Controlling() bool { return s.controlling }

// onCandidate sees every gathered candidate; nil marks the end of a
// gathering generation. Gather reads the candidates from the agent then,
// so only completion matters here.
func (s *Session) onCandidate(c pice.Candidate) {
	if c != nil {
		s.log.Debug("gathered candidate", "candidate", c.Marshal())
		return
	}
	s.mu.Lock()
	select {
	case <-s.gatherDone:
	default:
		close(s.gatherDone)
	}
	s.mu.Unlock()
}

func (s *Session) onState(ps pice.ConnectionState) {
	st := stateFromPion(ps)
	s.mu.Lock()
	s.state = st
	if st == StateFailed {
		select {
		case <-s.failedCh:
		default:
			close(s.failedCh)
		}
		s.routeOK = false
	}
	cbs := append([]func(State){}, s.stateCbs...)
	s.mu.Unlock()
	s.log.Info("ice state", "state", st.String())
	s.inCallback.Add(1)
	defer s.inCallback.Add(-1)
	for _, f := range cbs {
		f(st)
	}
}

func (s *Session) onPair(local, remote pice.Candidate) {
	ri := routeFromPair(local, remote)
	s.mu.Lock()
	s.route, s.routeOK = ri, true
	select {
	case <-s.connectedCh:
	default:
		close(s.connectedCh)
	}
	cbs := append([]func(RouteInfo){}, s.routeCbs...)
	s.mu.Unlock()
	s.log.Info("ice selected pair", "route", ri.Route, "local", ri.LocalType+" "+ri.LocalAddr,
		"remote", ri.RemoteType+" "+ri.RemoteAddr)
	s.inCallback.Add(1)
	defer s.inCallback.Add(-1)
	for _, f := range cbs {
		f(ri)
	}
}

// Gather collects local candidates and returns them once gathering is
// complete, or when ctx ends or Config.GatherTimeout (plus a second of
// grace) passes, whichever is first; in the last two cases it returns what
// was found by then, and only fails if that is nothing. Calling Gather
// again returns the same candidates.
func (s *Session) Gather(ctx context.Context) (Local, error) {
	if s.closed.Load() {
		return Local{}, ErrClosed
	}
	s.mu.Lock()
	done := s.gatherDone
	start := !s.gatherStarted
	s.gatherStarted = true
	if start {
		s.relayGen++
		s.relayDone = make(chan struct{})
	}
	relays, gen := s.relayDone, s.relayGen
	s.mu.Unlock()
	if start {
		s.startRelays(gen, relays)
		if err := s.agent.GatherCandidates(); err != nil {
			return Local{}, fmt.Errorf("ice: gather: %w", err)
		}
	}
	bound := time.NewTimer(orDefault(s.cfg.GatherTimeout, DefaultGatherTimeout) + time.Second)
	defer bound.Stop()
	for _, ch := range []chan struct{}{done, relays} {
		select {
		case <-ch:
			continue
		case <-bound.C:
			s.log.Warn("gathering not complete before the deadline; offering what was found")
		case <-ctx.Done():
		case <-s.closedCh:
			return Local{}, ErrClosed
		}
		break
	}
	return s.local()
}

// startRelays allocates a relayed candidate on every UDP TURN server, in
// parallel, and closes done when all have finished or failed.
func (s *Session) startRelays(gen uint64, done chan struct{}) {
	s.relayWG.Add(1)
	go func() {
		defer s.relayWG.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(s.ctx, orDefault(s.cfg.GatherTimeout, DefaultGatherTimeout))
		defer cancel()
		var wg sync.WaitGroup
		for _, u := range s.turn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.gatherRelay(ctx, u, gen)
				// coturn can answer a fresh Allocate with 438 Wrong
				// Nonce (seen when a new client socket reuses a port
				// of a session it still remembers), and pion's client
				// does not retry Allocate with the new nonce. A new
				// socket and client start a clean session.
				for try := 0; try < 2 && err != nil && isStaleNonce(err) && ctx.Err() == nil; try++ {
					s.log.Debug("TURN allocation got 438, retrying on a new socket", "server", u.String())
					err = s.gatherRelay(ctx, u, gen)
				}
				if err != nil {
					s.log.Warn("no relayed candidate", "server", u.String(), "err", err)
				}
			}()
		}
		wg.Wait()
	}()
}

// local reads the current credentials and candidates from the agent.
func (s *Session) local() (Local, error) {
	ufrag, pwd, err := s.agent.GetLocalUserCredentials()
	if err != nil {
		return Local{}, fmt.Errorf("ice: %w", err)
	}
	cands, err := s.agent.GetLocalCandidates()
	if err != nil {
		return Local{}, fmt.Errorf("ice: %w", err)
	}
	sortCandidates(cands)
	l := Local{Ufrag: ufrag, Pwd: pwd, Lite: s.cfg.Lite}
	for _, c := range cands {
		l.Candidates = append(l.Candidates, c.Marshal())
	}
	if len(l.Candidates) == 0 {
		if s.cfg.Policy == PolicyRelay {
			return l, fmt.Errorf("%w: relay-only policy and no relayed candidate (is the TURN server reachable and are the credentials right?)", ErrGatherTimeout)
		}
		return l, ErrGatherTimeout
	}
	return l, nil
}

// SetRemote gives the session the peer's credentials and candidates (the
// a=candidate values of its SDP, with or without the "candidate:" prefix).
// Candidates for other components than 1 (rtcp-mux) and non-UDP ones are
// skipped. If candidates were given but none is usable the credentials
// are still set (peer-reflexive discovery may yet work) and the error
// wraps ErrNoCandidates. Call it again after an ICE restart with the
// peer's new values; calling it with the current credentials only adds
// candidates (trickle).
func (s *Session) SetRemote(ufrag, pwd string, candidates []string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if ufrag == "" || pwd == "" {
		return fmt.Errorf("%w: empty ice-ufrag or ice-pwd", ErrNoRemote)
	}
	if err := s.agent.SetRemoteCredentials(ufrag, pwd); err != nil {
		return fmt.Errorf("ice: %w", err)
	}
	s.mu.Lock()
	s.remoteSet = true
	s.mu.Unlock()
	added := 0
	var errs []error
	for _, raw := range candidates {
		c, err := parsePionCandidate(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.Component() != 1 || !c.NetworkType().IsUDP() {
			continue
		}
		if err := s.agent.AddRemoteCandidate(c); err != nil {
			errs = append(errs, fmt.Errorf("ice: add remote candidate: %w", err))
			continue
		}
		added++
	}
	if len(candidates) > 0 && added == 0 {
		return fmt.Errorf("%w: %d offered, none usable: %w", ErrNoCandidates, len(candidates), errors.Join(errs...))
	}
	return nil
}

// AddRemoteCandidate adds one more remote candidate (trickle ICE, or a
// candidate learnt from a re-INVITE). Like SetRemote it ignores
// candidates of other components than 1 and non-UDP ones, and candidates
// it already has.
func (s *Session) AddRemoteCandidate(raw string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	c, err := parsePionCandidate(raw)
	if err != nil {
		return err
	}
	if c.Component() != 1 || !c.NetworkType().IsUDP() {
		return nil
	}
	return s.agent.AddRemoteCandidate(c)
}

// SetRemoteLite tells the session the peer is ICE-lite (a=ice-lite): this
// side must then be controlling and does all the checks.
func (s *Session) SetRemoteLite(lite bool) error {
	return s.agent.SetRemoteICELite(lite)
}

// Connect runs connectivity checks and returns the media connection once
// a candidate pair is selected: pion's Dial when controlling, Accept when
// controlled. The conn carries RTP and RTCP (rtcp-mux); its lifetime is
// the session's, it survives ICE restarts and route changes, and Close on
// the session closes it. Connect fails with ErrFailed when every pair has
// failed, and with ctx's error when ctx ends first.
func (s *Session) Connect(ctx context.Context) (net.Conn, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.mu.Lock()
	if !s.remoteSet {
		s.mu.Unlock()
		return nil, ErrNoRemote
	}
	if s.connectCalled {
		s.mu.Unlock()
		return nil, ErrConnected
	}
	s.connectCalled = true
	connected, failed := s.connectedCh, s.failedCh
	s.mu.Unlock()

	ufrag, pwd, err := s.agent.GetRemoteUserCredentials()
	if err != nil {
		return nil, fmt.Errorf("ice: %w", err)
	}
	var conn *pice.Conn
	if s.controlling {
		conn, err = s.agent.StartDial(ufrag, pwd)
	} else {
		conn, err = s.agent.StartAccept(ufrag, pwd)
	}
	if err != nil {
		return nil, fmt.Errorf("ice: start checks: %w", err)
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	select {
	case <-connected:
		return conn, nil
	case <-failed:
		return nil, ErrFailed
	case <-ctx.Done():
		return nil, fmt.Errorf("ice: connect: %w", ctx.Err())
	case <-s.closedCh:
		return nil, ErrClosed
	}
}

// Conn returns the media connection once Connect has started, else nil.
func (s *Session) Conn() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	return s.conn
}

// State returns the current connection state.
func (s *Session) State() State {
	if s.closed.Load() {
		return StateClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Route describes the selected candidate pair. It fails with
// ErrNotConnected while no pair is selected (before Connect succeeds,
// after a failure, during a restart).
func (s *Session) Route() (RouteInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.routeOK {
		return RouteInfo{}, ErrNotConnected
	}
	return s.route, nil
}

// OnRouteChange registers f to run each time a pair is selected: at
// connect, after a restart, or when the controlling side switches pairs.
func (s *Session) OnRouteChange(f func(RouteInfo)) {
	s.mu.Lock()
	s.routeCbs = append(s.routeCbs, f)
	s.mu.Unlock()
}

// OnStateChange registers f to run on each state change. A phone restarts
// ICE (re-INVITE with new credentials) on StateDisconnected or
// StateFailed to move a call onto the relay when its direct path dies.
func (s *Session) OnStateChange(f func(State)) {
	s.mu.Lock()
	s.stateCbs = append(s.stateCbs, f)
	s.mu.Unlock()
}

// Restart begins an ICE restart (RFC 8445 §9; in SDP, new ice-ufrag and
// ice-pwd, RFC 8839): new local credentials, every candidate and pair
// dropped, candidates gathered again. It returns the new Local for the re-INVITE's SDP; the
// caller then passes the peer's new credentials and candidates to
// SetRemote, and checks resume on the connection Connect returned, which
// stays valid. Roles are kept.
func (s *Session) Restart(ctx context.Context) (Local, error) {
	if s.closed.Load() {
		return Local{}, ErrClosed
	}
	s.mu.Lock()
	s.gatherDone = make(chan struct{})
	s.gatherStarted = false
	s.routeOK = false
	select {
	case <-s.failedCh:
		s.failedCh = make(chan struct{})
	default:
	}
	s.mu.Unlock()
	if err := s.agent.Restart("", ""); err != nil {
		return Local{}, fmt.Errorf("ice: restart: %w", err)
	}
	return s.Gather(ctx)
}

// Stats are counters of the selected pair, for call statistics.
type Stats struct {
	// RTT is the last connectivity-check round trip on the selected pair.
	RTT time.Duration
	// BytesSent and BytesReceived count the conn's payload.
	BytesSent, BytesReceived uint64
}

// Stats returns counters for the selected pair (zero before connect).
func (s *Session) Stats() Stats {
	var st Stats
	if ps, ok := s.agent.GetSelectedCandidatePairStats(); ok {
		st.RTT = time.Duration(ps.CurrentRoundTripTime * float64(time.Second))
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		st.BytesSent, st.BytesReceived = c.BytesSent(), c.BytesReceived()
	}
	return st
}

// Close ends the session: the agent stops, candidate sockets and TURN
// allocations are released and the conn returns errors. It waits for the
// agent's goroutines unless called from one of the session's callbacks.
// Calling it again does nothing.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closedCh)
		s.cancel()
		if s.inCallback.Load() > 0 {
			_ = s.agent.Close()
		} else {
			_ = s.agent.GracefulClose()
		}
		// The agent closed the relayed candidates and their TURN clients,
		// so permission requests in flight fail at once.
		s.relayWG.Wait()
		s.mu.Lock()
		s.state = StateClosed
		s.routeOK = false
		s.mu.Unlock()
	})
	return nil
}

// isStaleNonce tells whether a TURN error is a 438 (Stale or Wrong Nonce)
// answer; pion's client reports error responses only as text.
func isStaleNonce(err error) bool {
	return strings.Contains(err.Error(), "error 438")
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/punchline/punchline/ice"
	"github.com/punchline/punchline/internal/phone"
	"github.com/punchline/punchline/media"
)

// phoneFlags is everything `punchline phone` can be told.
type phoneFlags struct {
	server, user, password, realm, transport string
	stun, turn                               string
	icePolicy                                string
	call                                     string
	answer                                   bool
	play, record                             string
	tone                                     float64
	duration                                 time.Duration
	statsJSON                                string
	bind                                     string
	keepalive                                time.Duration
	logLevel                                 string
	dtmf                                     string
	srtp                                     string
}

func bindPhoneFlags(fs *flag.FlagSet, f *phoneFlags) {
	fs.StringVar(&f.server, "server", "127.0.0.1:5060", "SIP server, host:port")
	fs.StringVar(&f.user, "user", "", "account name")
	fs.StringVar(&f.password, "password", "", "account password (also the TURN password)")
	fs.StringVar(&f.realm, "realm", "", "domain of our address user@REALM (default: the server's host)")
	fs.StringVar(&f.transport, "transport", "udp", "SIP transport: udp or tcp")
	fs.StringVar(&f.stun, "stun", "", "STUN server URI, e.g. stun:host:3478 (default: the server's relay; \"none\" disables)")
	fs.StringVar(&f.turn, "turn", "", "TURN server URI, e.g. turn:host:3478?transport=tcp (default: the server's relay with the SIP credentials; \"none\" disables)")
	fs.StringVar(&f.icePolicy, "ice-policy", "all", "candidates to use: all (direct when possible) or relay (always via TURN)")
	fs.StringVar(&f.call, "call", "", "call this user (name, name@domain or SIP URI)")
	fs.BoolVar(&f.answer, "answer", false, "wait for one call and answer it")
	fs.StringVar(&f.play, "play", "", "WAV file to send (mono; resampled to 8 kHz)")
	fs.Float64Var(&f.tone, "tone", 0, "send a sine tone of this many Hz")
	fs.StringVar(&f.record, "record", "", "WAV file to record what we hear into")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "--call: hang up after this long; --answer: give up waiting and hang up after this long in all")
	fs.StringVar(&f.statsJSON, "stats-json", "", "write call statistics as JSON to FILE at the end (\"-\" for stdout)")
	fs.StringVar(&f.bind, "bind", "", "local IP address to use for SIP and media (default: what routes to the server)")
	fs.StringVar(&f.bind, "local-ip", "", "same as --bind")
	fs.DurationVar(&f.keepalive, "keepalive", 0, "SIP NAT keepalive period when idle (default 25s)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.StringVar(&f.dtmf, "dtmf", "", "--call: send these DTMF digits (RFC 4733) once media flows")
	fs.StringVar(&f.srtp, "srtp", "optional", "media encryption (SDES-SRTP): optional (offer it, fall back to plain RTP), mandatory (refuse plain RTP with 488) or off")
}

// phoneConfig turns the flags into the engine's Config.
func (f *phoneFlags) phoneConfig(log *slog.Logger) (phone.Config, error) {
	cfg := phone.Config{
		Server: f.server, User: f.user, Password: f.password, Realm: f.realm,
		Transport: f.transport, KeepAlive: f.keepalive, Logger: log,
	}
	var err error
	if cfg.ICEPolicy, err = ice.ParsePolicy(f.icePolicy); err != nil {
		return cfg, err
	}
	if cfg.SRTP, err = phone.ParseSRTPMode(f.srtp); err != nil {
		return cfg, err
	}
	serverList := func(v string) []string {
		switch v {
		case "":
			return nil // the server's own relay
		case "none":
			return []string{}
		}
		return splitList(v)
	}
	cfg.STUN, cfg.TURN = serverList(f.stun), serverList(f.turn)
	if f.bind != "" {
		if cfg.LocalIP = net.ParseIP(f.bind); cfg.LocalIP == nil {
			return cfg, fmt.Errorf("--bind %q: not an IP address", f.bind)
		}
	}
	return cfg, nil
}

func runPhone(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("phone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: punchline phone --server HOST:PORT --user NAME --password P (--call TARGET | --answer | --join ROOM) [flags]")
		fs.PrintDefaults()
	}
	var f phoneFlags
	bindPhoneFlags(fs, &f)
	var j joinFlags
	bindJoinFlags(fs, &j) // conference flags, cmd/punchline/join.go
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if j.room != "" {
		if m, err := phone.ParseSRTPMode(f.srtp); err == nil && m == phone.SRTPMandatory {
			// Conference legs do not encrypt yet: refuse rather than
			// carry plain RTP for someone who asked for SRTP only.
			return errors.New("--srtp mandatory: conferences (--join) carry plain RTP; leave --srtp out to join")
		}
		return runJoin(ctx, &f, &j, stdout, stderr)
	}
	if (f.call == "") == !f.answer {
		fmt.Fprintln(stderr, "punchline phone: give exactly one of --call TARGET, --answer or --join ROOM")
		return errUsage
	}
	if f.play != "" && f.tone != 0 {
		fmt.Fprintln(stderr, "punchline phone: give at most one of --play and --tone")
		return errUsage
	}
	if f.duration <= 0 {
		return errors.New("--duration must be positive")
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := f.phoneConfig(log)
	if err != nil {
		return err
	}
	if f.logLevel == "warn" {
		// pion warns about every socket it reads from as it closes; at the
		// default level only its errors are worth a line.
		if cfg.ICE.Logger, err = newLogger(stderr, "error"); err != nil {
			return err
		}
		cfg.ICE.Logger = cfg.ICE.Logger.With("subsystem", "ice")
	}

	// Media: what we send and where what we hear goes.
	var opts phone.MediaOptions
	switch {
	case f.play != "":
		src, err := media.NewWAVSource(f.play, false)
		if err != nil {
			return fmt.Errorf("--play: %w", err)
		}
		opts.Source = src
	case f.tone != 0:
		if f.tone < 20 || f.tone > 3900 {
			return fmt.Errorf("--tone %v: want 20 to 3900 Hz (8 kHz sampling)", f.tone)
		}
		opts.Source = media.NewToneSource(f.tone, 0)
	}
	if f.record != "" {
		rec, err := media.CreateWAVRecorder(f.record)
		if err != nil {
			return fmt.Errorf("--record: %w", err)
		}
		defer rec.Close()
		opts.Sink = rec
	}
	opts.OnDTMF = func(d media.DTMF) {
		if d.Digit != 0 {
			fmt.Fprintf(stderr, "DTMF %c\n", d.Digit)
		}
	}

	// The whole run is bounded: --call by setup time plus --duration,
	// --answer by --duration from the start.
	deadline := f.duration
	if f.call != "" {
		deadline += ringTimeout + 15*time.Second // ringing, registering, hanging up
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	p, err := phone.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.Register(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "registered as %s via %s %s\n", p.AOR(), cfg.TransportOrDefault(), p.SIP().ServerAddr())

	var call *phone.Call
	if f.call != "" {
		fmt.Fprintf(stderr, "calling %s ...\n", f.call)
		// Ringing and connecting get their own bound, apart from the
		// call's --duration.
		setupCtx, setupCancel := context.WithTimeout(ctx, ringTimeout)
		call, err = p.Call(setupCtx, f.call, opts)
		setupCancel()
	} else {
		fmt.Fprintln(stderr, "waiting for a call ...")
		call, err = p.Answer(ctx, opts)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no call within %v", f.duration)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return err
	}
	st := call.Stats()
	fmt.Fprintf(stderr, "connected with %s: %s (%s/%s), media: %s\n", call.Peer(), routeWord(st.Route, st.ICE), st.LocalCandidateType, st.RemoteCandidateType, mediaWord(st.Encryption))

	dtmfDone := make(chan struct{})
	if f.dtmf != "" {
		go func() {
			defer close(dtmfDone)
			select {
			case <-call.FirstRTP():
				if err := call.SendDTMF(ctx, f.dtmf); err != nil {
					log.Warn("DTMF", "err", err)
				}
			case <-call.Done():
			}
		}()
	} else {
		close(dtmfDone)
	}
	// The DTMF sender ends with the call's media; wait for it on the way out.
	defer func() { <-dtmfDone }()

	// Hold the call until our time is up or the peer hangs up.
	callEnd := time.NewTimer(f.duration)
	if f.answer {
		callEnd.Stop() // --answer is bounded by ctx, from the start.
	}
	defer callEnd.Stop()
	live := isTerminal(stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	remoteHangup := false
	lastPath := fmt.Sprintf("%s (%s/%s)", routeWord(st.Route, st.ICE), st.LocalCandidateType, st.RemoteCandidateType)
loop:
	for {
		select {
		case <-call.Done():
			remoteHangup = true
			break loop
		case <-callEnd.C:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
			s := call.Stats()
			// A route change (an ICE restart moved the call) is worth a
			// line of its own, terminal or not.
			if path := fmt.Sprintf("%s (%s/%s)", routeWord(s.Route, s.ICE), s.LocalCandidateType, s.RemoteCandidateType); s.Route != "" && path != lastPath {
				if live {
					fmt.Fprint(stderr, "\r\033[K")
				}
				why := fmt.Sprintf("after %d ICE restart(s)", s.ICERestarts)
				if !s.ICE {
					why = "(latched onto where the peer's RTP comes from)"
				}
				fmt.Fprintf(stderr, "media path now %s %s\n", path, why)
				lastPath = path
			}
			if live {
				lock := "unencrypted"
				if s.Encryption != "" && s.Encryption != "none" {
					lock = "srtp"
				}
				fmt.Fprintf(stderr, "\r\033[K%s %s  %s  %s  loss %.1f%%  jitter %.0f ms  MOS %.2f",
					routeWord(s.Route, s.ICE), call.Peer(), lock, fmtElapsed(s.DurationS), 100*s.LossFraction, s.JitterMs, s.MOS)
			}
		}
	}
	final := call.Stats()
	if live {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if !remoteHangup {
		hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := call.Hangup(hctx); err != nil {
			log.Warn("hang up", "err", err)
		}
		hcancel()
		fmt.Fprintln(stderr, "hung up")
	} else {
		fmt.Fprintf(stderr, "%s hung up\n", call.Peer())
	}
	fmt.Fprintf(stderr, "call: %s, setup %.0f ms, sent %d, received %d packets, loss %.1f%%, jitter %.1f ms, rtt %.1f ms, MOS %.2f\n",
		routeWord(final.Route, final.ICE), final.SetupMs, final.PacketsSent, final.PacketsReceived,
		100*final.LossFraction, final.JitterMs, final.RTTMs, final.MOS)
	fmt.Fprintf(stderr, "media: %s\n", mediaWord(final.Encryption))
	if final.AuthFailures+final.Replays > 0 {
		fmt.Fprintf(stderr, "srtp: dropped %d packets that failed authentication and %d replays\n", final.AuthFailures, final.Replays)
	}
	if f.statsJSON != "" {
		if err := writeStats(f.statsJSON, stdout, final); err != nil {
			return err
		}
	}
	if final.PacketsReceived == 0 {
		return phone.ErrNoMedia
	}
	return nil
}

// ringTimeout bounds an outgoing call from INVITE to connected media, like
// a phone that stops ringing after half a minute.
const ringTimeout = 30 * time.Second

func routeWord(route string, ice bool) string {
	if route == "" {
		route = "no path"
	}
	if !ice {
		return route + " (peer without ICE)"
	}
	return route
}

// mediaWord says how the media is protected: "srtp SUITE" or
// "unencrypted RTP".
func mediaWord(enc string) string {
	if enc == "" || enc == "none" {
		return "unencrypted RTP"
	}
	return enc
}

func fmtElapsed(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// writeStats writes the stats JSON to path, or stdout for "-".
func writeStats(path string, stdout io.Writer, st phone.Stats) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--stats-json: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal), where
// a live status line can be rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

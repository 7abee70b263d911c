package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/punchline/punchline/internal/conference"
	"github.com/punchline/punchline/media"
	"github.com/punchline/punchline/sip"
	"github.com/punchline/punchline/sip/focus"
	"github.com/punchline/punchline/sip/ua"
)

// joinFlags are the conference flags of `punchline phone`.
type joinFlags struct {
	room          string
	maxUploadKbps int
	pin           string
}

// bindJoinFlags adds --join, --max-upload-kbps and --room-pin to the phone
// command's flag set.
func bindJoinFlags(fs *flag.FlagSet, j *joinFlags) {
	fs.StringVar(&j.room, "join", "", "join the conference room NAME (sip:room-NAME@REALM) instead of --call/--answer")
	fs.IntVar(&j.maxUploadKbps, "max-upload-kbps", 0, "--join: upload budget in kbit/s; above it, our audio goes to one forwarding peer (or the server) instead of to everyone")
	fs.StringVar(&j.pin, "room-pin", "", "--join: the room's PIN, if it has one (the first joiner of a room sets it)")
}

// runJoin is `punchline phone ... --join ROOM`: register, join the room,
// talk for --duration (or until interrupted), leave, write the stats.
func runJoin(ctx context.Context, f *phoneFlags, j *joinFlags, stdout, stderr io.Writer) error {
	if f.call != "" || f.answer {
		fmt.Fprintln(stderr, "punchline phone: --join does not go with --call or --answer")
		return errUsage
	}
	if f.play != "" && f.tone != 0 {
		fmt.Fprintln(stderr, "punchline phone: give at most one of --play and --tone")
		return errUsage
	}
	if f.duration <= 0 {
		return errors.New("--duration must be positive")
	}
	if j.maxUploadKbps < 0 {
		return errors.New("--max-upload-kbps must not be negative")
	}
	if f.user == "" {
		return errors.New("--join needs --user and --password")
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(f.server)
	if err != nil {
		return fmt.Errorf("--server %q: %w", f.server, err)
	}
	domain := f.realm
	if domain == "" {
		domain = host
	}
	// The legs' ICE settings are a call's: the same STUN/TURN defaults
	// (the server's own relay with the SIP credentials), policy and
	// address filters.
	pcfg, err := f.phoneConfig(log)
	if err != nil {
		return err
	}
	var serverIP net.IP
	if ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host); err == nil && len(ips) > 0 {
		serverIP = ips[0]
	}
	iceCfg, err := pcfg.ICEConfig(serverIP)
	if err != nil {
		return err
	}

	var src media.Source
	switch {
	case f.play != "":
		s, err := media.NewWAVSource(f.play, true)
		if err != nil {
			return fmt.Errorf("--play: %w", err)
		}
		src = s
	case f.tone != 0:
		if f.tone < 20 || f.tone > 3900 {
			return fmt.Errorf("--tone %v: want 20 to 3900 Hz (8 kHz sampling)", f.tone)
		}
		src = media.NewToneSource(f.tone, 0)
	}
	var sink media.Sink
	if f.record != "" {
		rec, err := media.CreateWAVRecorder(f.record)
		if err != nil {
			return fmt.Errorf("--record: %w", err)
		}
		defer rec.Close()
		sink = rec
	}

	u, err := ua.New(ua.Config{
		Server: f.server, Transport: f.transport, User: f.user, Password: f.password,
		Domain: domain, LocalAddr: f.bind, KeepAlive: f.keepalive,
		// One call per other participant.
		MaxCalls: 64, Logger: log,
	})
	if err != nil {
		return err
	}
	defer u.Close()
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	err = u.Register(rctx)
	rcancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "registered as %s via %s %s\n", u.AOR(), f.transport, u.ServerAddr())

	e, err := conference.Join(ctx, conference.Config{
		UA: u, Server: f.server, Transport: f.transport, User: f.user, Password: f.password,
		Domain: domain, Room: j.room, PIN: j.pin, UploadKbps: j.maxUploadKbps,
		ICE: iceCfg, Source: src, Sink: sink, LocalIP: f.bind, Log: log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "joined room-%s@%s\n", j.room, domain)

	end := time.NewTimer(f.duration)
	defer end.Stop()
	live := isTerminal(stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var lastMembers string
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end.C:
			break loop
		case <-tick.C:
			members := strings.Join(e.Members(), " ")
			if members != lastMembers {
				lastMembers = members
				if live {
					fmt.Fprint(stderr, "\r\033[K")
				}
				fmt.Fprintf(stderr, "room-%s: %s\n", j.room, members)
			}
			if live {
				fmt.Fprintf(stderr, "\r\033[K%s", statusLine(e.Stats()))
			}
		}
	}
	final := e.Stats()
	if live {
		fmt.Fprint(stderr, "\r\033[K")
	}
	e.Close()
	fmt.Fprintf(stderr, "left room-%s after %s\n", j.room, time.Duration(final.DurationMS)*time.Millisecond)
	for _, p := range final.Peers {
		via := p.Route
		if p.Via != "" {
			via += " via " + p.Via
		}
		fmt.Fprintf(stderr, "  %-12s %-20s received %d packets, loss %.1f%%, MOS %.2f\n", p.User, via, p.RTPPacketsReceived, 100*p.LossFraction, p.MOS)
	}
	if f.statsJSON != "" {
		b, err := json.MarshalIndent(final, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if f.statsJSON == "-" {
			if _, err := stdout.Write(b); err != nil {
				return err
			}
		} else if err := os.WriteFile(f.statsJSON, b, 0o644); err != nil {
			return fmt.Errorf("--stats-json: %w", err)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

func statusLine(st conference.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "room-%s %s  up %.0f kbit/s", st.Room, fmtElapsed(float64(st.DurationMS)/1000), st.UploadKbps)
	for _, p := range st.Peers {
		fmt.Fprintf(&b, "  %s:%s %.2f", p.User, p.Route, p.MOS)
	}
	return b.String()
}

// newRoomFocus creates the conference focus for serve, to be set as the SIP
// server's RoomHandler before sip.New. Its media ports (bridge, forwarder)
// listen on the first SIP listener's IP and are advertised as --public-ip
// when set.
func newRoomFocus(env *serveEnv) (*focus.Focus, error) {
	mediaIP, advertise := "127.0.0.1", env.cfg.PublicIP
	for _, s := range env.cfg.SIP {
		l, err := sip.ParseListener(s)
		if err != nil {
			continue
		}
		if host, _, err := net.SplitHostPort(l.Addr); err == nil {
			mediaIP = host
			break
		}
	}
	if ip := net.ParseIP(mediaIP); ip != nil && ip.IsUnspecified() && advertise == "" {
		env.log.Warn("conference media ports listen on all addresses but advertise 127.0.0.1: set --public-ip so bridged phones can reach them")
		advertise = "127.0.0.1"
	}
	cfg := focus.Config{
		Realm:       env.cfg.Realm,
		MediaIP:     mediaIP,
		AdvertiseIP: advertise,
		Metrics:     env.metrics,
		Log:         env.log,
	}
	if env.relay != nil {
		// Relayed legs of room members count to their room
		// (punchline_conference_relay_bytes_total).
		cfg.RelayBytes = env.relay.RelayedBytesByUser
	}
	return focus.New(cfg)
}

// sipWithFocus is the SIP subsystem of serve with its conference focus:
// Close stops the focus (its NOTIFYs use the server's transports) before
// the server.
type sipWithFocus struct {
	*sip.Server
	focus *focus.Focus
}

func (s sipWithFocus) Close() error {
	s.focus.Close()
	return s.Server.Close()
}

// attachRoomFocus gives the focus the started server's client and address
// (for NOTIFY and its Contact) and returns the combined subsystem.
func attachRoomFocus(srv *sip.Server, f *focus.Focus) (subsystem, error) {
	c, err := srv.Client()
	if err != nil {
		return nil, fmt.Errorf("conference focus: %w", err)
	}
	f.SetClient(c)
	for _, b := range srv.Addrs() {
		if host, port, err := net.SplitHostPort(b.Addr.String()); err == nil {
			p, _ := strconv.Atoi(port)
			f.SetContact(host, p)
			break
		}
	}
	return sipWithFocus{Server: srv, focus: f}, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/punchline/punchline/internal/store"
	"github.com/punchline/punchline/relay"
)

// serveEnv is what serve hands to each subsystem it starts.
type serveEnv struct {
	cfg     serveConfig
	store   *store.Store
	log     *slog.Logger
	metrics *prometheus.Registry
	// relay is the TURN relay when serve runs one (set by startRelay, which
	// runs before startSIP); the conference focus polls its per-user byte
	// counts.
	relay *relay.Server
	// listening collects "what address" pairs for the readiness line.
	listening []string
}

func (e *serveEnv) listeningOn(what, addr string) {
	e.listening = append(e.listening, what+" "+addr)
}

// subsystem is a started part of the server; Close stops it and waits.
type subsystem interface{ Close() error }

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadServeConfig(fs, args)
	if err != nil {
		return err
	}
	logger, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Data)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	env := &serveEnv{cfg: cfg, store: st, log: logger, metrics: reg}

	var parts []subsystem
	defer func() {
		// Stop in reverse order of start: the relay and the SIP side flush
		// their state before the store closes.
		for i := len(parts) - 1; i >= 0; i-- {
			if err := parts[i].Close(); err != nil {
				logger.Warn("shutdown", "err", err)
			}
		}
	}()
	if len(cfg.TURN) > 0 {
		r, err := startRelay(ctx, env)
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		parts = append(parts, r)
	}
	if len(cfg.SIP) > 0 {
		s, err := startSIP(ctx, env)
		if err != nil {
			return fmt.Errorf("sip: %w", err)
		}
		parts = append(parts, s)
	}
	if len(cfg.SIP) == 0 && len(cfg.TURN) == 0 {
		return errors.New("nothing to serve: both --sip and --turn are empty")
	}

	var httpSrv *http.Server
	if cfg.HTTP != "" {
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			return fmt.Errorf("http listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go httpSrv.Serve(ln) //nolint:errcheck // Serve returns on Shutdown below.
		env.listeningOn("http", ln.Addr().String())
	}

	if has, err := st.HasUsers(); err == nil && !has && len(cfg.SIP) > 0 {
		logger.Info("no accounts yet; add one with: punchline user add alice --password secret --data " + cfg.Data)
	}
	// The readiness line: tools wait for it before they start sending.
	fmt.Fprintf(stderr, "punchline ready: %s\n", strings.Join(env.listening, ", "))

	<-ctx.Done()
	logger.Info("shutting down")
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		httpSrv.Shutdown(sctx) //nolint:errcheck // best effort at exit.
		cancel()
	}
	return nil
}

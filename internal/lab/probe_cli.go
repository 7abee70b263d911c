package lab

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ProbeReady is the line "natprobe serve" prints once it answers.
const ProbeReady = "natprobe ready"

// ProbeMain is the natprobe tool: the lab runs it inside namespaces to
// measure what their NATs do. args excludes the program name. Subcommands:
//
//	serve    -primary IP:PORT -alt IP:PORT   run the RFC 5780 responder until SIGTERM
//	discover -primary IP:PORT -alt IP:PORT   print the ProbeReport as JSON
//	lives    -primary IP:PORT -idle DUR      print {"alive":bool}: does a mapping idle that long survive
//	udp      -dst IP:PORT                    print {"reaches":bool,"mapped":"IP:PORT"} for a Binding request
//	tcp      -dst IP:PORT                    print {"reaches":bool} for a TCP handshake
//	get      -url URL                        print the body of an HTTP GET (e.g. a server's /metrics)
//
// It returns the process exit status.
func ProbeMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: natprobe serve|discover|lives|udp|tcp [flags]")
		return 2
	}
	fs := flag.NewFlagSet("natprobe "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	primary := fs.String("primary", "", "responder's primary endpoint")
	alt := fs.String("alt", "", "responder's alternate endpoint (other address and port)")
	dst := fs.String("dst", "", "destination endpoint")
	idle := fs.Duration("idle", 0, "idle time of the mapping")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	url := fs.String("url", "", "URL to fetch")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if args[0] != "serve" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	ap := func(name, s string) (netip.AddrPort, error) {
		v, err := netip.ParseAddrPort(s)
		if err != nil {
			return v, fmt.Errorf("-%s %q: want IP:PORT", name, s)
		}
		return v, nil
	}
	var out any
	err := func() error {
		switch args[0] {
		case "serve":
			p, err := ap("primary", *primary)
			if err != nil {
				return err
			}
			a, err := ap("alt", *alt)
			if err != nil {
				return err
			}
			s, err := NewProbeServer(p, a)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintln(stderr, ProbeReady)
			<-ctx.Done()
			return nil
		case "discover":
			p, err := ap("primary", *primary)
			if err != nil {
				return err
			}
			a, err := ap("alt", *alt)
			if err != nil {
				return err
			}
			rep, err := Discover(ctx, p, a)
			out = rep
			return err
		case "lives":
			p, err := ap("primary", *primary)
			if err != nil {
				return err
			}
			alive, err := MappingLives(ctx, p, *idle)
			out = map[string]bool{"alive": alive}
			return err
		case "udp", "tcp":
			d, err := ap("dst", *dst)
			if err != nil {
				return err
			}
			if args[0] == "udp" {
				ok, mapped, err := UDPReaches(ctx, d)
				out = reachResult{Reaches: ok, Mapped: mapped.String()}
				return err
			}
			ok, err := TCPReaches(ctx, d)
			out = reachResult{Reaches: ok}
			return err
		case "get":
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", *url, resp.Status)
			}
			_, err = io.Copy(stdout, resp.Body)
			return err
		default:
			return fmt.Errorf("unknown subcommand %q", args[0])
		}
	}()
	if err != nil {
		fmt.Fprintf(stderr, "natprobe %s: %v\n", args[0], err)
		return 1
	}
	if out != nil {
		json.NewEncoder(stdout).Encode(out) //nolint:errcheck // nothing to do about a closed stdout.
	}
	return 0
}

// reachResult is what "natprobe udp" and "natprobe tcp" print.
type reachResult struct {
	Reaches bool   `json:"reaches"`
	Mapped  string `json:"mapped,omitempty"`
}

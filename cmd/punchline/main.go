// Command punchline is a P2P-first SIP voice and conference system: one
// binary holding the server (registrar, proxy, STUN/TURN relay, conference
// focus) and a softphone.
//
// Subcommands:
//
//	serve             run the server
//	user              manage accounts (add, list, remove)
//	phone             register, call or answer, with ICE media
//	turn-credentials  mint TURN REST ephemeral credentials
//	demo              in-process NAT lab: who reaches whom, direct or relayed
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand. run receives the arguments after the
// subcommand's name and returns an error that main prints as one line.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the registrar, proxy, STUN/TURN relay and conference focus", runServe},
		{"user", "manage accounts: user add|list|remove", runUser},
		{"phone", "softphone: register, then --call TARGET, --answer or --join ROOM", runPhone},
		{"turn-credentials", "print TURN REST credentials for a shared secret", runTURNCredentials},
		{"demo", "run calls across simulated NATs and show the routes they took", runDemo},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: punchline <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'punchline <command> -h' for a command's flags.")
}

// errUsage marks a usage error: the flag package has already explained it.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "punchline %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "punchline: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// parseFlags parses args into fs, turning flag errors into errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	return nil
}

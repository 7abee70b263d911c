package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/punchline/punchline/internal/store"
)

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: punchline user add NAME --password P | user list | user remove NAME  [--data DIR] [--realm REALM]")
		return errUsage
	}
	sub, rest := args[0], args[1:]
	// Allow the name before or after the flags: "user add alice --password x".
	var name string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := defaultServeConfig()
	data := fs.String("data", def.Data, "data directory")
	realm := fs.String("realm", def.Realm, "realm the password hashes are made for (must match serve --realm)")
	password := fs.String("password", "", "the account's password")
	passwordStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	replace := fs.Bool("replace", false, "overwrite an existing account (change its password)")
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}

	switch sub {
	case "add", "remove", "rm", "list", "ls":
	default:
		fmt.Fprintf(stderr, "unknown user subcommand %q: want add, list or remove\n", sub)
		return errUsage
	}
	st, err := store.Open(*data)
	if err != nil {
		return err
	}
	defer st.Close()

	switch sub {
	case "add":
		if name == "" {
			return errors.New("add: give a user name: punchline user add NAME --password P")
		}
		pw := *password
		if *passwordStdin {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read password from stdin: %w", err)
			}
			pw = strings.TrimRight(line, "\r\n")
		}
		if pw == "" {
			return errors.New("add: give a password with --password P or --password-stdin")
		}
		if err := st.AddUser(name, *realm, pw, *replace); err != nil {
			if errors.Is(err, store.ErrUserExists) {
				return fmt.Errorf("add %s: already exists (use --replace to change the password)", name)
			}
			return fmt.Errorf("add %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "added %s@%s\n", name, *realm)
	case "remove", "rm":
		if name == "" {
			return errors.New("remove: give a user name")
		}
		if err := st.RemoveUser(name); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "removed %s\n", name)
	case "list", "ls":
		users, err := st.Users()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tREALM\tCREATED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Realm, u.Created.Format("2006-01-02 15:04"))
		}
		tw.Flush()
	}
	return nil
}

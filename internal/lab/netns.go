package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cmdTimeout bounds every ip/nft invocation: they finish in milliseconds,
// so anything slower is a wedged kernel or tool and should fail the test.
const cmdTimeout = 20 * time.Second

// namePrefix starts every namespace the lab creates.
const namePrefix = "pl"

// nsPattern recognises lab namespaces and captures the owner's pid.
var nsPattern = regexp.MustCompile(`^` + namePrefix + `([0-9]+)-[0-9a-f]{4}-[a-z0-9]+$`)

// Available reports whether a lab can be built here: root, and the ip and
// nft tools on PATH. The error wraps ErrUnavailable and says what is missing.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (network namespaces and nftables)", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found on PATH (install iproute2 and nftables)", ErrUnavailable, tool)
		}
	}
	return nil
}

// run runs one short administrative command and returns its output; the
// error carries the command line and what it printed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runInput(ctx, nil, name, args...)
}

func runInput(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// listNamespaces returns the names of all named network namespaces.
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Sweep deletes lab namespaces whose owning process is gone: what a run
// that was killed or interrupted left behind. Namespaces of labs that are
// alive in other processes are kept. It returns the names it deleted.
func Sweep(ctx context.Context) ([]string, error) {
	names, err := listNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, n := range names {
		m := nsPattern.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := deleteNamespace(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, n)
	}
	return deleted, errors.Join(errs...)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// deleteNamespace kills whatever still runs in the namespace, then deletes
// it. Killing first matters: a namespace with live processes outlives its
// name, and so would its veths and addresses.
func deleteNamespace(ctx context.Context, name string) error {
	if out, err := run(ctx, "ip", "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // it may have exited already.
			}
		}
	}
	_, err := run(ctx, "ip", "netns", "delete", name)
	return err
}

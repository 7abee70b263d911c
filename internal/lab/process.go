package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxLifetime bounds a process started without a deadline on its context:
// nothing in the lab should run longer, and a wedged process must not hold
// a test binary until the go test timeout.
const maxLifetime = 3 * time.Minute

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// Process is a command running inside a lab namespace.
type Process struct {
	// Name labels the process in errors and logs.
	Name string
	// Node is where it runs.
	Node *Node

	cmd    *exec.Cmd
	cancel context.CancelFunc
	out    *watchBuffer // stdout and stderr
	stdout *watchBuffer
	done   chan struct{}
	err    error // set before done is closed
}

// Start runs argv inside node's namespace. The process is killed when ctx
// ends, after maxLifetime if ctx has no deadline, or when the lab closes.
// Its stdout and stderr are collected; see Output and WaitOutput.
func (l *Lab) Start(ctx context.Context, node *Node, name string, argv ...string) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("start: empty command")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	cancelLife := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancelLife = context.WithTimeout(ctx, maxLifetime)
	}
	ctx, cancelRun := context.WithCancel(ctx)
	cancel := func() { cancelRun(); cancelLife() }
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", node.NS}, argv...)...)
	// ip netns exec execs the command itself, so the pid is the command's;
	// a process group lets Stop reach anything it spawned too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	p := &Process{Name: name, Node: node, cmd: cmd, cancel: cancel, out: newWatchBuffer(), stdout: newWatchBuffer(), done: make(chan struct{})}
	cmd.Stdout = io.MultiWriter(p.out, p.stdout)
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s in %s: %w", name, node.Role, err)
	}
	l.procs = append(l.procs, p)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit, or for ctx to end (the process keeps
// running then). It returns the exit error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// Stop asks the process to end with SIGTERM and kills it if it has not
// after stopGrace. It returns once the process is gone. Safe to call more
// than once and after exit.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck // it may have exited already.
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.cancel()
		<-p.done
	}
}

// Output is everything the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Stdout is what the process wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// WaitOutput waits until the output contains substr, the process exits, or
// ctx ends.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	for {
		changed := p.out.changed()
		if strings.Contains(p.out.String(), substr) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if strings.Contains(p.out.String(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before printing %q; output:\n%s", p.Name, p.err, substr, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q: %w; output:\n%s", p.Name, substr, ctx.Err(), p.out.String())
		}
	}
}

// watchBuffer is a concurrency-safe buffer that signals each write.
type watchBuffer struct {
	mu     sync.Mutex // guards buf and notify
	buf    bytes.Buffer
	notify chan struct{}
}

func newWatchBuffer() *watchBuffer { return &watchBuffer{notify: make(chan struct{})} }

func (w *watchBuffer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(b)
	close(w.notify)
	w.notify = make(chan struct{})
	return n, err
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// changed returns a channel closed at the next write.
func (w *watchBuffer) changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.notify
}

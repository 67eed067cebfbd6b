// Package localstack is the local stack: the real services the functions
// need, started and prepared on a developer's machine or a CI runner, with
// no Docker and no AWS account. The tests (through its testenv package),
// `make dev` (cmd/dev), `make invoke` (cmd/invoke) and the benchmarks all
// start the stack with this one package:
//
//   - PostgreSQL: a database with the Kortix fixture and the service's
//     migrations (PrepareDatabase), and Kortix rows written as Kortix writes
//     them (InsertAccount, InsertThread, ...; SeedDemo for `make dev`);
//   - SQS: the fauxqs emulator from node_modules (StartFauxqs), the
//     teardown queue with its dead-letter queue (CreateQueues), and what
//     Lambda's event source mapping does with it (Poller);
//   - Daytona: a stand-in for its sandbox delete (StartDaytona), the only
//     part that is faked;
//   - Lambda: the pinned runtime interface emulator (RIEModule, InstallRIE,
//     StartRIE) running a built function;
//   - the demo identities, secrets and tokens of the dev stack (demo.go).
//
// Nothing here is deployed: the secrets are public by design. Functions
// return errors rather than failing a test, so that the tools can use them;
// testenv adapts them to testing.TB.
package localstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// RepoRoot returns the directory holding go.mod, at or above the working
// directory: where node_modules, .bin, events/ and template.yaml are.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("go.mod not found at or above %s", dir)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until something accepts connections at addr. It gives up
// after within, when ctx ends, or when exited (the process meant to listen
// there; nil for none) is closed.
func WaitTCP(ctx context.Context, addr string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("nothing listens at %s after %s", addr, within), err)
		}
		select {
		case <-exited:
			return fmt.Errorf("the process exited before it listened at %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Process is a child process the stack started. It runs in a process group
// of its own, so that stopping it also stops what it spawned (aws-lambda-rie
// runs the function as its child), and the kernel kills it should this
// process die without stopping it.
type Process struct {
	pid    int
	exited chan struct{}
}

// StartProcess starts cmd as a Process.
func StartProcess(cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{exited: make(chan struct{})}
	started := make(chan error, 1)
	// Pdeathsig fires when the *thread* that started the child exits, not
	// the process: the start happens on a locked thread that lives until
	// the child is gone.
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			close(p.exited)
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// PID is the process's id (and its process group's).
func (p *Process) PID() int { return p.pid }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop ends the process group: SIGTERM, then SIGKILL if it is still there
// after two seconds. It returns once the process is gone.
func (p *Process) Stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
		p.Kill()
	}
}

// Kill ends the process group at once and returns once the process is
// gone.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.exited
}

// Buffer collects a child's output: safe for concurrent writes and reads,
// and, with Max > 0, keeping only the first Max bytes.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Max <= 0 {
		return b.buf.Write(p)
	}
	if room := b.Max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

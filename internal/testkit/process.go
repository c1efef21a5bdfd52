//go:build unix

package testkit

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Process is a child process started by a test in its own process group, so that a kill takes whatever
// it forked too (Chromium's zygote and renderers). It is killed and waited for at cleanup at the latest.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait has returned; err is set then
	err    error
}

// StartProcess starts cmd in its own process group and registers Kill with cleanup: t.Cleanup when nil,
// or a parent test's Cleanup when the process must outlive the (sub)test t that starts it.
func StartProcess(t testing.TB, cleanup func(func()), cmd *exec.Cmd) *Process {
	t.Helper()
	if cleanup == nil {
		cleanup = t.Cleanup
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	cleanup(p.Kill)
	return p
}

// Kill sends SIGKILL to the process group and waits for the process. Once the process has exited it
// does nothing, so it may be called more than once, and from several goroutines.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// Signal sends sig to the process alone (not its group), as a supervisor does.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what Wait returned (nil for exit status 0, an *exec.ExitError otherwise); nil while the
// process runs.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Pid is the process's id, for reading /proc/<pid>.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

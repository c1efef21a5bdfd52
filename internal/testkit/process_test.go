//go:build unix

package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exitedWithin waits for p to exit, failing the test if it does not within a generous deadline.
func exitedWithin(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not exit within 30s")
	}
}

func TestProcessExits(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantCode int // exit status Err reports; 0: Err is nil
	}{
		{name: "status 0", script: "exit 0"},
		{name: "status 3", script: "exit 3", wantCode: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := StartProcess(t, nil, exec.Command("sh", "-c", tt.script))
			exitedWithin(t, p)
			var ee *exec.ExitError
			switch {
			case tt.wantCode == 0 && p.Err() != nil:
				t.Errorf("Err() = %v, want nil", p.Err())
			case tt.wantCode != 0 && (!errors.As(p.Err(), &ee) || ee.ExitCode() != tt.wantCode):
				t.Errorf("Err() = %v, want exit status %d", p.Err(), tt.wantCode)
			}
			p.Kill() // after the exit: nothing to do, and it must not block
		})
	}
}

func TestProcessKill(t *testing.T) {
	p := StartProcess(t, nil, exec.Command("sleep", "600"))
	if p.Err() != nil {
		t.Fatalf("Err() = %v while running, want nil", p.Err())
	}
	select {
	case <-p.Exited():
		t.Fatalf("sleep 600 exited at once: %v", p.Err())
	default:
	}
	var wg sync.WaitGroup
	for range 3 { // concurrent kills: each returns once the process is gone
		wg.Go(p.Kill)
	}
	wg.Wait()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Kill returned before the process exited")
	}
	p.Kill() // and again, after the exit
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err() = %v, want killed by SIGKILL", p.Err())
	}
}

// TestProcessKillGroup: Kill takes the children too, as it must for Chromium's renderers.
func TestProcessKillGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("needs /proc to see the child: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	p := StartProcess(t, nil, exec.Command("sh", "-c", `sleep 600 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"; wait`, pidFile))
	var pid []byte
	Eventually(t, 30*time.Second, func() bool {
		var err error
		pid, err = os.ReadFile(pidFile)
		return err == nil || p.Err() != nil
	}, "the child's pid written")
	if err := p.Err(); err != nil && pid == nil {
		t.Fatalf("sh exited: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil {
		t.Fatalf("pid file %q: %v", pid, err)
	}
	if !running(child) {
		t.Fatalf("child %d is not running before the kill", child)
	}
	p.Kill()
	// The orphaned child is reaped by whoever adopts it; until then it is a zombie, which is dead too.
	Eventually(t, 30*time.Second, func() bool { return !running(child) }, "child %d gone after its group was killed", child)
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may itself contain ") ".
	_, rest, ok := strings.Cut(string(b[strings.LastIndexByte(string(b), ')')+1:]), " ")
	return ok && !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestProcessCleanup: the cleanup passed in, not t's, owns the kill.
func TestProcessCleanup(t *testing.T) {
	var owned []func()
	p := StartProcess(t, func(f func()) { owned = append(owned, f) }, exec.Command("sleep", "600"))
	t.Cleanup(p.Kill) // should an assertion below fail
	if len(owned) != 1 {
		t.Fatalf("%d functions registered with cleanup, want 1 (Kill)", len(owned))
	}
	select {
	case <-p.Exited():
		t.Fatalf("exited before its owner's cleanup: %v", p.Err())
	default:
	}
	owned[0]()
	select {
	case <-p.Exited():
	default:
		t.Fatal("the owner's cleanup did not end the process")
	}
}

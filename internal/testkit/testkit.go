// Package testkit holds what the module's tests share to run real things: a buffer a child process may
// write while the test reads it, a free loopback port, child processes killed with their process group,
// headless Chromium, and the agent binary built from ./cmd/agent.
//
// It is imported only from _test.go files (TestImportedOnlyByTests holds that); nothing the agent ships
// depends on it. A helper that can fail takes the test and fails it rather than returning an error, and
// registers its own cleanup.
package testkit

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines: a child's
// stderr written by os/exec while the test polls it. The zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a loopback port that was free a moment ago. Another process may take it before the
// caller listens on it; the tests accept that small risk to learn the port before starting a server.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// BuildAgent builds ./cmd/agent into a temporary directory and returns the binary's path. It works from
// any package of the module: it builds from the module root.
func BuildAgent(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the agent: %v", err)
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("cannot find the module root (go env GOMOD: %q): %v", gomod, err)
	}
	bin := filepath.Join(t.TempDir(), "agent")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/agent")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agent: %v\n%s", err, out)
	}
	return bin
}

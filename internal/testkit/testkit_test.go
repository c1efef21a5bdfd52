package testkit

import (
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestSyncBuffer(t *testing.T) {
	const writers, writes = 8, 500
	var (
		b  SyncBuffer
		wg sync.WaitGroup
	)
	stop := make(chan struct{})
	reads := make(chan int, 1)
	go func() { // a reader polling while the writers write, as a test polls a child's log
		n := 0
		for {
			select {
			case <-stop:
				reads <- n
				return
			default:
				_ = b.String()
				n++
			}
		}
	}()
	for range writers {
		wg.Go(func() {
			for range writes {
				if n, err := b.Write([]byte("ab")); n != 2 || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if n := <-reads; n == 0 {
		t.Error("the reader never read")
	}
	got := b.String()
	if len(got) != writers*writes*2 || strings.Count(got, "ab") != writers*writes {
		t.Errorf("got %d bytes, %d \"ab\"; want every write whole: %d", len(got), strings.Count(got, "ab"), writers*writes)
	}
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	ln.Close()
}

// TestImportedOnlyByTests holds the package comment's promise: no file the agent ships imports testkit.
func TestImportedOnlyByTests(t *testing.T) {
	root := moduleRoot(t)
	const self = "github.com/health-agent/health-agent/internal/testkit"
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			filepath.Dir(path) == filepath.Join(root, "internal", "testkit") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if imp.Path.Value == strconv.Quote(self) {
				t.Errorf("%s imports %s; only _test.go files may", path, self)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("checked only %d files under %s: wrong root?", checked, root)
	}
}

// moduleRoot is the directory of go.mod, two levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

func TestBuildAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	bin := BuildAgent(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "health-agent ") {
		t.Fatalf("%s version: %v, %q; want \"health-agent <version>\"", bin, err, out)
	}
}

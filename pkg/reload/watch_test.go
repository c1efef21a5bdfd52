package reload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/reload"
)

// Generous: other builds share this machine's two cores.
const waitFor = 20 * time.Second

// kubeletDir lays files out as the kubelet's atomic writer does for a ConfigMap volume:
//
//	..2026_11_29_20_31_12.1/agent.yaml   the data, in a timestamped directory
//	..data -> ..2026_11_29_20_31_12.1    the current version
//	agent.yaml -> ..data/agent.yaml      what the container opens
//
// and updates them the same way: a new timestamped directory, a `..data_tmp` symlink to it renamed over
// `..data` (the one atomic step), then the old directory removed.
type kubeletDir struct {
	dir     string
	version int
	current string
}

func newKubeletDir(t *testing.T, name string, content []byte) *kubeletDir {
	t.Helper()
	k := &kubeletDir{dir: t.TempDir()}
	k.update(t, name, content)
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(k.dir, name)); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeletDir) update(t *testing.T, name string, content []byte) {
	t.Helper()
	k.version++
	ts := time.Now().UTC().Format("..2006_01_02_15_04_05.") + fmt.Sprint(k.version)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, ts, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if k.current != "" {
		if err := os.RemoveAll(filepath.Join(k.dir, k.current)); err != nil {
			t.Fatal(err)
		}
	}
	k.current = ts
}

// recorder is a slog handler that keeps every message, so a test can wait for the watcher to have
// looked at the file instead of sleeping.
type recorder struct {
	mu   sync.Mutex
	msgs []string // "msg seen_by=…"
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "seen_by" {
			line += " seen_by=" + a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, line)
	r.mu.Unlock()
	return nil
}

func (r *recorder) count(line string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == line {
			n++
		}
	}
	return n
}

// String is the log so far, for a failure message.
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%q", r.msgs)
}

func (r *recorder) waitFor(t *testing.T, line string, n int) {
	t.Helper()
	testkit.Eventually(t, waitFor, func() bool { return r.count(line) >= n }, "%d× %q logged; log: %s", n, line, r)
}

// watching runs Watch on path until the test ends and returns its notifications and log.
func watching(t *testing.T, path string, opts reload.Options) (<-chan struct{}, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.Logger = slog.New(rec)
	notes := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reload.Watch(ctx, path, func() { notes <- struct{}{} }, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after its context was cancelled, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
	// Change nothing before the watch is in place: a test of inotify must not pass by the start check.
	testkit.Eventually(t, waitFor, func() bool {
		return rec.count("watching the config file")+rec.count("cannot watch the config directory, polling it instead") > 0
	}, "the watcher started; log: %s", rec)
	return notes, rec
}

func expectNote(t *testing.T, notes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-notes:
	case <-time.After(waitFor):
		t.Fatalf("no notification within %s after %s", waitFor, what)
	}
}

func expectNoNote(t *testing.T, notes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-notes:
		t.Fatalf("notified after %s, which changed no content", what)
	default:
	}
}

func TestWatch(t *testing.T) {
	v1, v2, v3 := []byte("version: 1\n"), []byte("version: 2\n"), []byte("version: 3\n")
	// inotify alone must see each change: the poll is an hour away.
	fast := reload.Options{Debounce: 20 * time.Millisecond, Poll: time.Hour}

	t.Run("kubelet ConfigMap swap", func(t *testing.T) {
		k := newKubeletDir(t, "agent.yaml", v1)
		path := filepath.Join(k.dir, "agent.yaml")
		notes, rec := watching(t, path, fast)
		k.update(t, "agent.yaml", v2)
		expectNote(t, notes, "the first swap")
		k.update(t, "agent.yaml", v3)
		expectNote(t, notes, "the second swap")
		// A resync that swaps in the same data is no change.
		unchanged := rec.count("config file unchanged seen_by=watch")
		k.update(t, "agent.yaml", v3)
		rec.waitFor(t, "config file unchanged seen_by=watch", unchanged+1)
		expectNoNote(t, notes, "a swap to the same content")
		if got := rec.count("config file changed seen_by=watch"); got != 2 {
			t.Errorf("logged %d changes, want 2", got)
		}
	})

	t.Run("in-place write", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, v1)
		notes, rec := watching(t, path, fast)
		writeFile(t, path, v2)
		expectNote(t, notes, "an in-place write")
		if n := rec.count("config file changed seen_by=watch"); n != 1 {
			t.Errorf("inotify saw %d changes, want 1", n)
		}
	})

	t.Run("editor rename-over", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.yaml")
		writeFile(t, path, v1)
		notes, rec := watching(t, path, fast)
		tmp := filepath.Join(dir, ".agent.yaml.swp")
		writeFile(t, tmp, v2)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		expectNote(t, notes, "a rename over the file")
		if n := rec.count("config file changed seen_by=watch"); n != 1 {
			t.Errorf("inotify saw %d changes, want 1", n)
		}
	})

	t.Run("same content rewritten", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, v1)
		notes, rec := watching(t, path, fast)
		writeFile(t, path, v1)
		rec.waitFor(t, "config file unchanged seen_by=watch", 1)
		expectNoNote(t, notes, "rewriting the same bytes")
	})

	t.Run("removed then recreated", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, v1)
		notes, rec := watching(t, path, fast)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		rec.waitFor(t, "config file not readable yet", 1)
		expectNoNote(t, notes, "removing the file")
		writeFile(t, path, v2)
		expectNote(t, notes, "recreating it with new content")
	})

	t.Run("poll sees a symlink target changed in another directory", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "real.yaml")
		writeFile(t, target, v1)
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		notes, rec := watching(t, path, reload.Options{Debounce: 20 * time.Millisecond, Poll: 50 * time.Millisecond})
		writeFile(t, target, v2) // no event in the watched directory
		expectNote(t, notes, "a change only the poll can see")
		if n := rec.count("config file changed seen_by=poll"); n != 1 {
			t.Errorf("the poll saw %d changes, want 1", n)
		}
	})

	t.Run("changed between loading and watching", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, v2)
		sum := sha256.Sum256(v1) // what the agent loaded
		notes, _ := watching(t, path, reload.Options{Poll: time.Hour, InitialSHA256: hex.EncodeToString(sum[:])})
		expectNote(t, notes, "starting on a file that differs from the loaded one")
	})

	t.Run("loaded content unchanged at start", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		writeFile(t, path, v1)
		sum := sha256.Sum256(v1)
		notes, rec := watching(t, path, reload.Options{Poll: time.Hour, InitialSHA256: hex.EncodeToString(sum[:])})
		rec.waitFor(t, "config file unchanged seen_by=start", 1)
		expectNoNote(t, notes, "starting on the loaded file")
	})
}

func TestWatchBursts(t *testing.T) {
	// One save by an editor, or one kubelet sync, is several events: one notification for the lot.
	path := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, path, []byte("a"))
	notes, rec := watching(t, path, reload.Options{Debounce: 300 * time.Millisecond, Poll: time.Hour})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := fmt.Fprintf(f, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	expectNote(t, notes, "a burst of writes")
	rec.waitFor(t, "config file changed seen_by=watch", 1)
	// Rewrite the final content: once that is seen as unchanged, every event of the burst was handled.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
	rec.waitFor(t, "config file unchanged seen_by=watch", 1)
	if n := rec.count("config file changed seen_by=watch"); n > 2 {
		t.Errorf("%d notifications for one burst of 20 writes (debounce 300ms)", n)
	}
}

func TestWatchErrors(t *testing.T) {
	t.Run("no path", func(t *testing.T) {
		err := reload.Watch(context.Background(), "", func() {}, reload.Options{})
		if !errors.Is(err, reload.ErrNoPath) {
			t.Errorf("Watch(\"\") = %v, want ErrNoPath", err)
		}
	})
	t.Run("directory missing: polls, then sees the file appear", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "later")
		path := filepath.Join(dir, "agent.yaml")
		notes, rec := watching(t, path, reload.Options{Poll: 50 * time.Millisecond})
		rec.waitFor(t, "cannot watch the config directory, polling it instead", 1)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, []byte("x"))
		expectNote(t, notes, "the file appearing")
		if n := rec.count("config file changed seen_by=poll"); n != 1 {
			t.Errorf("the poll saw %d changes, want 1", n)
		}
	})
}

// A FIFO (or a device) in the config file's place can neither block the watcher nor be taken for
// content: it is passed over, and the regular file that replaces it is seen.
func TestWatchFIFO(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// watching fails the test if the first read blocks: the watch never starts.
	notes, rec := watching(t, path, reload.Options{Debounce: 20 * time.Millisecond, Poll: 50 * time.Millisecond})
	rec.waitFor(t, "config file not readable yet", 1)
	tmp := filepath.Join(dir, "agent.yaml.tmp")
	writeFile(t, tmp, []byte("version: 1\n"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expectNote(t, notes, "a regular file replacing the FIFO")
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

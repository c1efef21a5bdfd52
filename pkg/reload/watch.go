// Package reload watches the agent's config file and says when its content has changed, including
// through a Kubernetes ConfigMap update: the kubelet writes the new files into a fresh timestamped
// directory and atomically renames a `..data` symlink onto it, so the file itself (a symlink into
// `..data`) never sees a write event. Watching the directory catches that swap, an in-place write and
// an editor's rename-over alike.
package reload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/health-agent/health-agent/pkg/config"
)

// ErrNoPath is returned by Watch when it is given no file to watch.
var ErrNoPath = errors.New("reload: no config file to watch")

// Defaults for Options.
const (
	DefaultDebounce = 200 * time.Millisecond
	DefaultPoll     = 5 * time.Second
)

// Options tune Watch; all are optional.
type Options struct {
	Logger *slog.Logger
	// Debounce is how long the directory must stay quiet after an event before the file is read: one
	// kubelet swap or editor save is a burst of several events, and a reload per event would read a
	// half-written file.
	Debounce time.Duration
	// Poll is how often the file's content is also compared without any event, a safety net for what
	// inotify does not report: the watch could not be set up (the node's inotify limits are spent), the
	// directory itself was replaced, or the file is a symlink into another directory that changed.
	Poll time.Duration
	// InitialSHA256 is the hex sha256 of the content already loaded. A change made between loading and
	// the start of Watch is then still reported. Empty: the content when Watch starts.
	InitialSHA256 string
}

// Watch calls notify each time the content of the file at path differs from the content last seen,
// until ctx is done; then it returns nil, having released everything it started. notify is called from
// Watch's goroutine, one call at a time, and should not block (a non-blocking channel send). A file
// that cannot be read for a moment (mid-swap) is not a change: the next event or poll looks again.
func Watch(ctx context.Context, path string, notify func(), opts Options) error {
	if path == "" {
		return ErrNoPath
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	last, err := hex.DecodeString(opts.InitialSHA256)
	known := err == nil && len(last) == sha256.Size
	if !known {
		last = nil
		if sum, err := fileSum(path); err == nil {
			last = sum
		}
	}

	// The directory the path is named in: the kubelet swaps `..data` there; editors rename there.
	dir := filepath.Dir(path)
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(dir); err != nil {
			_ = w.Close()
		}
	}
	if err != nil {
		log.Warn("cannot watch the config directory, polling it instead", "dir", dir, "every", opts.Poll, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
		log.Debug("watching the config file", "path", path, "dir", dir)
	}

	check := func(why string) {
		sum, err := fileSum(path)
		if err != nil {
			log.Debug("config file not readable yet", "path", path, "err", err)
			return
		}
		if bytes.Equal(sum, last) {
			log.Debug("config file unchanged", "path", path, "seen_by", why)
			return
		}
		last = sum
		log.Info("config file changed", "path", path, "sha256", hex.EncodeToString(sum), "seen_by", why)
		notify()
	}

	if known {
		check("start") // changed since it was loaded
	}
	poll := time.NewTicker(opts.Poll)
	defer poll.Stop()
	debounce := time.NewTimer(opts.Debounce)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in the directory may be the swap: `..data` is renamed, not agent.yaml itself.
			log.Debug("config directory event", "event", ev.String())
			debounce.Reset(opts.Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow drops events: look at the file now rather than miss a change.
			log.Warn("config watch error, checking the file", "err", err)
			debounce.Reset(opts.Debounce)
		case <-debounce.C:
			check("watch")
		case <-poll.C:
			check("poll")
		}
	}
}

// fileSum is the sha256 of path's content, read as a reload reads it (config.ReadFile: symlinks
// followed, regular files only, at most config.MaxConfigBytes), so a FIFO or a device put in the
// config's place can neither block the watcher nor make it read without end.
func fileSum(path string) ([]byte, error) {
	b, err := config.ReadFile(path, config.MaxConfigBytes)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

// exitBound is what the contract promises: SIGTERM ends the agent within shutdownDelay + 5 s.
const exitBound = 5 * time.Second

// blockingLoad is a reload that is stuck, as a read of a config on a hung file system would be, until
// released. It counts its calls.
type blockingLoad struct {
	calls   atomic.Int32
	entered chan struct{} // one value per call
	release chan struct{}
	once    sync.Once
	loaded  *config.Loaded
}

func newBlockingLoad(loaded *config.Loaded) *blockingLoad {
	return &blockingLoad{entered: make(chan struct{}, 16), release: make(chan struct{}), loaded: loaded}
}

func (b *blockingLoad) load() (*config.Loaded, error) {
	b.calls.Add(1)
	b.entered <- struct{}{}
	<-b.release
	if b.loaded == nil {
		return nil, fmt.Errorf("test reload: released")
	}
	return b.loaded, nil
}

func (b *blockingLoad) unblock() { b.once.Do(func() { close(b.release) }) }

// runWith starts an agent on path with edit applied to its options, and a reloads channel; it returns
// the agent, the channel, the cancel func and Run's result channel.
func runWith(t *testing.T, path string, kinds probes.Registry, edit func(*Options)) (*Agent, chan struct{}, context.CancelFunc, chan error) {
	t.Helper()
	loaded, err := LoadConfig(path, kinds, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{ConfigPath: path, Listen: "127.0.0.1:0", LookupEnv: noEnv, Kinds: kinds, Tick: 10 * time.Millisecond}
	if edit != nil {
		edit(&opts)
	}
	a, err := New(loaded, opts)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan struct{}) // unbuffered: a send completes only once the loop has taken it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, reloads) }()
	t.Cleanup(cancel)
	testkit.Eventually(t, 20*time.Second, func() bool { return a.Addr() != "" }, "the agent listens")
	return a, reloads, cancel, done
}

// TestReloadsRunOffTheLoopAndCoalesce: while a reload is stuck, further requests are taken at once
// (the loop is free) and coalesce: ten requests made meanwhile make one more reload, or two when the
// last one reaches the loop just as the stuck reload ends.
func TestReloadsRunOffTheLoopAndCoalesce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, "server: { shutdownDelay: 0s }\nprobes:\n  - { name: config, kind: config }\n")
	var bl *blockingLoad
	_, reloads, cancel, done := runWith(t, path, nil, func(o *Options) {
		loaded, err := LoadConfig(path, nil, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		bl = newBlockingLoad(loaded)
		o.Load = bl.load
	})
	t.Cleanup(bl.unblock)

	reloads <- struct{}{}
	<-bl.entered
	const meanwhile = 10
	for range meanwhile {
		select {
		case reloads <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop did not take a reload request while a reload was stuck")
		}
	}
	bl.unblock()
	<-bl.entered // the coalesced request
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := bl.calls.Load(); n < 2 || n > 3 {
		t.Errorf("%d reloads for 1 + %d requests made while the first was stuck, want 2 (or 3)", n, meanwhile)
	}
}

// TestShutdownWithAStuckReload: a reload that never returns does not delay the shutdown past the
// bound, and the agent says why it exits with work unfinished.
func TestShutdownWithAStuckReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, "server: { shutdownDelay: 200ms }\nprobes:\n  - { name: config, kind: config }\n")
	logs := &testkit.SyncBuffer{}
	var bl *blockingLoad
	_, reloads, cancel, done := runWith(t, path, nil, func(o *Options) {
		bl = newBlockingLoad(nil)
		o.Load = bl.load
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	t.Cleanup(bl.unblock) // after the test: the reload ends, and its goroutine with it

	reloads <- struct{}{}
	<-bl.entered
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return with a reload stuck")
	}
	if took := time.Since(stopped); took > 200*time.Millisecond+exitBound {
		t.Errorf("Run returned %s after the cancel, want within shutdownDelay + %s", took, exitBound)
	}
	if !strings.Contains(logs.String(), "a config reload did not finish") {
		t.Errorf("no warning about the stuck reload:\n%s", logs.String())
	}
}

// stuckProbe ignores its context, as a probe blocked in a system call would. It says when it is in.
type stuckProbe struct {
	entered chan<- struct{}
	release <-chan struct{}
}

func (p stuckProbe) Check(context.Context) (probes.Result, error) {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	<-p.release
	return probes.Result{}, nil
}

// TestShutdownWithAStuckProbe: a probe that ignores its cancellation does not keep the agent from
// stopping within the bound; the warning names the probes.
func TestShutdownWithAStuckProbe(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	t.Cleanup(func() { close(release) })
	kinds := probes.Registry{
		"stuck":  {New: func(probes.Spec) (probes.Probe, error) { return stuckProbe{entered, release}, nil }},
		"config": monitor.Kinds()["config"],
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	write(t, path, "server: { shutdownDelay: 0s }\ndefaults: { interval: 50ms, timeout: 100ms }\nprobes:\n  - { name: hung, kind: stuck }\n  - { name: config, kind: config }\n")
	logs := &testkit.SyncBuffer{}
	_, _, cancel, done := runWith(t, path, kinds, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck probe never ran")
	}

	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return with a probe stuck")
	}
	if took := time.Since(stopped); took > exitBound {
		t.Errorf("Run returned %s after the cancel, want within shutdownDelay (0s) + %s", took, exitBound)
	}
	if !strings.Contains(logs.String(), "probes did not stop") {
		t.Errorf("no warning naming the probes:\n%s", logs.String())
	}
}

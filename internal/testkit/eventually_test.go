package testkit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(30*time.Second, func() bool { return n.Add(1) == 3 }) {
		t.Fatal("Poll gave up on a condition that turned true at the third ask")
	}
	if got := n.Load(); got != 3 {
		t.Errorf("cond asked %d times, want 3: Poll must stop at the first true", got)
	}
	start := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never held")
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("Poll gave up after %s, before its 50ms timeout", took)
	}
}

// fatalRecorder is a testing.TB that records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper()                           {}
func (f *fatalRecorder) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestEventuallyFailsWithItsMessage(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	var log SyncBuffer
	log.Write([]byte("started"))
	Eventually(rec, 20*time.Millisecond, func() bool {
		log.Write([]byte(", asked"))
		return false
	}, "the %s answered; log: %s", "agent", &log)
	// The log as it was at the failure, not when Eventually was called.
	if !strings.HasPrefix(rec.msg, "not within 20ms: the agent answered; log: started, asked, asked") {
		t.Errorf("Fatalf message %q, want the timeout, the formatted msg and the log's last content", rec.msg)
	}
	rec.msg = ""
	Eventually(rec, time.Second, func() bool { return true }, "never shown")
	if rec.msg != "" {
		t.Errorf("a condition that held failed the test: %q", rec.msg)
	}
}

func TestEventuallyStateShowsTheLastState(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	var n atomic.Int32
	EventuallyState(rec, 50*time.Millisecond, func() (bool, string) {
		return false, strconv.Itoa(int(n.Add(1))) + " requests"
	}, "%d requests", 1000)
	asked := n.Load()
	if want := fmt.Sprintf("not within 50ms: 1000 requests; last: %d requests", asked); rec.msg != want || asked < 2 {
		t.Errorf("Fatalf message %q after %d asks, want %q: the description of the last ask", rec.msg, asked, want)
	}

	rec.msg = ""
	n.Store(0)
	EventuallyState(rec, 30*time.Second, func() (bool, string) {
		return n.Add(1) == 3, "never shown"
	}, "never shown")
	if rec.msg != "" || n.Load() != 3 {
		t.Errorf("a condition that held at the third ask: %d asks, failure %q; want 3 and none", n.Load(), rec.msg)
	}
}

func TestReturns(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	want := errors.New("refused")
	if err := Returns(rec, time.Second, func() error { return want }); err != want || rec.msg != "" {
		t.Errorf("Returns = %v, failure %q; want f's error and no failure", err, rec.msg)
	}
	release := make(chan struct{})
	defer close(release) // lets the blocked goroutine end, for goleak
	Returns(rec, 20*time.Millisecond, func() error { <-release; return nil })
	if rec.msg != "still blocked after 20ms" {
		t.Errorf("Fatalf message %q, want the block reported", rec.msg)
	}
}

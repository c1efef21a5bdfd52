package testkit

import (
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

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
	if len(args) > 0 {
		f.msg = args[len(args)-1].(string)
	}
}

func TestEventuallyFailsWithItsMessage(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	Eventually(rec, 20*time.Millisecond, func() bool { return false }, "the %s answered", "agent")
	if rec.msg != "the agent answered" {
		t.Errorf("Fatalf message %q, want the formatted msg", rec.msg)
	}
	rec.msg = ""
	Eventually(rec, time.Second, func() bool { return true }, "never shown")
	if rec.msg != "" {
		t.Errorf("a condition that held failed the test: %q", rec.msg)
	}
}

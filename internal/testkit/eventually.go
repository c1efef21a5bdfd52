package testkit

import (
	"fmt"
	"testing"
	"time"
)

// pollEvery is how often Eventually asks its condition again.
const pollEvery = 10 * time.Millisecond

// Eventually asks cond every few milliseconds until it returns true, and fails the test with msg
// (formatted with args) when it has not within timeout. It is the tests' one way to wait for something
// another goroutine or process does: never a sleep of a guessed length. Call it from the test's own
// goroutine (it calls t.Fatalf). An arg that is a fmt.Stringer, such as a *SyncBuffer holding a child's
// log, is formatted at the failure, so the message shows its last content.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("not within %s: %s", timeout, fmt.Sprintf(msg, args...))
	}
}

// EventuallyState is Eventually for a condition that also describes what it saw (a count, a status,
// the last error): the failure message ends with the last description, so it tells how far the wait
// got. cond returns whether it holds, and the description.
func EventuallyState(t testing.TB, timeout time.Duration, cond func() (bool, string), msg string, args ...any) {
	t.Helper()
	var state string
	if !Poll(timeout, func() bool {
		var ok bool
		ok, state = cond()
		return ok
	}) {
		t.Fatalf("not within %s: %s; last: %s", timeout, fmt.Sprintf(msg, args...), state)
	}
}

// Poll asks cond every few milliseconds until it returns true (Poll returns true) or timeout has passed
// (false). For a goroutine other than the test's, which may not call t.Fatal, or a caller that reports
// the failure its own way.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// Returns runs f and fails the test unless f returns within timeout: for a call that must never block
// (reading a FIFO, a file that is not regular). It returns f's error. f's goroutine is left behind when
// it blocks; the test has failed by then.
func Returns(t testing.TB, timeout time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("still blocked after %s", timeout)
		return nil
	}
}

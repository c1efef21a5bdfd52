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
// goroutine (it calls t.Fatalf).
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("not within %s: %s", timeout, fmt.Sprintf(msg, args...))
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

package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The CLI starts an agent, its server and a signal goroutine: none may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

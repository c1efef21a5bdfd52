package reload_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every watcher, agent and server a test starts must be gone when it ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

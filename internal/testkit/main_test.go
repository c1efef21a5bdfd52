package testkit

import (
	"testing"

	"go.uber.org/goleak"
)

// Process and Chromium start a goroutine per child: each must be gone once its child is killed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

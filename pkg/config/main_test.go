package config

import (
	"testing"

	"go.uber.org/goleak"
)

// Loading starts no goroutine today; this keeps it so (viper can watch files, which this package must
// not start on its own).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

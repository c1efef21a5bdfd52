package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/health-agent/health-agent/pkg/probes"
)

// RunOnce executes one probe through its policies and reports it as `agent probe` prints it.
func TestRunOnce(t *testing.T) {
	w := newWorld("a")
	w.deps["a"].set(errors.New("connection refused"), false)
	out, err := RunOnce(context.Background(), loaded(fake("a", true)), "a", Options{Kinds: w.kinds()})
	if err != nil {
		t.Fatal(err)
	}
	var printed map[string]any
	b, _ := json.Marshal(out)
	if err := json.Unmarshal(b, &printed); err != nil {
		t.Fatal(err)
	}
	if printed["name"] != "a" || printed["status"] != string(probes.Unhealthy) || printed["reason"] != "connection refused" ||
		printed["failed"] != true || printed["durationMs"] == nil {
		t.Errorf("agent probe would print %s", b)
	}
	if _, err := RunOnce(context.Background(), loaded(fake("a", true)), "nope", Options{Kinds: w.kinds()}); !errors.Is(err, ErrNoSuchProbe) {
		t.Errorf("unknown probe: err = %v, want ErrNoSuchProbe", err)
	}
}

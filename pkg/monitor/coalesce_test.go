package monitor

import (
	"testing"
	"time"
)

// TestCoalesce: an execution is never earlier than asked, at most one slot later, lands on the
// monitor's slot grid, and executions due within one slot land on the same instant.
func TestCoalesce(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	cases := []struct {
		name     string
		wait     time.Duration
		interval time.Duration
		phase    float64
		slot     time.Duration
	}{
		{"default interval", 9700 * time.Millisecond, 10 * time.Second, 0, 250 * time.Millisecond},
		{"default interval, shifted", 10300 * time.Millisecond, 10 * time.Second, 0.37, 250 * time.Millisecond},
		{"short interval: a proportional slot", 990 * time.Millisecond, time.Second, 0.5, 25 * time.Millisecond},
		{"long interval: the slot is capped", 5 * time.Minute, 5 * time.Minute, 0.99, 250 * time.Millisecond},
		{"already on the grid", 10*time.Second - 123456789, 10 * time.Second, 0, 250 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := coalesce(now, tc.wait, tc.interval, tc.phase)
			if got < tc.wait || got >= tc.wait+tc.slot {
				t.Fatalf("wait %s became %s; want within [%s, %s)", tc.wait, got, tc.wait, tc.wait+tc.slot)
			}
			due := now.Add(got).Add(-time.Duration(tc.phase * float64(tc.slot)))
			if !due.Truncate(tc.slot).Equal(due) {
				t.Fatalf("due at %s: not on the %s grid shifted by %.2f", now.Add(got).Format(time.RFC3339Nano), tc.slot, tc.phase)
			}
			// Another probe due a little later in the same slot wakes at the same instant.
			if tc.wait != 10*time.Second-123456789 {
				other := coalesce(now, tc.wait+(got-tc.wait)/2, tc.interval, tc.phase)
				if other != got {
					t.Errorf("two executions due in one slot wake at %s and %s", got, other)
				}
			}
		})
	}
	t.Run("tiny interval: no slot", func(t *testing.T) {
		if got := coalesce(now, 30*time.Nanosecond, 30*time.Nanosecond, 0.5); got != 30*time.Nanosecond {
			t.Errorf("got %s; want the wait unchanged", got)
		}
	})
}

package breakers

import (
	"testing"
)

// TestStatsSinceReusesUnchanged: StatsSince hands back the previous entry of a closed breaker that has
// not changed (its history is not copied again), and fresh stats for one that has.
func TestStatsSinceReusesUnchanged(t *testing.T) {
	dep := newDependency(t)
	pol := testPolicy()
	r, br := oneBreaker(t, pol, nil)
	p := Guard(dep.probe(), pol, br, nil, GuardOptions{})
	dep.set(answerOK)
	_, _ = p.Check(t.Context())

	first := r.Stats()
	same := r.StatsSince(first)
	if len(same) != 1 || len(same[0].History) != 1 || &same[0].History[0] != &first[0].History[0] {
		t.Fatalf("unchanged closed breaker: got a new copy (%+v)", same)
	}

	_, _ = p.Check(t.Context())
	after := r.StatsSince(same)
	if len(after) != 1 || len(after[0].History) != 2 || after[0].Version == same[0].Version {
		t.Fatalf("after an execution: history %d entries, version %d (was %d), want 2 and a new version",
			len(after[0].History), after[0].Version, same[0].Version)
	}
	if after[0].Executions != 2 {
		t.Errorf("Executions = %d, want 2", after[0].Executions)
	}
}

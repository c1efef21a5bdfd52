// Package scripts holds the tests of the repository's shell scripts.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo is a stand-in for the go command: each call appends a line to $CALLS and prints the output
// named by the N-th line of $PLAN (N = this call's number), exiting 1 for every plan but "pass".
const fakeGo = `#!/usr/bin/env bash
echo "$*" >>"$CALLS"
n=$(wc -l <"$CALLS")
plan=$(sed -n "${n}p" "$PLAN")
case "$plan" in
pass)
  echo "PASS"; exit 0 ;;
race)
  printf -- '--- FAIL: FuzzExpand (7.04s)\n    context deadline exceeded\nFAIL\n'; exit 1 ;;
crash)
  printf -- '--- FAIL: FuzzExpand (0.10s)\n    --- FAIL: FuzzExpand (0.00s)\n        expand_test.go:9: boom\n    Failing input written to testdata/fuzz/FuzzExpand/abc\n    context deadline exceeded\nFAIL\n'; exit 1 ;;
*)
  printf -- '--- FAIL: FuzzExpand (0.10s)\n    x_test.go:3: context deadline exceeded\nFAIL\n'; exit 1 ;;
esac
`

// TestFuzzScriptRetriesOnlyTheCoordinatorRace runs scripts/fuzz.sh against a fake go command: a bare
// "context deadline exceeded" with no failing input (go.dev/issue/75804) is run again, up to three
// attempts; a finding or any other failure fails at once.
func TestFuzzScriptRetriesOnlyTheCoordinatorRace(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, tc := range []struct {
		name      string
		plan      []string
		wantOK    bool
		wantCalls int
	}{
		{"pass", []string{"pass"}, true, 1},
		{"race then pass", []string{"race", "pass"}, true, 2},
		{"race twice then pass", []string{"race", "race", "pass"}, true, 3},
		{"race every time", []string{"race", "race", "race", "pass"}, false, 3},
		{"finding", []string{"crash", "pass"}, false, 1},
		{"other failure", []string{"other", "pass"}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755); err != nil {
				t.Fatal(err)
			}
			plan := filepath.Join(dir, "plan")
			if err := os.WriteFile(plan, []byte(strings.Join(tc.plan, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			calls := filepath.Join(dir, "calls")
			if err := os.WriteFile(calls, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(bash, "fuzz.sh", "^FuzzExpand$")
			cmd.Env = append(os.Environ(),
				"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"PLAN="+plan, "CALLS="+calls, "FUZZTIME=1s", "FUZZATTEMPTS=")
			out, err := cmd.CombinedOutput()
			if gotOK := err == nil; gotOK != tc.wantOK {
				t.Fatalf("script succeeded = %v, want %v (err %v); output:\n%s", gotOK, tc.wantOK, err, out)
			}
			b, err := os.ReadFile(calls)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != tc.wantCalls {
				t.Fatalf("go ran %d times, want %d; output:\n%s", len(lines), tc.wantCalls, out)
			}
			if !strings.Contains(lines[0], "-fuzz=^FuzzExpand$") {
				t.Errorf("go ran with %q, want the target FuzzExpand", lines[0])
			}
			if !tc.wantOK && !strings.Contains(string(out), "fuzzing failed:") {
				t.Errorf("a failing run does not say so; output:\n%s", out)
			}
		})
	}
}

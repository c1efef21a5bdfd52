#!/usr/bin/env bash
# Runs every fuzz target (func FuzzXxx in a _test.go file) for a short while, one after the other.
#
#   scripts/fuzz.sh                 every target, FUZZTIME each (default 10s)
#   FUZZTIME=2m scripts/fuzz.sh FuzzLoad    only the targets whose name matches the regexp
#
# FUZZMINIMIZETIME (default 10s) bounds the minimization of each new input: go's default, 60s, would
# let one slow input (a probe waiting out its deadline) eat a short run.
#
# A run that fails with a bare "context deadline exceeded" just past FUZZTIME, having written no failing
# input, is not a finding: it is a race in Go's fuzzing coordinator (go.dev/issue/75804, fixed in Go 1.27,
# not in 1.26.x). Such a target is run again, up to FUZZATTEMPTS times (default 3) in all; any other
# failure, or the race every time, fails the script.
#
# The committed seed corpora (testdata/fuzz/<FuzzName>/) also run as plain tests in `go test ./...`.
# When a target fails, go test writes the failing input to testdata/fuzz/<FuzzName>/: fix the bug and
# commit that file, so the input stays a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

fuzztime="${FUZZTIME:-10s}"
minimizetime="${FUZZMINIMIZETIME:-10s}"
attempts="${FUZZATTEMPTS:-3}"
if ! [[ "$attempts" =~ ^[1-9][0-9]*$ ]]; then
  echo "FUZZATTEMPTS must be a positive integer, got \"$attempts\"" >&2
  exit 2
fi
pattern="${1:-.}"

# "dir target" pairs, from the source: a new target is picked up without editing this script.
targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' cmd internal pkg test 2>/dev/null |
  sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u)
if [ -z "$targets" ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT

# coordinator_race FILE: whether a failed run's output is only the go.dev/issue/75804 race: the deadline
# error on a line of its own, and no failing input written.
coordinator_race() {
  ! grep -q 'Failing input written to' "$1" && grep -qE '^[[:space:]]+context deadline exceeded$' "$1"
}

failed=()
ran=0
while read -r dir target; do
  if ! [[ "$target" =~ $pattern ]]; then
    continue
  fi
  ran=$((ran + 1))
  ok=false
  for attempt in $(seq 1 "$attempts"); do
    echo "=== $target ($dir, $fuzztime, attempt $attempt/$attempts)"
    if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimizetime" "./$dir" 2>&1 | tee "$out"; then
      ok=true
      break
    fi
    if ! coordinator_race "$out"; then
      break
    fi
    echo "--- $target: bare \"context deadline exceeded\" and no failing input: Go's fuzzing coordinator race (go.dev/issue/75804), not a finding; running it again"
  done
  if ! $ok; then
    failed+=("$dir $target")
  fi
done <<<"$targets"

if [ "$ran" -eq 0 ]; then
  echo "no fuzz target matches $pattern" >&2
  exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzzed $ran targets for $fuzztime each: no failure"

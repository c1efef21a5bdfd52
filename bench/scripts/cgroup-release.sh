#!/usr/bin/env bash
# What the start-up memory release (pkg/footprint) does to the memory a pod is charged for: the agent
# (built as the image builds it, owned by root, mode 0755) runs on the embedded default config in a
# memory cgroup of its own, as root and as an unprivileged user, with the release on and off
# (HEALTH_AGENT_KEEP_STARTUP_PAGES=true). Before each run the page cache is dropped, so the binary's
# pages are charged to that cgroup when the agent faults them in, as in a fresh pod.
#
#   sudo bench/scripts/cgroup-release.sh        # about 1 minute; needs root, cgroup v1 or v2 memory
#
# Printed per run, once the agent has been idle for SETTLE seconds (default 15): the process's RSS
# (anon + file), the cgroup's usage, its active and inactive file pages, and the working set as the
# kubelet computes it (usage - inactive_file), which is what memory limits and eviction act on.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
settle="${SETTLE:-15}"
user="${RUN_AS:-65534}" # a uid: the image runs as 65532, nobody is 65534 here

if [ "$(id -u)" -ne 0 ]; then
  echo "needs root (cgroups, drop_caches, running as $user)" >&2
  exit 2
fi

work=$(mktemp -d)
cg=""
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$cg" ] && [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"

go build -trimpath -ldflags='-s -w' -tags nomsgpack -o "$work/health-agent" ./cmd/agent
chmod 0755 "$work/health-agent"

# cgroup v2 (one hierarchy with a memory controller) or v1 (a memory hierarchy).
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  v=2; base=/sys/fs/cgroup
elif [ -d /sys/fs/cgroup/memory ]; then
  v=1; base=/sys/fs/cgroup/memory
else
  echo "no cgroup memory controller found" >&2
  exit 2
fi

stat() { # key from memory.stat
  awk -v k="$1" '$1 == k { print $2 }' "$cg/memory.stat"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

printf '%-34s %10s %10s %10s %10s %10s %12s\n' run "rss anon" "rss file" usage active_f inactive_f "working set"
for who in root "$user"; do
  for keep in false true; do
    cg="$base/health-agent-bench-$$"
    mkdir "$cg"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    log="$work/agent-$who-$keep.log"
    as=()
    if [ "$who" != root ]; then as=(setpriv --reuid="$who" --regid="$who" --clear-groups); fi
    # The shell joins the cgroup, then becomes the agent: every page it faults is charged there.
    sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$cg" \
      env HEALTH_AGENT_KEEP_STARTUP_PAGES="$keep" "${as[@]}" "$work/health-agent" --listen 127.0.0.1:0 \
      >"$log" 2>&1 &
    pid=$!
    sleep "$settle"
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the agent exited; its log:" >&2
      cat "$log" >&2
      exit 1
    fi
    anon=$(awk '/^RssAnon:/ { print $2 * 1024 }' "/proc/$pid/status")
    file=$(awk '/^RssFile:/ { print $2 * 1024 }' "/proc/$pid/status")
    if [ "$v" = 2 ]; then
      usage=$(cat "$cg/memory.current"); act=$(stat active_file); inact=$(stat inactive_file)
    else
      usage=$(cat "$cg/memory.usage_in_bytes"); act=$(stat total_active_file); inact=$(stat total_inactive_file)
    fi
    released=$(grep -c 'start-up memory released' "$log" || true)
    name="$who, release $([ "$keep" = true ] && echo off || echo on) ($released logged)"
    printf '%-34s %10s %10s %10s %10s %10s %12s\n' "$name" "$(mib "$anon")" "$(mib "$file")" "$(mib "$usage")" \
      "$(mib "$act")" "$(mib "$inact")" "$(mib $((usage - inact)))"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rmdir "$cg"
    cg=""
  done
done
echo "(MiB; cgroup v$v; kernel $(uname -r))"

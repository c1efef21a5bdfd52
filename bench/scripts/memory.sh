#!/usr/bin/env bash
# The memory a pod is charged for, next to what the process maps: the agent (built as the image builds
# it) runs in a memory cgroup of its own, on the embedded default config and on a config of 1,000 tcp
# probes, as root and as an unprivileged user. The page cache is dropped before each run, so the
# binary's pages are charged to that cgroup when the agent faults them in, as in a fresh pod.
#
#   sudo bench/scripts/memory.sh        # about 2 minutes; needs root and a cgroup memory controller
#
# Printed per run, after SETTLE seconds (default 30): the process's private memory (RssAnon) and its
# mapped file pages (RssFile), the cgroup's usage and inactive file pages, and the working set as the
# kubelet computes it (usage - inactive_file), which is what memory limits and eviction act on.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
settle="${SETTLE:-30}"
user="${RUN_AS:-65534}" # a uid: the image runs as 65532, nobody is 65534 here

if [ "$(id -u)" -ne 0 ]; then
  echo "needs root (cgroups, drop_caches, running as $user)" >&2
  exit 2
fi

work=$(mktemp -d)
cg=""
pid=""
target=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$target" ]; then kill "$target" 2>/dev/null || true; wait "$target" 2>/dev/null || true; fi
  if [ -n "$cg" ] && [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"

CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -tags nomsgpack -o "$work/health-agent" ./cmd/agent
chmod 0755 "$work/health-agent"

# A loopback listener for the 1,000 tcp probes to connect to.
python3 -c 'import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1], flush=True)
while True:
    c,_=s.accept(); c.close()' >"$work/port" &
target=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
{
  echo "probes:"
  for i in $(seq -w 1 1000); do
    printf '  - {name: dep-%s, kind: tcp, address: "127.0.0.1:%s"}\n' "$i" "$port"
  done
} >"$work/probes-1000.yaml"
chmod 0644 "$work/probes-1000.yaml"

if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  v=2; base=/sys/fs/cgroup
elif [ -d /sys/fs/cgroup/memory ]; then
  v=1; base=/sys/fs/cgroup/memory
else
  echo "no cgroup memory controller found" >&2
  exit 2
fi
stat() { awk -v k="$1" '$1 == k { print $2 }' "$cg/memory.stat"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

printf '%-26s %10s %10s %10s %12s %12s\n' run "RssAnon" "RssFile" usage inactive_f "working set"
for cfg in default 1000; do
  for who in root "$user"; do
    cg="$base/health-agent-memory-$$"
    mkdir "$cg"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    args=(--listen 127.0.0.1:0)
    if [ "$cfg" = 1000 ]; then args+=(--config "$work/probes-1000.yaml"); fi
    as=()
    if [ "$who" != root ]; then as=(setpriv --reuid="$who" --regid="$who" --clear-groups); fi
    # The shell joins the cgroup, then becomes the agent: every page it faults is charged there.
    sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' sh "$cg" \
      env GOMEMLIMIT=64MiB "${as[@]}" "$work/health-agent" "${args[@]}" >"$work/agent.log" 2>&1 &
    pid=$!
    sleep "$settle"
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the agent exited; its log:" >&2
      cat "$work/agent.log" >&2
      exit 1
    fi
    anon=$(awk '/^RssAnon:/ { print $2 * 1024 }' "/proc/$pid/status")
    file=$(awk '/^RssFile:/ { print $2 * 1024 }' "/proc/$pid/status")
    if [ "$v" = 2 ]; then
      usage=$(cat "$cg/memory.current"); inact=$(stat inactive_file)
    else
      usage=$(cat "$cg/memory.usage_in_bytes"); inact=$(stat total_inactive_file)
    fi
    printf '%-26s %10s %10s %10s %12s %12s\n' "$cfg config, $who" "$(mib "$anon")" "$(mib "$file")" \
      "$(mib "$usage")" "$(mib "$inact")" "$(mib $((usage - inact)))"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rmdir "$cg"
    cg=""
  done
done
echo "(MiB; GOMEMLIMIT=64MiB as the manifests set it; cgroup v$v; kernel $(uname -r))"

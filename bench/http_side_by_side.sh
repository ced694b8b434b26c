#!/usr/bin/env bash
# Two commits' cairnd side by side over HTTP, in one run on one machine, with Redis Streams beside them:
# what a change to the server or the append path does to the rates clients see.
#
# Usage: bash bench/http_side_by_side.sh OLD_COMMIT [NEW_COMMIT]    (NEW defaults to HEAD)
# Builds cairnd of each commit in a throwaway worktree under build/side-by-side/ (RelWithDebInfo;
# CMAKE_CXX_COMPILER_LAUNCHER from the environment is honoured), and the load generator of NEW only, so both
# servers get the same client (cairn-http-bench: every connection on one event-loop thread, like
# redis-benchmark). Then, alternating old, new (CAIRN_SBS_ROUNDS rounds, default 3): a fresh cairnd with
# durability fsync, each workload for CAIRN_SBS_SECONDS (default 8), and the server's CPU time per request
# (utime + stime from /proc over the run). Redis Streams (appendfsync always) runs once per round.
# Prints the machine and the date, then one Markdown row per run.
set -euo pipefail
OLD=${1:?usage: bash bench/http_side_by_side.sh OLD_COMMIT [NEW_COMMIT]}
NEW=${2:-HEAD}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CAIRN_SBS_DIR:-$REPO/build/side-by-side}
ROUNDS=${CAIRN_SBS_ROUNDS:-3}
SECONDS_PER_RUN=${CAIRN_SBS_SECONDS:-8}
mkdir -p "$WORK"
log() { printf '[http-side-by-side %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

build() {  # build COMMIT TARGETS... -> prints "sha tree"
  local commit=$1 sha tree
  shift
  sha=$(git -C "$REPO" rev-parse --short=9 "$commit")
  tree="$WORK/src-$sha"
  [ -d "$tree" ] || git -C "$REPO" worktree add -q --detach "$tree" "$sha"
  log "building $* of $sha"
  cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_BUILD_TESTS=OFF \
    ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} >/dev/null
  cmake --build "$tree/build" -j "$(nproc)" --target "$@" >&2
  echo "$sha $tree"
}
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  log "installing redis-server (the Redis Streams yardstick)"
  sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null ||
    { sudo_if_needed apt-get update -qq && sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
fi
read -r OLD_SHA OLD_TREE < <(build "$OLD" cairnd)
read -r NEW_SHA NEW_TREE < <(build "$NEW" cairnd cairn-http-bench)
HB="$NEW_TREE/build/bench/cairn-http-bench"

TMP=$(mktemp -d /tmp/cairn-http-sbs.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
jget() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" <<<"$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

WORKLOADS=(
  "--connections 64 --batch 1"
  "--connections 1 --batch 1"
  "--connections 16 --batch 100"
  "--connections 1000 --batch 1"
)

echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "Old: $OLD_SHA ($(git -C "$REPO" log -1 --format=%s "$OLD_SHA" | cut -c1-70)); new: $NEW_SHA ($(git -C "$REPO" log -1 --format=%s "$NEW_SHA" | cut -c1-70))"
echo
echo "| workload (HTTP append, fsync) | server | events/s | p50 ms | p99 ms | server CPU µs/request | failed |"
echo "|---|---|---:|---:|---:|---:|---:|"
HZ=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    if [ $side = old ]; then tree=$OLD_TREE sha=$OLD_SHA; else tree=$NEW_TREE sha=$NEW_SHA; fi
    rm -rf "$TMP/data"
    KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    CAIRN_BOOTSTRAP_ADMIN_KEY=$KEY "$tree/build/src/server/cairnd" --data "$TMP/data" --http 127.0.0.1:0 > "$TMP/cairnd.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do grep -aq "listening on" "$TMP/cairnd.log" && break; sleep 0.1; done
    PORT=$(grep -ao 'http://127.0.0.1:[0-9]*' "$TMP/cairnd.log" | head -1 | cut -d: -f3)
    [ -n "$PORT" ] || { cat "$TMP/cairnd.log" >&2; exit 1; }
    for w in "${WORKLOADS[@]}"; do
      before=$(cpu_ticks "$PID")
      # shellcheck disable=SC2086  # the workload's flags are meant to split
      line=$("$HB" append --port "$PORT" --key "$KEY" $w --seconds "$SECONDS_PER_RUN" | tail -1)
      after=$(cpu_ticks "$PID")
      req=$(jget "$line" requests)
      cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="${req:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "—" }')
      p50=$(awk -v u="$(jget "$line" p50_us)" 'BEGIN { printf "%.2f", u / 1000 }')
      p99=$(awk -v u="$(jget "$line" p99_us)" 'BEGIN { printf "%.2f", u / 1000 }')
      echo "| $w (round $round) | cairnd $sha | $(jget "$line" events_per_s) | $p50 | $p99 | $cpu | $(jget "$line" failed) |"
    done
    RSS=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
    echo "| peak memory (round $round) | cairnd $sha | $((RSS / 1024)) MiB | | | | |"
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  done
  if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then  # installed above
    RPORT=$(( (RANDOM % 20000) + 30000 ))
    rm -rf "$TMP/redis" && mkdir -p "$TMP/redis"
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes --appendfsync always --save "" \
      --daemonize no > "$TMP/redis.log" 2>&1 &
    PID=$!
    for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    PAYLOAD=$(head -c 256 /dev/zero | tr '\0' 'x')
    for spec in "64 1 100000" "1 1 20000" "16 100 400000" "1000 1 100000"; do
      read -r c p n <<<"$spec"
      pipe=""; [ "$p" -gt 1 ] && pipe="-P $p"
      # shellcheck disable=SC2086
      out=$(redis-benchmark -p "$RPORT" -q -n "$n" -c "$c" $pipe XADD "s$c" '*' data "$PAYLOAD" 2>/dev/null | tr '\r' '\n' | grep -a 'requests per second' | tail -1)
      rps=$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$out")
      p50=$(sed -nE 's/.*p50=([0-9.]+) msec.*/\1/p' <<<"$out")
      echo "| --connections $c --batch $p (round $round) | Redis Streams XADD${pipe:+ pipelined $p} | ${rps%.*} | ${p50:-—} | — | — | |"
    done
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  fi
done

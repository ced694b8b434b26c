#!/usr/bin/env bash
# Two commits' append and read paths side by side, in one run on one machine: what a change to the append or read path
# costs the events that do not use it.
#
# Usage: bash bench/side_by_side.sh [OLD_COMMIT] [NEW_COMMIT]    (defaults: de4b33f and HEAD)
# Builds cairn-bench of each commit in its own throwaway worktree (RelWithDebInfo; CMAKE_CXX_COMPILER_LAUNCHER
# from the environment, e.g. ccache, is honoured), then runs the same workloads alternating old, new, old, new
# (CAIRN_SBS_ROUNDS rounds, default 3) so that drift of the machine falls on both, and prints one Markdown row
# per run: workload, durability, commit, events/s, CPU µs per event, with the machine and the date above;
# then the read workloads (read-all: scan_all of $all; read-stream: pages of one stream) the same way, each
# row the median of its --repeat passes.
# Environment: CAIRN_SBS_SECONDS (seconds per run, default 8), CAIRN_SBS_DIR (build and data dirs; default
# build/side-by-side). Only flags both commits' cairn-bench know are used (de4b33f has no --backend), so the
# runs are on the embedded store; the PostgreSQL baseline of the same machine comes from `make bench`.
set -euo pipefail

OLD=${1:-de4b33f}
NEW=${2:-HEAD}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CAIRN_SBS_DIR:-$REPO/build/side-by-side}
ROUNDS=${CAIRN_SBS_ROUNDS:-3}
SECONDS_PER_RUN=${CAIRN_SBS_SECONDS:-8}
mkdir -p "$WORK"

log() { printf '[side-by-side %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

build() {  # build COMMIT -> prints the path of its cairn-bench
  local commit=$1 sha tree
  sha=$(git -C "$REPO" rev-parse --short=9 "$commit")
  tree="$WORK/src-$sha"
  if [ ! -d "$tree" ]; then
    git -C "$REPO" worktree add -q --detach "$tree" "$sha"
  fi
  if [ ! -x "$tree/build/bench/cairn-bench" ]; then
    log "building cairn-bench of $sha"
    cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_BUILD_TESTS=OFF \
      ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} >/dev/null
    cmake --build "$tree/build" -j "$(nproc)" --target cairn-bench >&2
  fi
  echo "$sha $tree/build/bench/cairn-bench"
}

read -r OLD_SHA OLD_BENCH < <(build "$OLD")
read -r NEW_SHA NEW_BENCH < <(build "$NEW")

jget() { sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" <<<"$1"; }

WORKLOADS=(
  "--writers 16 --batch 100 --durability none"
  "--writers 64 --batch 100 --durability fsync"
  "--writers 64 --batch 1 --durability fsync"
)

echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "Old: $OLD_SHA ($(git -C "$REPO" log -1 --format=%s "$OLD_SHA" | cut -c1-70)); new: $NEW_SHA"
echo
echo "| workload (append, embedded) | durability | commit | events/s | CPU µs/event |"
echo "|---|---|---|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
  for w in "${WORKLOADS[@]}"; do
    for side in old new; do
      if [ $side = old ]; then bench=$OLD_BENCH sha=$OLD_SHA; else bench=$NEW_BENCH sha=$NEW_SHA; fi
      data="$WORK/data-$side"
      rm -rf "$data" && mkdir -p "$data"
      # shellcheck disable=SC2086  # the workload's flags are meant to split
      line=$("$bench" append $w --seconds "$SECONDS_PER_RUN" --dir "$data" 2>/dev/null | tail -1)
      rm -rf "$data"
      durability=${w##*--durability }
      echo "| ${w% --durability*} (round $round) | $durability | $sha | $(jget "$line" events_per_s) | $(jget "$line" cpu_us_per_event) |"
    done
  done
done

READ_WORKLOADS=(
  "read-all --events 2000000 --repeat 5"
  "read-stream --events 300000 --repeat 5"
)
echo
echo "| workload (read, embedded, page cache) | commit | events/s (median) |"
echo "|---|---|---:|"
for round in $(seq 1 "$ROUNDS"); do
  for w in "${READ_WORKLOADS[@]}"; do
    for side in old new; do
      if [ $side = old ]; then bench=$OLD_BENCH sha=$OLD_SHA; else bench=$NEW_BENCH sha=$NEW_SHA; fi
      data="$WORK/data-$side"
      rm -rf "$data" && mkdir -p "$data"
      # shellcheck disable=SC2086  # the workload's flags are meant to split
      line=$("$bench" $w --dir "$data" 2>/dev/null | grep '"stat":"median"' | tail -1)
      rm -rf "$data"
      echo "| $w (round $round) | $sha | $(jget "$line" events_per_s) |"
    done
  done
done

#!/usr/bin/env bash
# HTTP workloads of `make bench`: cairnd (durability fsync) loaded from a second process (cairn-http-bench)
# over loopback, with the Redis Streams yardstick (shared/bench/redis-baseline) measured in the same run and
# the PostgreSQL figures of the same `make bench` run (bench/run.sh, which runs first) beside them.
# Usage: bash bench/run_http.sh BUILD_DIR. Writes bench/out/http-results-<date>.jsonl and prints a table.
set -euo pipefail
BUILD_DIR=${1:?usage: bash bench/run_http.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$REPO/$BUILD_DIR" ;; esac
SECONDS_PER_RUN=${CAIRN_HTTP_BENCH_SECONDS:-10}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT="$HERE/out/http-results-$STAMP.jsonl"
mkdir -p "$HERE/out"
log() { printf '[http-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  log "installing redis-server (the Redis Streams yardstick)"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null ||
    { sudo_if_needed apt-get update -qq && sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
fi
cmake --build "$BUILD_DIR" -j2 --target cairnd cairn-http-bench >/dev/null

TMP=$(mktemp -d /tmp/cairn-http-bench.XXXXXX)
CAIRND_PID=""; REDIS_PID=""
cleanup() {
  [ -n "$CAIRND_PID" ] && kill -TERM "$CAIRND_PID" 2>/dev/null && wait "$CAIRND_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CAIRN_BOOTSTRAP_ADMIN_KEY=$KEY "$BUILD_DIR/src/server/cairnd" --data "$TMP/data" --http 127.0.0.1:0 > "$TMP/cairnd.log" 2>&1 &
CAIRND_PID=$!
for _ in $(seq 100); do grep -aq "listening on" "$TMP/cairnd.log" && break; sleep 0.1; done
PORT=$(grep -ao 'http://127.0.0.1:[0-9]*' "$TMP/cairnd.log" | head -1 | cut -d: -f3)
[ -n "$PORT" ] || { cat "$TMP/cairnd.log" >&2; exit 1; }
HB="$BUILD_DIR/bench/cairn-http-bench"
log "cairnd on port $PORT (fsync)"
"$HB" append --port "$PORT" --key "$KEY" --connections 64 --batch 1 --seconds "$SECONDS_PER_RUN" | tee -a "$OUT"
"$HB" append --port "$PORT" --key "$KEY" --connections 16 --batch 100 --seconds "$SECONDS_PER_RUN" | tee -a "$OUT"
"$HB" append --port "$PORT" --key "$KEY" --connections 1 --batch 1 --seconds "$SECONDS_PER_RUN" | tee -a "$OUT"
"$HB" sse --port "$PORT" --key "$KEY" --subscribers 100 --rate 1000 --seconds 5 | tee -a "$OUT"
kill -TERM "$CAIRND_PID"; wait "$CAIRND_PID" || true; CAIRND_PID=""

# Redis Streams, durable on every write (shared/bench/redis-baseline/README.md).
RPORT=$(( (RANDOM % 20000) + 30000 ))
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP" --appendonly yes --appendfsync always --save "" \
  --daemonize no > "$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
PAYLOAD=$(head -c 256 /dev/zero | tr '\0' 'x')
redis_run() {  # redis_run NAME ARGS...
  local name=$1; shift
  local line
  line=$(redis-benchmark -p "$RPORT" -q "$@" 2>/dev/null | tr '\r' '\n' | grep -a 'requests per second' | tail -1)
  local rps p50
  rps=$(echo "$line" | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
  p50=$(echo "$line" | sed -nE 's/.*p50=([0-9.]+) msec.*/\1/p')
  echo "{\"system\":\"redis\",\"workload\":\"$name\",\"events_per_s\":${rps:-0},\"p50_us\":$(awk -v m="${p50:-0}" 'BEGIN{print m*1000}'),\"durability\":\"appendfsync always\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" | tee -a "$OUT"
}
redis_run xadd-c64 -n 100000 -c 64 XADD s '*' data "$PAYLOAD"
redis_run xadd-c1 -n 20000 -c 1 XADD s1 '*' data "$PAYLOAD"
redis_run xadd-c16-pipelined100 -n 400000 -c 16 -P 100 XADD s2 '*' data "$PAYLOAD"

# The table, with the PostgreSQL figures of this make bench run (the newest results-*.jsonl).
PG=$(ls -t "$HERE"/out/results-*.jsonl 2>/dev/null | head -1 || true)
python3 - "$OUT" "${PG:-}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pg = [json.loads(l) for l in open(sys.argv[2])] if len(sys.argv) > 2 and sys.argv[2] else []
def find(pred, src): return next((r for r in src if pred(r)), None)
def rate(r): return f"{r['events_per_s']:,.0f}/s" if r else "—"
def lat(r): return f"{r['p50_us']/1000:.2f} / {r['p99_us']/1000:.2f} ms" if r and 'p99_us' in r else (f"{r['p50_us']/1000:.2f} ms p50" if r else "—")
c64 = find(lambda r: r.get('workload') == 'http-append' and r['connections'] == 64, rows)
c1 = find(lambda r: r.get('workload') == 'http-append' and r['connections'] == 1, rows)
b100 = find(lambda r: r.get('workload') == 'http-append' and r['batch'] == 100, rows)
sse = find(lambda r: r.get('workload') == 'sse-fanout', rows)
r64 = find(lambda r: r.get('workload') == 'xadd-c64', rows)
r1 = find(lambda r: r.get('workload') == 'xadd-c1', rows)
rp = find(lambda r: r.get('workload') == 'xadd-c16-pipelined100', rows)
p64 = find(lambda r: r.get('system') == 'postgresql' and r.get('workload') == 'append' and r.get('writers') == 64, pg)
pb = find(lambda r: r.get('system') == 'postgresql' and r.get('workload') == 'append' and r.get('batch') == 100, pg)
print("| HTTP workload (cairnd, fsync) | Cairn | p50 / p99 | Redis Streams (appendfsync always) | PostgreSQL 15 (same make bench run) | Goal |")
print("|---|---|---|---|---|---|")
ok = lambda c: "met" if c else "missed"
if c64: print(f"| single-event appends, 64 connections | {rate(c64)} | {lat(c64)} | {rate(r64)} ({lat(r64)}) | {rate(p64)} (64 clients) | ≥ 20,000/s: {ok(c64['events_per_s'] >= 20000)}; p99 ≤ 5 ms: {ok(c64['p99_us'] <= 5000)} |")
if c1: print(f"| single-event appends, 1 connection | {rate(c1)} | {lat(c1)} | {rate(r1)} ({lat(r1)}) | — | |")
if b100: print(f"| 100-event batches, 16 connections | {rate(b100)} events | {lat(b100)} | {rate(rp)} (pipelined 100) | {rate(pb)} (batch 100, 4 clients) | ≥ 300,000 events/s: {ok(b100['events_per_s'] >= 300000)} |")
if sse: print(f"| SSE fan-out: 100 subscribers, appends at up to 1,000/s | {sse['delivered']:,} of {sse['expected_deliveries']:,} deliveries ({sse['deliveries_per_s']:,.0f}/s) | {lat(sse)} append→receipt | — | — | no loss |")
PY
log "done: $OUT"

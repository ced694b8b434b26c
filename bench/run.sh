#!/usr/bin/env bash
# The standard benchmark run behind `make bench`: Cairn's workloads and the PostgreSQL 15 baseline, in one run
# on one machine. Usage: bash bench/run.sh BUILD_DIR
#
# Writes every result as a JSON line to bench/out/results-<date>.jsonl and a Markdown table comparing Cairn with
# PostgreSQL to bench/out/results-<date>.md (also printed). Installs what it needs on Debian 12 (PostgreSQL 15).
# Environment overrides: CAIRN_BENCH_OPEN_EVENTS (events for the open workload; default: 10,000,000 when the
# machine can build that within a few minutes, else 2,000,000), CAIRN_BENCH_TMP (where the temp dirs go; /tmp),
# CAIRN_BENCH_PG_SECONDS (pgbench -T; 15), CAIRN_BENCH_LEDGER_DECISIONS (the AI ledger's history; 1,000,000), CAIRN_BENCH_SKIP_PG=1 (Cairn only), CAIRN_BENCH_SKIP_CAIRN=1
# (PostgreSQL only, for checking the baseline setup), CAIRN_BENCH_WAIT_QUIET=SECONDS (first wait up to that long
# for the machine to be idle: 1-minute load below 0.5 and no other process above 20% CPU).
set -euo pipefail

BUILD_DIR=${1:?usage: bash bench/run.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=$(cd "$(dirname "$0")/../../shared" 2>/dev/null && pwd) || {
  echo "run.sh: the shared folder $(dirname "$0")/../../shared (pg-baseline) is missing" >&2
  exit 1
}
PG_BASE="$SHARED/bench/pg-baseline"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$REPO/$BUILD_DIR" ;; esac
BENCH="$BUILD_DIR/bench/cairn-bench"
PBENCH="$BUILD_DIR/bench/cairn-projection-bench"
LBENCH="$BUILD_DIR/bench/cairn-ledger-bench"
CAIRN_CLI="$BUILD_DIR/src/cli/cairn"
LEDGER_DECISIONS=${CAIRN_BENCH_LEDGER_DECISIONS:-1000000}
PROJ_EVENTS=${CAIRN_BENCH_PROJ_EVENTS:-10000000}
PROJ_STREAMS=100000
TMP_BASE=${CAIRN_BENCH_TMP:-/tmp}
PG_SECONDS=${CAIRN_BENCH_PG_SECONDS:-15}
PGBIN=/usr/lib/postgresql/15/bin
OPEN_NOTE=""
PG_PAYLOAD=""
BATCH_NOTE=""
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT_DIR="$HERE/out"
OUT="$OUT_DIR/results-$STAMP.jsonl"
TABLE="$OUT_DIR/results-$STAMP.md"
mkdir -p "$OUT_DIR"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ------------------------------------------------------------------------------------------ prerequisites
apt_install() {
  log "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq --no-install-recommends "$@"
}

pg_missing=""
for p in postgresql-15 postgresql-client-15 postgresql-contrib; do
  dpkg -s "$p" >/dev/null 2>&1 || pg_missing="$pg_missing $p"
done
for b in initdb pg_ctl postgres pgbench psql; do
  [ -x "$PGBIN/$b" ] || { pg_missing="$pg_missing postgresql-15 postgresql-client-15"; break; }
done
if [ -z "${CAIRN_BENCH_SKIP_PG:-}" ] && [ -n "$pg_missing" ]; then
  # shellcheck disable=SC2086
  apt_install $(echo $pg_missing | tr ' ' '\n' | sort -u)
fi

if [ ! -x "$BENCH" ] || [ ! -x "$PBENCH" ] || [ ! -x "$CAIRN_CLI" ]; then
  command -v cmake >/dev/null && command -v ninja >/dev/null || make -C "$REPO" deps
  [ -f "$BUILD_DIR/build.ninja" ] || cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD_DIR" -j2 --target cairn-bench cairn-projection-bench cairn-ledger-bench cairn_cli
fi

# ------------------------------------------------------------------------------------------ cleanup
RUN_TMP=$(mktemp -d "$TMP_BASE/cairn-bench-run.XXXXXX")
PG_DIR=""
PG_STARTED=""
SAMPLER=""
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  local rc=$?
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
  if [ -n "$PG_STARTED" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
  rm -rf "$RUN_TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------ helpers
# jget KEY LINE: the value of a top-level key in one of our flat JSON lines (strings unquoted).
jget() {
  printf '%s\n' "$2" | awk -v k="\"$1\":" '{
    i = index($0, k); if (i == 0) { print ""; exit }
    s = substr($0, i + length(k))
    if (substr(s, 1, 1) == "\"") { s = substr(s, 2); j = index(s, "\""); print substr(s, 1, j - 1) }
    else { match(s, /^[^,}]*/); print substr(s, 1, RLENGTH) }
  }'
}

machine_json() {
  local host cpu mem
  host=$(hostname)
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo | sed 's/"/\\"/g')
  mem=$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
  printf '{"hostname":"%s","nproc":%s,"cpu_model":"%s","mem_gib":%s}' "$host" "$(nproc)" "${cpu:-unknown}" "$mem"
}
MACHINE=$(machine_json)

emit() {  # a JSON line from this script (PostgreSQL and run metadata)
  printf '%s\n' "$1" >>"$OUT"
  printf '%s\n' "$1"
}

cairn() {  # cairn-bench with the run's temp dir; results tagged system=cairn
  log "cairn-bench $*"
  local line
  "$BENCH" "$@" --dir "$RUN_TMP" | while IFS= read -r line; do
    line="{\"system\":\"cairn\",${line#\{}"
    printf '%s\n' "$line" >>"$OUT"
    printf '%s\n' "$line" | cut -c1-220
  done
  [ "${PIPESTATUS[0]}" = 0 ] || { log "cairn-bench $1 failed"; exit 1; }
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
busy_procs() {  # other CPU-heavy processes right now (compilers, tests), for the record
  ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {printf "%s%s(%s%%)", (n++ ? " " : ""), $2, $1}' | sed 's/"//g'
}
meta() {  # meta WHEN: the machine state as a JSON line
  local df_tmp
  df_tmp=$(df -h "$TMP_BASE" | awk 'NR == 2 {printf "%s %s size, %s used, %s avail", $1, $2, $3, $4}')
  emit "{\"system\":\"host\",\"workload\":\"machine-state\",\"when\":\"$1\",\"git\":\"$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)\",\"src_changes_uncommitted\":$(git -C "$REPO" status --porcelain -- src include 2>/dev/null | wc -l),\"loadavg\":\"$(loadavg)\",\"busy\":\"$(busy_procs)\",\"df_tmp\":\"$df_tmp\",\"kernel\":\"$(uname -r)\",\"machine\":$MACHINE,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" >/dev/null
  log "machine state $1: load $(loadavg); busy: $(busy_procs); $df_tmp"
}

# ------------------------------------------------------------------------------------------ Cairn
log "results: $OUT"
if [ -n "${CAIRN_BENCH_WAIT_QUIET:-}" ]; then
  deadline=$((SECONDS + CAIRN_BENCH_WAIT_QUIET))
  until awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { exit !(l < 0.5) }' && [ -z "$(busy_procs)" ]; do
    [ $SECONDS -ge $deadline ] && { log "the machine is still busy after ${CAIRN_BENCH_WAIT_QUIET} s: running anyway"; break; }
    sleep 5
  done
fi
meta before
# Every 3 s, note other processes above 30% CPU (compilers, test runs): another job on the machine skews results.
(while :; do
  ps -eo pcpu=,comm= | awk '$1 > 30 && $2 !~ /^(cairn-bench|postgres|pgbench|psql|ps|awk|bash|sleep)$/ {print $2}'
  sleep 3
done >>"$RUN_TMP/busy.log" 2>/dev/null) &
SAMPLER=$!
if [ -z "${CAIRN_BENCH_SKIP_CAIRN:-}" ]; then
cairn fsync-probe --events 2000

# Event counts sized for roughly 5-15 s each on the 2-core reference machine; --seconds caps slower machines.
cairn append --writers 1 --batch 1 --events 60000 --seconds 30
cairn append --writers 16 --batch 1 --events 400000 --seconds 30
cairn append --writers 64 --batch 1 --events 1000000 --seconds 30
cairn append --writers 1 --batch 100 --events 2000000 --seconds 30
cairn append --writers 16 --batch 100 --events 5000000 --seconds 30
cairn append --writers 64 --batch 100 --events 5000000 --seconds 30
# Diagnostics: the same appends without any sync, to separate the CPU cost from the fsync cost.
cairn append --writers 64 --batch 1 --events 1000000 --seconds 30 --durability none
cairn append --writers 16 --batch 100 --events 5000000 --seconds 30 --durability none
# Personal data (docs/privacy.md): the same batch-100 appends with one sealed part per event.
cairn append --writers 16 --batch 100 --events 5000000 --seconds 30 --personal 1
# The purge of forgotten parts: 1M events, each with one sealed part of one of 1000 subjects, 10 forgotten.
cairn purge --events 1000000

cairn read-all --events 1000000
cairn read-stream --events 100000

# open: 10M events if this machine builds them within a few minutes (judged from read-all's build rate).
OPEN_EVENTS=${CAIRN_BENCH_OPEN_EVENTS:-}
if [ -z "$OPEN_EVENTS" ]; then
  load_rate=$(grep '"workload":"load"' "$OUT" | grep '"for":"read-all"' | tail -1)
  load_rate=$(jget events_per_s "$load_rate")
  # building + copying + reindexing is about 2.5x the build alone
  est=$(awk -v r="${load_rate:-0}" 'BEGIN { if (r <= 0) print 99999; else printf "%d", 2.5 * 10000000 / r }')
  if [ "$est" -le 240 ]; then
    OPEN_EVENTS=10000000
  else
    OPEN_EVENTS=2000000
    OPEN_NOTE="10M events would take about ${est} s here: open measured with 2M events"
    log "$OPEN_NOTE"
  fi
fi
cairn open --events "$OPEN_EVENTS"
[ -n "$OPEN_NOTE" ] && emit "{\"system\":\"host\",\"workload\":\"note\",\"note\":\"$OPEN_NOTE\"}" >/dev/null

cairn subscribe --rate 2000 --seconds 5

# Projections: rebuild speed of three reducers over PROJ_EVENTS events, and as-of latency on 1M events.
log "cairn-projection-bench --events $PROJ_EVENTS"
"$PBENCH" --dir "$RUN_TMP/projections" --events "$PROJ_EVENTS" --streams "$PROJ_STREAMS" --machine "$MACHINE" |
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$OUT"
    printf '%s\n' "$line" | cut -c1-220
  done
[ "${PIPESTATUS[0]}" = 0 ] || { log "cairn-projection-bench failed"; exit 1; }
rm -rf "$RUN_TMP/projections"

# The AI ledger: exports, the built-in projections, rates and why over HTTP on LEDGER_DECISIONS decisions;
# the proposals, decisions and corrections are also dumped for the same export in SQL below.
log "cairn-ledger-bench --decisions $LEDGER_DECISIONS"
"$LBENCH" --dir "$RUN_TMP/ledger" --decisions "$LEDGER_DECISIONS" --machine "$MACHINE" --pg-dump "$RUN_TMP/ledger.copy" |
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$OUT"
    printf '%s\n' "$line" | cut -c1-220
  done
[ "${PIPESTATUS[0]}" = 0 ] || { log "cairn-ledger-bench failed"; exit 1; }
rm -rf "$RUN_TMP/ledger"
meta after-cairn
fi

# ------------------------------------------------------------------------------------------ PostgreSQL 15
if [ -z "${CAIRN_BENCH_SKIP_PG:-}" ]; then
  free_port() {
    local p
    for p in $(seq 55432 55532); do
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo "run.sh: no free port in 55432..55532" >&2
    return 1
  }
  PG_DIR=$(mktemp -d "$TMP_BASE/cairn-bench-pg.XXXXXX")
  chmod 755 "$PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR"
  PG_PORT=$(free_port)
  PG_USER=$( [ "$(id -u)" = 0 ] && echo postgres || id -un )
  log "PostgreSQL 15: initdb in $PG_DIR, port $PG_PORT"
  as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" -A trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  PG_STARTED=1
  as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c shared_buffers=1GB -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
  PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres)
  "${PSQL[@]}" -f "$PG_BASE/schema.sql" >/dev/null
  pg_version=$("${PSQL[@]}" -At -c 'show server_version')
  log "PostgreSQL $pg_version up (fsync=$("${PSQL[@]}" -At -c 'show fsync'), synchronous_commit=$("${PSQL[@]}" -At -c 'show synchronous_commit'), shared_buffers=$("${PSQL[@]}" -At -c 'show shared_buffers'))"
  PG_PAYLOAD=$(grep -o "'{[^']*}'" "$PG_BASE/append-single.pgbench" | head -1 | tr -d "'" | tr -d '\n' | wc -c)

  # The batch script draws its stream from random(1, 1e9): at ~2,000 transactions/s that repeats a stream within
  # 15 s (birthday collisions), the insert of version 0 hits the unique key and pgbench aborts that client. The
  # copy used here draws from a 63-bit range instead; the SQL is otherwise the same.
  PG_BATCH_SCRIPT="$RUN_TMP/append-batch100.pgbench"
  sed 's/random(1, 1000000000)/random(1, 9000000000000000000)/' "$PG_BASE/append-batch100.pgbench" >"$PG_BATCH_SCRIPT"
  cmp -s "$PG_BASE/append-batch100.pgbench" "$PG_BATCH_SCRIPT" && BATCH_NOTE="" ||
    BATCH_NOTE="stream key drawn from random(1, 9e18) instead of random(1, 1e9) to avoid duplicate-key aborts"

  # pgbench_run NAME SCRIPT CLIENTS EVENTS_PER_TX NOTE: one pgbench run with per-transaction logs for p50/p99.
  pgbench_run() {
    local name=$1 script=$2 clients=$3 per_tx=$4 note=$5 logdir="$RUN_TMP/pgbench-$1" aborted=false
    mkdir -p "$logdir"
    log "pgbench $name: -c $clients -j 2 -T $PG_SECONDS"
    (cd "$logdir" && "$PGBIN/pgbench" -n -f "$script" -c "$clients" -j 2 -T "$PG_SECONDS" \
      -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -l --log-prefix="$logdir/tx" postgres >"$logdir/out.txt" 2>&1) || {
      cat "$logdir/out.txt" >&2
      grep -q '^tps = ' "$logdir/out.txt" || exit 1
      aborted=true
      log "pgbench $name: some clients aborted; the figure is kept, marked aborted"
    }
    local tps txs failed pcts p50 p99
    tps=$(awk '/^tps = / {print $3; exit}' "$logdir/out.txt")
    txs=$(awk -F': ' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$logdir/out.txt")
    failed=$(awk -F': ' '/number of failed transactions/ {split($2, a, " "); print a[1]; exit}' "$logdir/out.txt")
    # Per-transaction log lines: client tx_no latency_us script_no epoch_s epoch_us
    pcts=$(cat "$logdir"/tx.* | awk '{print $3}' | sort -n | awk '{v[NR] = $1} END {
      if (NR == 0) { print "null null"; exit }
      i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999); printf "%.1f %.1f", v[i50], v[i99] }')
    p50=${pcts% *}; p99=${pcts#* }
    emit "$(awk -v name="$name" -v c="$clients" -v per="$per_tx" -v tps="$tps" -v txs="$txs" -v T="$PG_SECONDS" \
      -v p50="$p50" -v p99="$p99" -v pay="$PG_PAYLOAD" -v failed="${failed:-0}" -v ver="$pg_version" \
      -v ab="$aborted" -v note="$note" -v m="$MACHINE" -v d="$(date -u +%Y-%m-%dT%H:%M:%SZ)" 'BEGIN {
      printf "{\"system\":\"postgresql\",\"workload\":\"append\",\"writers\":%d,\"batch\":%d,\"payload_bytes\":%d,", c, per, pay
      printf "\"durability\":\"fsync\",\"events\":%d,\"seconds\":%s,\"events_per_s\":%.0f,\"MB_per_s\":%.1f,", txs * per, T, tps * per, tps * per * pay / 1e6
      printf "\"p50_us\":%s,\"p99_us\":%s,\"tps\":%s,\"failed\":%s,\"aborted\":%s,\"pgbench\":\"%s\",\"server_version\":\"%s\",", p50, p99, tps, failed, ab, name, ver
      if (note != "") printf "\"script_change\":\"%s\",", note
      printf "\"latency\":\"per transaction\",\"machine\":%s,\"date\":\"%s\"}", m, d }')"
  }
  pgbench_run append-single-c16 "$PG_BASE/append-single.pgbench" 16 1 ""
  pgbench_run append-single-c64 "$PG_BASE/append-single.pgbench" 64 1 ""
  pgbench_run append-batch100-c4 "$PG_BATCH_SCRIPT" 4 100 "$BATCH_NOTE"

  # Cairn on this same server (the PostgreSQL backend, docs/scaling.md): the core append workloads, each on a
  # fresh database that `cairn pg init` prepared, with a subscriber from position 0 counting skipped events.
  if [ -z "${CAIRN_BENCH_SKIP_CAIRN:-}" ]; then
    PG_BACKEND_RUNS=0
    pg_backend_run() {
      PG_BACKEND_RUNS=$((PG_BACKEND_RUNS + 1))
      local db="cairn_bench_$PG_BACKEND_RUNS"
      "${PSQL[@]}" -c "drop database if exists $db" -c "create database $db" >/dev/null
      "$CAIRN_CLI" pg init --admin "host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$db" >/dev/null ||
        { log "cairn pg init failed"; exit 1; }
      cairn append "$@" --backend "host=127.0.0.1 port=$PG_PORT user=cairn_app dbname=$db"
      "${PSQL[@]}" -c "drop database $db" >/dev/null
    }
    pg_backend_run --writers 16 --batch 1 --events 400000 --seconds "$PG_SECONDS"
    pg_backend_run --writers 64 --batch 1 --events 1000000 --seconds "$PG_SECONDS"
    pg_backend_run --writers 16 --batch 100 --events 5000000 --seconds "$PG_SECONDS"
    pg_backend_run --writers 64 --batch 100 --events 5000000 --seconds "$PG_SECONDS"
  fi

  # The scan from the README, over everything the appends wrote; 5 runs, best and median.
  log "PostgreSQL scan"
  "${PSQL[@]}" -c 'vacuum analyze baseline_events' >/dev/null
  scan_out=$("${PSQL[@]}" -At -c '\timing on' \
    -c 'select count(*), sum(length(data::text)) from baseline_events' \
    -c 'select count(*), sum(length(data::text)) from baseline_events' \
    -c 'select count(*), sum(length(data::text)) from baseline_events' \
    -c 'select count(*), sum(length(data::text)) from baseline_events' \
    -c 'select count(*), sum(length(data::text)) from baseline_events')
  rows=$(printf '%s\n' "$scan_out" | awk -F'|' 'NF == 2 {print $1; exit}')
  bytes=$(printf '%s\n' "$scan_out" | awk -F'|' 'NF == 2 {print $2; exit}')
  times=$(printf '%s\n' "$scan_out" | awk '/^Time: / {print $2 / 1000}' | sort -g)
  best=$(printf '%s\n' "$times" | head -1)
  median=$(printf '%s\n' "$times" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  table_mb=$("${PSQL[@]}" -At -c "select pg_total_relation_size('baseline_events') / 1e6")
  for which in best median; do
    t=$([ "$which" = best ] && echo "$best" || echo "$median")
    emit "$(awk -v w="$which" -v rows="$rows" -v bytes="$bytes" -v t="$t" -v mb="$table_mb" -v ver="$pg_version" \
      -v m="$MACHINE" -v d="$(date -u +%Y-%m-%dT%H:%M:%SZ)" 'BEGIN {
      printf "{\"system\":\"postgresql\",\"workload\":\"read-all\",\"writers\":1,\"batch\":0,\"payload_bytes\":%d,", bytes / rows
      printf "\"durability\":\"fsync\",\"events\":%d,\"seconds\":%.4f,\"events_per_s\":%.0f,\"MB_per_s\":%.1f,", rows, t, rows / t, mb / t
      printf "\"p50_us\":null,\"p99_us\":null,\"stat\":\"%s\",\"runs\":5,\"payload_MB_per_s\":%.1f,\"table_MB\":%.1f,", w, bytes / t / 1e6, mb
      printf "\"query\":\"select count(*), sum(length(data::text)) from baseline_events\",\"server_version\":\"%s\",", ver
      printf "\"note\":\"psql \\\\timing, shared_buffers warm; MB_per_s counts the table and its indexes\",\"machine\":%s,\"date\":\"%s\"}", m, d }')"
  done

  # Projections, the SQL way: the same events (same streams, types and data shape) in a table, and the
  # aggregate that computes each projection's state from scratch, timed with \timing (best of 3).
  log "PostgreSQL projection baseline: loading $PROJ_EVENTS events"
  "${PSQL[@]}" -c "create unlogged table proj_events (position bigint primary key, stream text not null, type text not null, data jsonb not null)" \
    -c "insert into proj_events select g, 'user-' || ((g / 100) % $PROJ_STREAMS), (array['order.placed','order.paid','order.shipped','proposal.made','human.decision.made','feedback.left','skill.executed','question.asked','path.chosen','user.signed_up','user.renamed','cart.item_added','cart.item_removed','invoice.issued','invoice.paid','model.deployed','prompt.changed','tool.called','tool.failed','session.ended'])[1 + (hashint8(g) & 2147483647) % 20], jsonb_build_object('user_id', 'u' || ((g / 100) % $PROJ_STREAMS), 'amount', (hashint8(g + 1) & 2147483647) % 1000, 'model', 'm-' || (g % 4)) from generate_series(0, $PROJ_EVENTS - 1) g" \
    -c "create index on proj_events (stream, position)" -c "vacuum analyze proj_events" >/dev/null
  pg_time() {  # pg_time SQL: best of 3, seconds
    "${PSQL[@]}" -At -c '\timing on' -c "$1" -c "$1" -c "$1" | awk '/^Time: / {print $2 / 1000}' | sort -g | head -1
  }
  for spec in "count-by-type|select type, count(*) from proj_events group by type" \
              "per-stream|select stream, count(*), max(position) from proj_events group by stream"; do
    name=${spec%%|*}; sql=${spec#*|}
    t=$(pg_time "$sql")
    emit "$(awk -v n="$name" -v t="$t" -v e="$PROJ_EVENTS" -v q="$sql" -v ver="$pg_version" -v m="$MACHINE" \
      -v d="$(date -u +%Y-%m-%dT%H:%M:%SZ)" 'BEGIN {
      printf "{\"system\":\"postgresql\",\"workload\":\"projection-rebuild\",\"reducer\":\"sql-%s\",\"events\":%d,", n, e
      printf "\"seconds\":%.4f,\"events_per_s\":%.0f,\"query\":\"%s\",\"stat\":\"best of 3\",", t, e / t, q
      printf "\"server_version\":\"%s\",\"note\":\"unlogged table, shared_buffers warm\",\"machine\":%s,\"date\":\"%s\"}", ver, m, d }')"
  done
  # As-of in SQL: one stream's aggregate up to a position, by index (30 random queries).
  "${PSQL[@]}" -c "create unlogged table proj_events_1m as select * from proj_events where position < 1000000" \
    -c "create index on proj_events_1m (stream, position)" -c "vacuum analyze proj_events_1m" >/dev/null
  asof_file="$RUN_TMP/as-of.sql"
  {
    echo '\timing on'
    for _ in $(seq 1 30); do
      echo "select count(*), max(position), sum((data->>'amount')::int) from proj_events_1m where stream = 'user-$((RANDOM % PROJ_STREAMS))' and position <= $((RANDOM * 30 % 1000000));"
    done
  } >"$asof_file"
  times=$("${PSQL[@]}" -At -f "$asof_file" | awk '/^Time: / {print $2}' | sort -g)
  p50=$(printf '%s\n' "$times" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  p99=$(printf '%s\n' "$times" | tail -1)
  emit "{\"system\":\"postgresql\",\"workload\":\"projection-as-of\",\"reducer\":\"sql: count, max, sum(amount) where stream = ? and position <= ?\",\"events\":1000000,\"queries\":30,\"p50_ms\":$p50,\"p99_ms\":$p99,\"note\":\"btree index on (stream, position)\",\"server_version\":\"$pg_version\",\"machine\":$MACHINE,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
  "${PSQL[@]}" -c "drop table proj_events" -c "drop table proj_events_1m" >/dev/null

  # The AI ledger in SQL: the same proposals, decisions and corrections (the dump cairn-ledger-bench wrote)
  # in one table, the SFT export as one query (a decision named by any correction is left out: simpler
  # than Cairn's rules, which apply amendments), the rates as a GROUP BY, and why as a recursive CTE.
  if [ -s "$RUN_TMP/ledger.copy" ]; then
    log "PostgreSQL ledger baseline: loading $(wc -l <"$RUN_TMP/ledger.copy") events"
    chmod 644 "$RUN_TMP/ledger.copy"; chmod 755 "$RUN_TMP"
    "${PSQL[@]}" -c "create unlogged table ledger_events (position bigint primary key, id uuid not null unique, type text not null, stream text not null, metadata jsonb not null, data jsonb not null)" \
      -c "\\copy ledger_events from '$RUN_TMP/ledger.copy'" \
      -c "create index on ledger_events ((data->>'proposal_id'), type)" \
      -c "create index on ledger_events ((data->>'corrects_event_id')) where type = 'correction.recorded'" \
      -c "vacuum analyze ledger_events" >/dev/null
    sft="copy (select jsonb_build_object('messages', (p.data->'input'->'messages') || jsonb_build_array(jsonb_build_object('role', 'assistant', 'content', case when jsonb_typeof(d.data->'final_value') = 'string' then d.data->>'final_value' else (d.data->'final_value')::text end)))::text from ledger_events p join ledger_events d on d.type = 'human.decision.recorded' and d.data->>'proposal_id' = p.data->>'proposal_id' where p.type = 'ai.proposal.made' and d.data->>'outcome' in ('accepted', 'edited') and not exists (select 1 from ledger_events c where c.type = 'correction.recorded' and c.data->>'corrects_event_id' = d.id::text) order by p.position) to '/dev/null'"
    rows=$("${PSQL[@]}" -At -c "select count(*) from ledger_events p join ledger_events d on d.type = 'human.decision.recorded' and d.data->>'proposal_id' = p.data->>'proposal_id' where p.type = 'ai.proposal.made' and d.data->>'outcome' in ('accepted', 'edited') and not exists (select 1 from ledger_events c where c.type = 'correction.recorded' and c.data->>'corrects_event_id' = d.id::text)")
    t=$(pg_time "$sft")
    emit "$(awk -v t="$t" -v rows="$rows" -v n="$LEDGER_DECISIONS" -v ver="$pg_version" -v m="$MACHINE" -v d="$(date -u +%Y-%m-%dT%H:%M:%SZ)" 'BEGIN {
      printf "{\"system\":\"postgresql\",\"workload\":\"ledger-export\",\"format\":\"sft\",\"decisions\":%d,\"rows\":%d,\"seconds\":%.3f,\"rows_per_s\":%.0f,", n, rows, t, rows / t
      printf "\"query\":\"COPY (proposals join decisions, corrected decisions left out, jsonb_build_object per row, order by position) TO /dev/null\",\"stat\":\"best of 3\",\"server_version\":\"%s\",\"machine\":%s,\"date\":\"%s\"}", ver, m, d }')"
    rates="select p.data->>'gen_ai.response.model', p.data->>'app.prompt.template_id', p.data->>'app.prompt.template_version', p.data->>'skill', count(*) filter (where d.data->>'outcome' = 'accepted'), count(*) filter (where d.data->>'outcome' = 'edited'), count(*) filter (where d.data->>'outcome' = 'rejected'), count(*) filter (where d.data->>'outcome' = 'expired') from ledger_events p join ledger_events d on d.type = 'human.decision.recorded' and d.data->>'proposal_id' = p.data->>'proposal_id' where p.type = 'ai.proposal.made' group by 1, 2, 3, 4"
    t=$(pg_time "$rates")
    emit "{\"system\":\"postgresql\",\"workload\":\"ledger-rates\",\"decisions\":$LEDGER_DECISIONS,\"seconds\":$t,\"p50_ms\":$(awk -v t="$t" 'BEGIN {printf "%.1f", t * 1000}'),\"stat\":\"best of 3\",\"query\":\"GROUP BY model, prompt, skill over proposals join decisions, from scratch\",\"server_version\":\"$pg_version\",\"machine\":$MACHINE,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
    last=$(grep '"system":"cairn","workload":"ledger-why"' "$OUT" | head -1 | sed 's/.*"chain_last_id":"\([^"]*\)".*/\1/')
    why_file="$RUN_TMP/why.sql"
    {
      echo '\timing on'
      for _ in $(seq 1 30); do
        echo "with recursive chain(id, metadata, depth) as (select id, metadata, 0 from ledger_events where id = '$last' union all select e.id, e.metadata, c.depth + 1 from chain c join ledger_events e on e.id = (c.metadata->>'causation_id')::uuid where c.depth < 100) select count(*) from chain;"
      done
    } >"$why_file"
    times=$("${PSQL[@]}" -At -f "$why_file" | awk '/^Time: / {print $2}' | sort -g)
    p50=$(printf '%s\n' "$times" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
    p99=$(printf '%s\n' "$times" | tail -1)
    emit "{\"system\":\"postgresql\",\"workload\":\"ledger-why\",\"chain_events\":20,\"queries\":30,\"p50_ms\":$p50,\"p99_ms\":$p99,\"query\":\"recursive CTE over causation_id (unique index on id), psql, chain only: no correlation, corrections or HTTP\",\"server_version\":\"$pg_version\",\"machine\":$MACHINE,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
    "${PSQL[@]}" -c "drop table ledger_events" >/dev/null
  fi
  # Erasure in SQL: the same 1M events (one ~200-byte personal text each, 1000 subjects), the personal text of
  # 10 subjects overwritten by an UPDATE, then VACUUM FULL so the old row versions are gone from the files
  # (without it PostgreSQL keeps them until the space is reused). No digest, no chain, no verification.
  log "PostgreSQL erasure baseline"
  "${PSQL[@]}" -c "create table purge_events (position bigint primary key, subject text not null, data jsonb not null)" \
    -c "insert into purge_events select g, 'user-' || (g % 1000), jsonb_build_object('model', 'm-1', 'prompt_version', 'v3', 'output', repeat('Lorem ipsum dolor sit amet ', 7), 'latency_ms', 812) from generate_series(0, 999999) g" \
    -c "create index on purge_events (subject)" -c "vacuum analyze purge_events" >/dev/null
  table_mb=$("${PSQL[@]}" -At -c "select round(pg_total_relation_size('purge_events') / 1e6, 1)")
  t=$("${PSQL[@]}" -At -c '\timing on' \
    -c "update purge_events set data = jsonb_set(data, '{output}', '\"[erased]\"') where subject in ('user-0','user-1','user-2','user-3','user-4','user-5','user-6','user-7','user-8','user-9')" \
    -c "vacuum full purge_events" -c "checkpoint" | awk '/^Time: / {s += $2 / 1000} END {printf "%.3f", s}')
  emit "{\"system\":\"postgresql\",\"workload\":\"purge\",\"events\":1000000,\"seconds\":$t,\"MB_per_s\":$(awk -v mb="$table_mb" -v t="$t" 'BEGIN {printf "%.1f", mb / t}'),\"table_MB\":$table_mb,\"query\":\"UPDATE of 10 subjects' text (10k rows) + VACUUM FULL + CHECKPOINT; MB_per_s = table and index size / total time\",\"server_version\":\"$pg_version\",\"machine\":$MACHINE,\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
  "${PSQL[@]}" -c "drop table purge_events" >/dev/null
  meta after-postgresql
fi

# ------------------------------------------------------------------------------------------ the table
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
OTHER_BUSY=$(sort "$RUN_TMP/busy.log" 2>/dev/null | uniq -c | awk '{printf "%s%s in %d samples", (n++ ? ", " : ""), $2, $1}')
emit "{\"system\":\"host\",\"workload\":\"machine-busy\",\"other_processes_over_30pct_cpu\":\"${OTHER_BUSY:-none}\",\"sample_interval_s\":3}" >/dev/null
fmt_rate() { awk -v x="$1" 'BEGIN { if (x == "" || x == "null") print "—"; else if (x >= 1e6) printf "%.2fM", x / 1e6; else if (x >= 1e4) printf "%.1fk", x / 1e3; else printf "%.0f", x }'; }
fmt_us() { awk -v x="$1" 'BEGIN { if (x == "" || x == "null") print "—"; else if (x >= 1000) printf "%.2f ms", x / 1000; else printf "%.0f µs", x }'; }
# pick SYSTEM WORKLOAD [KEY=VALUE...]: the first result line matching all the given fields
pick() {
  local sys=$1 wl=$2
  shift 2
  local pat=("\"system\":\"$sys\"" "\"workload\":\"$wl\"")
  local kv
  for kv in "$@"; do
    case "${kv#*=}" in [0-9]* | true | false) pat+=("\"${kv%%=*}\":${kv#*=},") ;; *) pat+=("\"${kv%%=*}\":\"${kv#*=}\"") ;; esac
  done
  local line
  while IFS= read -r line; do
    local ok=1 p
    for p in "${pat[@]}"; do [[ "$line" == *"$p"* ]] || { ok=0; break; }; done
    [ $ok = 1 ] && { printf '%s\n' "$line"; return 0; }
  done <"$OUT"
  return 0
}
cell_rate() { [ -n "$1" ] && echo "$(fmt_rate "$(jget events_per_s "$1")") ev/s" || echo "—"; }
cell_lat() { [ -n "$1" ] && echo "$(fmt_us "$(jget p50_us "$1")") / $(fmt_us "$(jget p99_us "$1")")" || echo "—"; }
verdict() { awk -v x="$1" -v op="$2" -v y="$3" 'BEGIN { if (x == "" || x == "null") { print "?"; exit }
  ok = (op == ">=") ? (x + 0 >= y + 0) : (x + 0 <= y + 0); print ok ? "met" : "missed" }'; }

{
  echo "# Cairn vs PostgreSQL 15 — $(date -u +%Y-%m-%d) — $(jget cpu_model "$MACHINE"), $(nproc) cores"
  echo
  echo "| Workload | Durability | Cairn | Cairn p50 / p99 | PostgreSQL 15 | PG p50 / p99 | Target |"
  echo "|---|---|---|---|---|---|---|"
  for b in 1 100; do
    for w in 1 16 64; do
      c=$(pick cairn append writers=$w batch=$b durability=fsync personal=false backend=embedded)
      pg=""
      pglabel=""
      if [ "$b" = 1 ] && [ "$w" != 1 ]; then pg=$(pick postgresql append writers=$w batch=1); pglabel=" ($w clients)"; fi
      if [ "$b" = 100 ]; then pg=$(pick postgresql append writers=4 batch=100); pglabel=" (4 clients)"; fi
      target=""
      if [ "$b" = 1 ] && [ "$w" = 64 ]; then
        target="≥ 50k ev/s, p99 ≤ 2 ms: $(verdict "$(jget events_per_s "$c")" '>=' 50000) / $(verdict "$(jget p99_us "$c")" '<=' 2000)"
      fi
      if [ "$b" = 100 ]; then target="≥ 1M ev/s: $(verdict "$(jget events_per_s "$c")" '>=' 1000000)"; fi
      pgcell="—"; [ -n "$pg" ] && pgcell="$(cell_rate "$pg")$pglabel"
      echo "| append, batch $b, $w writer$([ "$w" = 1 ] || echo s) | fsync | $(cell_rate "$c") | $(cell_lat "$c") | $pgcell | $(cell_lat "$pg") | $target |"
    done
  done
  for spec in "16 1 5000" "64 1 5000" "16 100 100000" "64 100 100000"; do
    set -- $spec
    c=$(pick cairn append writers=$1 batch=$2 backend=postgres)
    [ -z "$c" ] && continue
    e=$(pick cairn append writers=$1 batch=$2 durability=fsync personal=false backend=embedded)
    if [ "$2" = 1 ]; then pg=$(pick postgresql append writers=$1 batch=1); pglabel=" ($1 clients)"; else pg=$(pick postgresql append writers=4 batch=100); pglabel=" (4 clients)"; fi
    pgcell="—"; [ -n "$pg" ] && pgcell="$(cell_rate "$pg")$pglabel"
    ratio=$(awk -v a="$(jget events_per_s "$e")" -v b="$(jget events_per_s "$c")" 'BEGIN { if (b > 0 && a > 0) printf "%.1f×", a / b; else print "?" }')
    skipped=$(jget subscriber_skipped "$c")
    echo "| append, batch $2, $1 writers, **on the PostgreSQL backend** (embedded: $(cell_rate "$e"), $ratio) | PostgreSQL commit (fsync, synchronous_commit on) | $(cell_rate "$c") | $(cell_lat "$c") | $pgcell | $(cell_lat "$pg") | ≥ $(fmt_rate "$3") ev/s: $(verdict "$(jget events_per_s "$c")" '>=' "$3"); subscriber skipped $skipped of $(jget subscriber_events "$c") |"
  done
  for spec in "64 1" "16 100"; do
    set -- $spec
    c=$(pick cairn append writers=$1 batch=$2 durability=none)
    [ -n "$c" ] && echo "| append, batch $2, $1 writers (diagnostic) | none | $(cell_rate "$c") | $(cell_lat "$c") | — | — | |"
  done
  c=$(pick cairn append writers=16 batch=100 durability=fsync personal=true)
  plain=$(pick cairn append writers=16 batch=100 durability=fsync personal=false backend=embedded)
  if [ -n "$c" ]; then
    ratio=$(awk -v a="$(jget events_per_s "$c")" -v b="$(jget events_per_s "$plain")" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * (1 - a / b); else print "?" }')
    pg=$(pick postgresql append writers=4 batch=100)
    echo "| append with one personal part sealed per event, batch 100, 16 writers | fsync | $(cell_rate "$c") | $(cell_lat "$c") | $(cell_rate "$pg") (4 clients, no sealing) | $(cell_lat "$pg") | ≤ 15% below the same without personal parts: $ratio below, $(awk -v a="$(jget events_per_s "$c")" -v b="$(jget events_per_s "$plain")" 'BEGIN { print (b > 0 && a >= 0.85 * b) ? "met" : "missed" }') |"
  fi
  c=$(pick cairn purge)
  if [ -n "$c" ]; then
    pg=$(pick postgresql purge)
    echo "| purge of forgotten parts: $(jget events "$c") events, $(awk -v b="$(jget log_bytes "$c")" 'BEGIN {printf "%.0f", b / 1e6}') MB of log, 10 of 1000 subjects, every segment rewritten (verify; per segment rewrite + verify of the copy) | fsync | $(jget MB_per_s "$c") MB/s (first verify $(jget verify_MB_per_s "$c") MB/s, rewrite + verify of the copies $(jget rewrite_and_check_MB_per_s "$c") MB/s; chain unchanged: $(jget chain_unchanged "$c")) | — | $([ -n "$pg" ] && echo "$(jget MB_per_s "$pg") MB/s (UPDATE + VACUUM FULL + CHECKPOINT, $(jget table_MB "$pg") MB, no proof)" || echo —) | — | ≥ 200 MB/s: $(verdict "$(jget MB_per_s "$c")" '>=' 200) |"
  fi
  for which in best median; do
    c=$(pick cairn read-all stat=$which)
    pg=$(pick postgresql read-all stat=$which)
    target=""; [ "$which" = best ] && target="≥ 10M ev/s: $(verdict "$(jget events_per_s "$c")" '>=' 10000000)"
    echo "| read \$all, $(jget events "$c") events, page cache ($which of $(jget runs "$c")) | — | $(cell_rate "$c") ($(jget MB_per_s "$c") MB/s) | — | $(cell_rate "$pg") ($(jget events "$pg") rows) | — | $target |"
  done
  c=$(pick cairn read-stream stat=median)
  echo "| read one stream of $(jget events "$c"), pages of 1000 (median) | — | $(cell_rate "$c") | $(cell_lat "$c") per page | — | — | |"
  c=$(pick cairn open-clean)
  n=$(jget events "$c")
  target="< 1 s for 10M"
  [ "$n" = 10000000 ] && target="$target: $(verdict "$(jget seconds "$c")" '<=' 1)" || target="$target (measured with $n events)"
  echo "| open after clean close, $n events (median) | — | $(jget seconds "$c") s | — | — | — | $target |"
  c=$(pick cairn open-reindex)
  echo "| open without index/ (full reindex), $(jget events "$c") events | — | $(jget seconds "$c") s ($(cell_rate "$c")) | — | — | — | |"
  c=$(pick cairn subscribe)
  echo "| subscribe end-to-end, $(jget events_per_s "$c") appends/s | $(jget durability "$c") | — | $(cell_lat "$c") | — | — | |"
  for spec in "lua-count-by-type|Lua counter by type|count-by-type|2000000" "lua-per-stream|Lua per-stream state|per-stream|1000000" \
              "cpp-count-by-type|C++ counter by type|count-by-type|10000000"; do
    IFS='|' read -r red label sqlname goal <<<"$spec"
    c=$(pick cairn projection-rebuild reducer="$red")
    pg=$(pick postgresql projection-rebuild reducer="sql-$sqlname")
    echo "| projection rebuild: $label, $(jget events "$c") events | — | $(cell_rate "$c") | — | $(cell_rate "$pg") (GROUP BY, best of 3) | — | ≥ $(fmt_rate "$goal") ev/s: $(verdict "$(jget events_per_s "$c")" '>=' "$goal") |"
  done
  pg=$(pick postgresql projection-as-of)
  for red in "lua-per-stream (data.amount), one partition" "lua-count-by-type, whole state"; do
    c=$(pick cairn projection-as-of reducer="$red")
    pgcell="—"; [ "${red%%,*}" != "$red" ] && [ "$red" != "${red%one partition}" ] && pgcell="$(jget p50_ms "$pg") ms / $(jget p99_ms "$pg") ms (indexed SQL)"
    [ -n "$c" ] && echo "| projection as-of, $red, 1M events, snapshots every 100k (p50 / p99 of 30) | — | — | $(jget p50_ms "$c") ms / $(jget p99_ms "$c") ms | — | $pgcell | < 100 ms: $(verdict "$(jget p99_ms "$c")" '<=' 100) |"
  done
  for f in sft openai-sft kto preference; do
    c=$(pick cairn ledger-export format=$f)
    [ -z "$c" ] && continue
    pgcell="—"
    if [ "$f" = sft ]; then pg=$(pick postgresql ledger-export format=sft); [ -n "$pg" ] && pgcell="$(fmt_rate "$(jget rows_per_s "$pg")") rows/s (one SQL query, simplified rules)"; fi
    echo "| AI ledger export, $f, $(jget decisions "$c") decisions ($(jget rows "$c") rows, $(jget MB_per_s "$c") MB/s) | — | $(fmt_rate "$(jget rows_per_s "$c")") rows/s ($(fmt_rate "$(jget decisions_per_s "$c")") decisions/s) | — | $pgcell | — | ≥ 200k rows/s: $(verdict "$(jget rows_per_s "$c")" '>=' 200000) |"
  done
  c=$(pick cairn ledger-catch-up)
  [ -n "$c" ] && echo "| AI ledger built-in projections from position 0, $(jget events "$c") events | — | $(fmt_rate "$(jget events_per_s "$c")") ev/s ($(jget seconds_lineage "$c") s) | — | — | — | |"
  c=$(pick cairn ledger-rates)
  pg=$(pick postgresql ledger-rates)
  [ -n "$c" ] && echo "| AI ledger rates by model, prompt version, skill, day (p50 / p99 of 30) | — | — | $(jget p50_ms "$c") ms / $(jget p99_ms "$c") ms | — | $([ -n "$pg" ] && echo "$(jget p50_ms "$pg") ms (GROUP BY from scratch, best of 3)" || echo —) | |"
  c=$(pick cairn ledger-why)
  pg=$(pick postgresql ledger-why)
  [ -n "$c" ] && echo "| AI ledger why, 20-event chain, GET /v1/why over HTTP (p50 / p99 of 300) | — | — | $(jget p50_ms "$c") ms / $(jget p99_ms "$c") ms | — | $([ -n "$pg" ] && echo "$(jget p50_ms "$pg") ms / $(jget p99_ms "$pg") ms (recursive CTE, chain only, psql)" || echo —) | < 5 ms: $(verdict "$(jget p99_ms "$c")" '<=' 5) |"
  c=$(pick cairn fsync-probe)
  echo "| fdatasync probe (pwrite $(jget payload_bytes "$c") B + fdatasync) | fsync | $(cell_rate "$c") | $(cell_lat "$c") | — | — | |"
  echo
  echo "Cairn payload: 256-byte JSON; PostgreSQL payload: ${PG_PAYLOAD:-?}-byte JSON (shared/bench/pg-baseline)."
  [ -n "${BATCH_NOTE:-}" ] && echo "PostgreSQL batch script: $BATCH_NOTE."
  grep -q '"aborted":true' "$OUT" && echo "WARNING: a pgbench run had aborted clients (see the JSON lines)."
  echo "Other processes above 30% CPU during the run (sampled every 3 s): ${OTHER_BUSY:-none}."
  echo "Load average before / after: $(grep '"when":"before"' "$OUT" | sed 's/.*"loadavg":"\([^"]*\)".*/\1/') / $(loadavg)."
  [ -n "$OPEN_NOTE" ] && echo "$OPEN_NOTE."
  echo "Raw results: ${OUT#"$REPO"/}"
} >"$TABLE"
echo
cat "$TABLE"
log "done: $OUT, $TABLE"

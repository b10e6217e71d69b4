#!/usr/bin/env bash
# Load test: raw binary COPY as the limit, then Aurore (release build, default durability)
# under loadgen scenarios on the same machine, and a table of durable rates.
# "Durable" = rows counted in PostgreSQL / time from the first request until the count
# stops growing. Usage: scripts/loadtest.sh [SECONDS per scenario, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
port=${AURORE_LOADTEST_PORT:-18090}
admin=$(scripts/database.sh admin)
server=${admin%/*}
tag="loadtest_$$"
journal=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$journal"
    for db in "aurore_$tag" "baseline_$tag"; do psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

cargo build --release --quiet --bin aurore --bin aurore-loadgen
aurore=target/release/aurore
loadgen=target/release/aurore-loadgen

psql "$admin" -qc "CREATE DATABASE baseline_$tag"
DATABASE_URL="$server/baseline_$tag" RUST_LOG=warn "$aurore" migrate
baseline=$("$loadgen" copy-baseline --database-url "$server/baseline_$tag" --events 1000000 --json)
copy_rate=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['rows_per_second']))" "$baseline")
echo "raw binary COPY (2 connections, batches of 5000): $copy_rate rows/s"

psql "$admin" -qc "CREATE DATABASE aurore_$tag"
# One client drives all the load, so its per-client ingest limit is off unless set.
DATABASE_URL="$server/aurore_$tag" AURORE__SERVER__PORT=$port AURORE__JOURNAL__DIR="$journal" RUST_LOG=warn \
    AURORE__RATE_LIMIT__INGEST_PER_SECOND="${AURORE__RATE_LIMIT__INGEST_PER_SECOND:-0}" "$aurore" &
pid=$!
until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done

count() { scripts/stored-events.sh "$server/aurore_$tag"; }
results=()
# scenario NAME LOADGEN-ARGS...: runs loadgen, then waits for the rows to land.
scenario() {
    local name=$1; shift
    local before start report previous rows finished
    before=$(count)
    start=$(date +%s.%N)
    report=$("$loadgen" run --url "http://127.0.0.1:$port" --duration "$seconds" --quiet --json "$@")
    previous=-1; rows=$(count)
    while [ "$rows" != "$previous" ]; do finished=$(date +%s.%N); sleep 0.2; previous=$rows; rows=$(count); done
    local rss
    rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
    results+=("$(python3 - "$name" "$report" "$before" "$rows" "$start" "$finished" "$copy_rate" "$rss" <<'PY'
import json, sys
name, report, before, rows, start, finished, copy_rate, rss = sys.argv[1:]
r = json.loads(report)
durable = (int(rows) - int(before)) / (float(finished) - float(start))
verified = r.get("verification")
if verified:
    # The wait includes walking every page to verify: no durable rate to read here.
    check = f"acknowledged {verified['acknowledged']:,}, lost {verified['lost']}, duplicated {verified['duplicated']}"
    rates = "— | —"
else:
    check = ""
    rates = f"{durable:,.0f} | {100 * durable / float(copy_rate):.0f} %"
print(f"| {name} | {r['accepted_events_per_second']:,.0f} | {rates} "
      f"| {r['latency']['p50_ms']:.2f} | {r['latency']['p99_ms']:.2f} | {rss} | {check} |")
PY
)")
}

scenario "arrays of 1,000" --mode array --batch 1000 --concurrency 8
scenario "single events" --mode single --concurrency 64
scenario "overload, verified" --mode array --batch 100 --concurrency 32 --verify

echo
echo "| scenario | accepted events/s | durable events/s | of raw COPY | p50 ms | p99 ms | peak RSS MB | verification |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"

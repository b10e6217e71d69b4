#!/usr/bin/env bash
# The four ratios of Aurore to this machine's limits, measured side by side in one run
# (absolute rates move 2-3x between days here; ratios do not):
#   1. single-event POSTs, durable events/s ÷ requests/s of a bare actix-web JSON handler
#   2. single-event POSTs, durable events/s with the journal ÷ with durability=none
#   3. arrays of 1,000, durable events/s ÷ raw binary COPY with as many connections as writers
#   4. GET /events page 1 (exact total) over the last hour of a service holding 100,000
#      events in it ÷ a cursor page of the same query (pageSize 50)
# Release builds; wrk (installed from Debian if missing). AURORE_BINARY runs another build.
# Usage: scripts/perf.sh [SECONDS per measurement, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
port=${AURORE_PERF_PORT:-18095}
bare_port=$((port + 1))
writers=${AURORE__WRITER__WRITERS:-2}
if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
admin=$(scripts/database.sh admin)
server=${admin%/*}
tag="perf_$$"
journal=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$journal"
    for db in $(psql "$admin" -Atc "SELECT datname FROM pg_database WHERE datname LIKE '%$tag%'"); do
        psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

cargo build --release --quiet --bin aurore --bin aurore-loadgen
aurore=${AURORE_BINARY:-target/release/aurore}
loadgen=target/release/aurore-loadgen

rate() { python3 -c "import re,sys; print(re.search(sys.argv[1] + r'=([0-9.]+)', sys.stdin.read()).group(1))" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

# Starts Aurore on a fresh database with extra environment; sets $url and $database.
start_aurore() {
    database="aurore_${tag}_$RANDOM"
    psql "$admin" -qc "CREATE DATABASE $database"
    rm -rf "$journal" && mkdir -p "$journal"
    env DATABASE_URL="$server/$database" AURORE__SERVER__PORT=$port AURORE__JOURNAL__DIR="$journal" RUST_LOG=warn \
        AURORE__RATE_LIMIT__INGEST_PER_SECOND=0 AURORE__RATE_LIMIT__QUERY_PER_SECOND=0 "$@" "$aurore" &
    pids+=($!)
    url="http://127.0.0.1:$port"
    until curl -fs "$url/health/detailed" | grep -q '"status":200'; do sleep 0.2; done
}
stop_aurore() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# Durable events/s of a wrk run against $url: rows stored ÷ time until the count stops growing.
durable() {
    local start finished previous=-1 rows
    start=$(date +%s.%N)
    wrk "$@" >/dev/null
    rows=$(scripts/stored-events.sh "$server/$database")
    while [ "$rows" != "$previous" ]; do
        finished=$(date +%s.%N)
        sleep 0.2
        previous=$rows
        rows=$(scripts/stored-events.sh "$server/$database")
    done
    python3 -c "print(round($rows / ($finished - $start)))"
}

single=(-t2 -c64 -d"${seconds}s" -s scripts/wrk/post_event.lua)

"$loadgen" bare-http --port "$bare_port" 2>/dev/null &
pids+=($!)
until curl -fs -o /dev/null -X POST -H 'content-type: application/json' -d '{}' "http://127.0.0.1:$bare_port/events"; do sleep 0.1; done
bare=$(wrk "${single[@]}" "http://127.0.0.1:$bare_port/events" | rate rps)

start_aurore
journaled=$(durable "${single[@]}" "$url/events")
stop_aurore
start_aurore AURORE__INGEST__DURABILITY=none
in_memory=$(durable "${single[@]}" "$url/events")
stop_aurore

start_aurore
arrays=$(durable -t1 -c8 -d"${seconds}s" -s scripts/wrk/post_batch.lua "$url/events" -- 1000 perf)
psql "$admin" -qc "CREATE DATABASE baseline_$tag"
DATABASE_URL="$server/baseline_$tag" RUST_LOG=warn "$aurore" migrate
# The baseline draws timestamps over the last 60 s, as post_batch.lua does.
copy=$("$loadgen" copy-baseline --database-url "$server/baseline_$tag" --events 1000000 --connections "$writers" --timestamp-spread-seconds 60 --json |
    python3 -c "import json,sys; print(round(json.load(sys.stdin)['rows_per_second']))")

# 100,000 events in the last hour of one service, through the API so the rollups hold them.
python3 - "$url" <<'PY'
import datetime, json, sys, urllib.request
url = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
for batch in range(100):
    events = [{"timestamp": (now - datetime.timedelta(seconds=3590 * (batch * 1000 + i) / 100_000)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "service": "perf-hour", "message": f"event {batch}-{i}"} for i in range(1000)]
    request = urllib.request.Request(f"{url}/events", json.dumps(events).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
PY
until [ "$(psql "$server/$database" -Atc "SELECT count(*) FROM events WHERE service = 'perf-hour'")" = 100000 ]; do sleep 0.2; done
from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S.000Z)
to=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%S.000Z)
page="/events?service=perf-hour&from=$from&to=$to&pageSize=50"
cursor=$(curl -fs "$url$page" | python3 -c "import json,sys; print(json.load(sys.stdin)['next_cursor'])")
queries=(-t1 -c16 -d"${seconds}s" -s scripts/wrk/get_path.lua "$url")
first_page=$(wrk "${queries[@]}" -- "$page" | rate ok_rps)
cursor_page=$(wrk "${queries[@]}" -- "$page&cursor=$cursor" | rate ok_rps)
stop_aurore

printf '\n%-78s %s\n' "figure" "ratio (target)"
printf '%-78s %s\n' "single events: durable $journaled/s ÷ bare handler $bare req/s" "$(ratio "$journaled" "$bare") (≥ 0.50)"
printf '%-78s %s\n' "single events: journal $journaled/s ÷ durability=none $in_memory/s" "$(ratio "$journaled" "$in_memory") (≥ 0.90)"
printf '%-78s %s\n' "arrays of 1,000: durable $arrays/s ÷ raw COPY $copy rows/s ($writers connections)" "$(ratio "$arrays" "$copy") (≥ 0.85)"
printf '%-78s %s\n' "last hour, 100,000 events: page 1 $first_page req/s ÷ cursor page $cursor_page req/s" "$(ratio "$first_page" "$cursor_page") (≥ 0.50)"

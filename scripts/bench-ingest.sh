#!/usr/bin/env bash
# Durable ingest rate with wrk: starts a release build of Aurore on a fresh database, runs
# one wrk scenario, then counts rows in PostgreSQL until the count stops growing.
# "Durable" = rows stored / time from the first request until the last row landed.
# Any AURORE__* variable passes through, e.g. AURORE__INGEST__DURABILITY=none;
# AURORE_BINARY runs another build (e.g. an older commit's) instead of building this one.
# Usage: scripts/bench-ingest.sh single [SECONDS]      single-event POSTs (wrk -t2 -c64)
#        scripts/bench-ingest.sh batch [SECONDS] [N]   JSON arrays of N events (wrk -t1 -c8)
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-single}
seconds=${2:-20}
batch=${3:-500}
scripts=${AURORE_WRK_SCRIPTS:-../shared/bench}
port=${AURORE_BENCH_PORT:-18080}
. scripts/bench-service.sh
# One client drives all the load, so its per-client ingest limit is off unless set.
start_service AURORE__RATE_LIMIT__INGEST_PER_SECOND="${AURORE__RATE_LIMIT__INGEST_PER_SECOND:-0}"

count() { scripts/stored-events.sh "$server/$database"; }
start=$(date +%s.%N)
case "$scenario" in
    single) wrk -t2 -c64 -d"${seconds}s" -s "$scripts/post_event.lua" "http://127.0.0.1:$port/events" ;;
    batch) wrk -t1 -c8 -d"${seconds}s" -s "$scripts/post_batch.lua" "http://127.0.0.1:$port/events" -- "$batch" bench ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
previous=-1
rows=$(count)
while [ "$rows" != "$previous" ]; do
    finished=$(date +%s.%N)
    sleep 0.2
    previous=$rows
    rows=$(count)
done
echo "rows stored: $rows"
python3 -c "print(f'durable rate: {$rows / ($finished - $start):,.0f} events/s over {$finished - $start:.1f} s')"

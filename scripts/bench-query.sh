#!/usr/bin/env bash
# "Last hour" queries with wrk: starts a release build of Aurore on a fresh database, seeds
# one service with EVENTS events spread over the last hour (and recomputes the rollups the
# build has), then measures GET /events page 1 (exact total) and a cursor page of the same
# query, pageSize 50, wrk -t1 -c16, in turns: page 1, cursor, page 1, cursor. The ratio is
# what matters; absolute figures move between days on a shared machine.
# AURORE_BINARY runs another build (e.g. an older commit's) instead of building this one.
# Usage: scripts/bench-query.sh [SECONDS=10] [EVENTS=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
events=${2:-100000}
port=${AURORE_BENCH_PORT:-18081}
. scripts/bench-service.sh
# One client sends every request, so its query limit is off.
start_service AURORE__RATE_LIMIT__QUERY_PER_SECOND=0

# The window ends now, mid-minute, as a client's "last hour" does.
to=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
from=$(date -u -d "$to - 1 hour" +%Y-%m-%dT%H:%M:%S.%3NZ)
psql "$server/$database" -v ON_ERROR_STOP=1 -q <<SQL
SELECT aurore_ensure_event_partition(d::date) FROM (VALUES ('$from'::timestamptz AT TIME ZONE 'UTC'), ('$to'::timestamptz AT TIME ZONE 'UTC')) AS days(d);
INSERT INTO events (id, "timestamp", service, message, metadata, ingested_at)
SELECT gen_random_uuid(), '$from'::timestamptz + (interval '1 hour') * i / $events,
       'busy-service', 'seeded event ' || i, jsonb_build_object('request_id', i), now()
FROM generate_series(0, $events - 1) AS i;
DELETE FROM event_counts;
INSERT INTO event_counts (service, hour, events)
SELECT service, date_trunc('hour', "timestamp", 'UTC'), count(*) FROM events GROUP BY 1, 2;
DO \$\$ BEGIN
    IF to_regclass('event_counts_minute') IS NOT NULL THEN
        DELETE FROM event_counts_minute;
        INSERT INTO event_counts_minute (service, minute, events)
        SELECT service, date_trunc('minute', "timestamp", 'UTC'), count(*) FROM events GROUP BY 1, 2;
    END IF;
END \$\$;
VACUUM events;
SQL
# The seeded partitions by name, as autovacuum would have analysed them by now: here neither
# the partitioned table's ANALYZE nor a database-wide one gave them column statistics, and
# without them the page query sorts the whole hour.
partitions=$(printf 'events_p%s\n' "$(date -u -d "$from" +%Y%m%d)" "$(date -u -d "$to" +%Y%m%d)" | sort -u | paste -sd,)
psql "$server/$database" -qc "ANALYZE $partitions, event_counts"
psql "$server/$database" -qc "ANALYZE event_counts_minute" 2>/dev/null || true

base="http://127.0.0.1:$port/events?service=busy-service&from=$from&to=$to&pageSize=50"
cursor=$(curl -fs "$base" | python3 -c 'import json, sys; b = json.load(sys.stdin); print(b["next_cursor"]); print("total", b["total"], file=sys.stderr)')
rate() {
    local out
    out=$(wrk -t1 -c16 -d"${seconds}s" "$1")
    if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}
rate "$base" >/dev/null # warm-up: connections, plans, caches
declare -a page cursor_page
for round in 1 2; do
    page[round]=$(rate "$base")
    cursor_page[round]=$(rate "$base&cursor=$cursor")
    echo "round $round: page 1 ${page[round]} req/s, cursor page ${cursor_page[round]} req/s"
done
python3 -c "
p = (${page[1]} + ${page[2]}) / 2; c = (${cursor_page[1]} + ${cursor_page[2]}) / 2
print(f'page 1 {p:,.0f} req/s / cursor page {c:,.0f} req/s = {p / c:.3f}')"

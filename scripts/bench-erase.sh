#!/usr/bin/env bash
# What erasing one person costs: ROWS events over DAYS daily partitions (ten services,
# USERS distinct metadata.user_id values, so a user has ROWS/USERS events), loaded with SQL,
# then `POST /admin/erase` for a few users, across every service and within one. Prints
# what each erased and the time it reports (`tookMs`), and checks the counts still equal
# the rows.
# Usage: scripts/bench-erase.sh [ROWS=10000000] [DAYS=30] [USERS=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
days=${2:-30}
users=${3:-100000}
port=${AURORE_BENCH_PORT:-18083}
. scripts/bench-service.sh
url="$server/$database"
start_service AURORE__PARTITIONS__DAYS_BEHIND="$days" AURORE__RETENTION__DAYS=$((days + 1)) \
    AURORE__RETENTION__ROLLUP_DAYS=$((days + 1))
psql "$url" -qc "SELECT aurore_ensure_event_partition((now() AT TIME ZONE 'UTC')::date - d) FROM generate_series(0, $days) d" >/dev/null
echo "loading $rows events over $days days…"
started=$(date +%s)
psql "$url" -q <<SQL
INSERT INTO events (id, "timestamp", service, message, metadata, ingested_at)
SELECT gen_random_uuid(), t, 'svc-' || (i % 10), 'order ' || i || ' processed',
       jsonb_build_object('user_id', 'u' || (i % $users), 'region', 'eu-west-' || (i % 3)), t
FROM (SELECT i, now() - random() * interval '$days days' AS t FROM generate_series(1, $rows) i) g;
INSERT INTO event_counts_minute SELECT service, date_trunc('minute', "timestamp", 'UTC'), count(*) FROM events GROUP BY 1, 2;
INSERT INTO event_counts SELECT service, date_trunc('hour', "timestamp", 'UTC'), count(*) FROM events GROUP BY 1, 2;
VACUUM ANALYZE events;
SQL
echo "loaded in $(( $(date +%s) - started )) s"
erase() {
    curl -fs -X POST "http://127.0.0.1:$port/admin/erase?$1" \
        | python3 -c 'import json, sys; r = json.load(sys.stdin); print("{:>6} events {:>7} ms".format(r["events"], r["tookMs"]))'
}
for user in 4242 31337 77777; do
    printf 'every service, metadata.user_id=u%-6s ' "$user"
    erase "metadata.user_id=u$user"
done
for user in 1234 5674; do
    printf 'service=svc-4, metadata.user_id=u%-6s ' "$user"
    erase "service=svc-4&metadata.user_id=u$user"
done
psql "$url" -Atc "SELECT CASE WHEN (SELECT sum(events) FROM event_counts) = (SELECT count(*) FROM events)
                             AND (SELECT sum(events) FROM event_counts_minute) = (SELECT count(*) FROM events)
                        THEN 'counts equal the rows' ELSE 'COUNTS DIFFER FROM THE ROWS' END"
